"""Prometheus metrics, one registry per app, every name prefixed ``llmserver_``.

Label values are bounded: configured model ids (else ``unknown``), route templates (else
``other``), status codes and fixed reasons; never raw paths or anything a client sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from llmserver.observability.logs import AccessRecord, FinishedRequest

if TYPE_CHECKING:
    from llmserver.core.residency import MemoryReport
    from llmserver.core.views import ModelView

UNKNOWN = "unknown"
OTHER = "other"
STATES = ("loading", "ready", "failed", "unloaded")
REASONS = ("concurrency", "rate", "auth")
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
E2E_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


def rejection_reason(error_code: str | None, status: int) -> str | None:
    """Why a request was turned away, or None when it was not a rejection."""
    if error_code == "concurrency_limit_exceeded":
        return "concurrency"
    if error_code == "rate_limit_exceeded":
        return "rate"
    if status in (401, 403):
        return "auth"
    return None


class ModelCollector(Collector):
    """Slots in use, requests waiting, state per model and upstream replica health, read from the
    limiters and backends at scrape time (so there is no bookkeeping to drift)."""

    def __init__(
        self,
        views: Callable[[], Iterable[ModelView]],
        memory: Callable[[], MemoryReport] | None = None,
    ) -> None:
        self._views = views
        self._memory = memory

    def collect(self) -> Iterator[Metric]:
        """The per-model gauges as of now."""
        slots = GaugeMetricFamily("llmserver_slots", "Generation slots", labels=["model"])
        in_use = GaugeMetricFamily(
            "llmserver_slots_in_use", "Generation slots in use", labels=["model"]
        )
        waiting = GaugeMetricFamily(
            "llmserver_requests_waiting", "Requests queued for a slot", labels=["model"]
        )
        state = GaugeMetricFamily(
            "llmserver_model_state", "1 for the model's current state", labels=["model", "state"]
        )
        replica_up = GaugeMetricFamily(
            "llmserver_upstream_replica_up",
            "1 when an upstream replica is healthy, 0 when not",
            labels=["model", "replica"],
        )
        footprint = GaugeMetricFamily(
            "llmserver_model_memory_bytes",
            "Bytes a model holds (loaded) or will hold (not loaded) on a device",
            labels=["model", "device"],
        )
        threads = GaugeMetricFamily(
            "llmserver_compute_threads",
            "CPU threads a loaded model computes with now (llama.cpp; threads: auto moves it "
            "with the load of other programs)",
            labels=["model"],
        )
        for view in self._views():
            if view.threads is not None:
                threads.add_metric([view.id], view.threads)
            for device, bytes_ in view.memory:
                footprint.add_metric([view.id, device], bytes_)
            # replica URLs come from the configuration, never from a client
            for url, up in view.replicas:
                replica_up.add_metric([view.id, url], 1.0 if up else 0.0)
            slots.add_metric([view.id], view.slots)
            in_use.add_metric([view.id], view.slots_in_use)
            waiting.add_metric([view.id], view.waiting)
            for name in STATES:
                state.add_metric([view.id, name], 1.0 if view.state == name else 0.0)
        yield from (slots, in_use, waiting, state, replica_up, footprint, threads)
        yield from self._budgets()

    def _budgets(self) -> Iterator[Metric]:
        budget = GaugeMetricFamily(
            "llmserver_memory_budget_bytes",
            "Memory loaded models may take on a device (absent: no limit)",
            labels=["device"],
        )
        used = GaugeMetricFamily(
            "llmserver_memory_used_bytes",
            "Memory the loaded models hold on a device",
            labels=["device"],
        )
        if self._memory is None:
            return
        report = self._memory()
        for use in report.devices:
            if use.budget is not None:
                budget.add_metric([use.device], use.budget)
            used.add_metric([use.device], use.used)
        swaps = CounterMetricFamily(
            "llmserver_model_swaps", "Model loads that evicted other models to make room"
        )
        swaps.add_metric([], report.swaps)
        seconds = CounterMetricFamily(
            "llmserver_model_swap_seconds",
            "Seconds swaps took: the evicted models' unloading and the new model's load",
        )
        seconds.add_metric([], report.swap_seconds)
        yield from (budget, used, swaps, seconds)


class Metrics:
    """The app's instruments and its registry."""

    def __init__(
        self,
        model_ids: Iterable[str],
        views: Callable[[], Iterable[ModelView]],
        memory: Callable[[], MemoryReport] | None = None,
        gateway: str | None = None,
    ):
        self.registry = CollectorRegistry(auto_describe=True)
        self.model_ids = frozenset(model_ids)
        reg = self.registry
        if gateway is not None:  # which of several gateways these numbers are from
            Info("llmserver_gateway", "This gateway's id", registry=reg).info({"id": gateway})
        self.requests = Counter(
            "llmserver_requests",
            "HTTP requests by model, endpoint (route template) and status",
            ["model", "endpoint", "status"],
            registry=reg,
        )
        self.prompt_tokens = Counter(
            "llmserver_prompt_tokens", "Prompt tokens processed", ["model"], registry=reg
        )
        self.prompt_cache_tokens = Counter(
            "llmserver_prompt_cache_tokens",
            "Prompt tokens taken from an engine's prefix cache (cached) or evaluated",
            ["model", "outcome"],
            registry=reg,
        )
        self.response_cache = Counter(
            "llmserver_response_cache",
            "Cacheable requests answered from the response cache (hit) or by the model (miss)",
            ["model", "result"],
            registry=reg,
        )
        self.completion_tokens = Counter(
            "llmserver_completion_tokens", "Completion tokens generated", ["model"], registry=reg
        )
        self.reasoning_tokens = Counter(
            "llmserver_reasoning_tokens",
            "Completion tokens a reasoning model spent on its thought",
            ["model"],
            registry=reg,
        )
        self.speculative_tokens = Counter(
            "llmserver_speculative_tokens",
            "Speculative decoding: tokens guessed (drafted) and the part the model kept "
            "(accepted); accepted/drafted is the acceptance rate",
            ["model", "outcome"],
            registry=reg,
        )
        self.decode_steps = Counter(
            "llmserver_decode_steps",
            "Decode steps of generations with speculative decoding (completion tokens minus "
            "accepted guesses); completion_tokens/decode_steps is the tokens per step",
            ["model"],
            registry=reg,
        )
        self.ttft = Histogram(
            "llmserver_time_to_first_token_seconds",
            "Seconds from the start of a generation (queue wait included) to its first token",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=reg,
        )
        self.tpot = Histogram(
            "llmserver_time_per_output_token_seconds",
            "Seconds per output token after the first",
            ["model"],
            buckets=TPOT_BUCKETS,
            registry=reg,
        )
        self.e2e = Histogram(
            "llmserver_e2e_request_latency_seconds",
            "Seconds from request to the last byte of a generation's response",
            ["model"],
            buckets=E2E_BUCKETS,
            registry=reg,
        )
        self.rejections = Counter(
            "llmserver_rejections", "Requests turned away, by reason", ["reason"], registry=reg
        )
        for reason in REASONS:
            self.rejections.labels(reason)  # present at 0 from the start
        reg.register(ModelCollector(views, memory))
        # labelled children by (metric, labels): ``labels()`` validates and locks on every call
        self._children: dict[tuple[object, ...], Any] = {}

    def _child(self, metric: MetricWrapperBase, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once (label values are bounded, see above)."""
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def model_label(self, model: str | None) -> str:
        """A configured model id, or ``unknown``."""
        return model if model in self.model_ids else UNKNOWN

    def request_started(self, record: AccessRecord) -> None:
        """Nothing is counted before a request has been answered."""

    def request_finished(self, done: FinishedRequest) -> None:
        """Count one finished request."""
        record, endpoint, status = done.record, done.endpoint, done.status
        model = self.model_label(record.model)
        self._child(self.requests, model, endpoint, str(status)).inc()
        reason = rejection_reason(record.error_code, status)
        if reason is not None:
            self._child(self.rejections, reason).inc()
        usage = record.usage
        if usage.response_cache is not None:
            self._child(self.response_cache, model, usage.response_cache).inc()
        if usage.prompt_tokens:
            self._child(self.prompt_tokens, model).inc(usage.prompt_tokens)
            cached = min(usage.cached_tokens, usage.prompt_tokens)
            self._child(self.prompt_cache_tokens, model, "cached").inc(cached)
            self._child(self.prompt_cache_tokens, model, "evaluated").inc(
                usage.prompt_tokens - cached
            )
        if usage.completion_tokens:
            self._child(self.completion_tokens, model).inc(usage.completion_tokens)
        if usage.reasoning_tokens:
            self._child(self.reasoning_tokens, model).inc(usage.reasoning_tokens)
        if usage.draft_tokens is not None:
            self._child(self.speculative_tokens, model, "drafted").inc(usage.draft_tokens)
            self._child(self.speculative_tokens, model, "accepted").inc(usage.accepted_tokens)
            steps = usage.completion_tokens - usage.accepted_tokens
            self._child(self.decode_steps, model).inc(max(steps, 0))
        for other, spent in record.extra:  # the router model's tokens, under its name
            label = self.model_label(other)
            self._child(self.prompt_tokens, label).inc(spent.prompt_tokens)
            self._child(self.completion_tokens, label).inc(spent.completion_tokens)
        timing = record.timing
        if timing is None or status >= 400:
            return
        self._child(self.e2e, model).observe(done.latency_s)
        if timing.ttft_s is not None:
            self._child(self.ttft, model).observe(timing.ttft_s)
            if usage.completion_tokens > 1:
                decode_s = time.perf_counter() - timing.started - timing.ttft_s
                per_token = max(decode_s, 0.0) / (usage.completion_tokens - 1)
                self._child(self.tpot, model).observe(per_token)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
