"""An Ollama server as a backend, spoken to in Ollama's native API rather than its ``/v1``.

Ollama's ``/v1`` ignores ``num_ctx`` and ``keep_alive``, so a long prompt there is cut at
Ollama's default context without a word. Here every request carries ``options.num_ctx`` from
the model's ``context_size`` and the configured ``keep_alive``; JSON mode goes as ``format``;
embeddings go through ``/api/embed``; token counts come from ``prompt_eval_count`` and
``eval_count`` (checked like any upstream's). Ollama's own sampling defaults stay in force for
every value neither the request nor the config sets. Health is ``GET /api/version``; start-up
loads the model in Ollama (an empty generate), as Ollama otherwise loads on the first request.
Replicas, least-busy choice and failover are those of the OpenAI upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

import aiohttp
import orjson

from llmserver.backends.base import (
    Delta,
    EmbeddingInput,
    EmbeddingResult,
    EmbeddingSpec,
    FinishReason,
    GenerationRequest,
    ModelLoadError,
    SamplingParams,
)
from llmserver.backends.http_replicas import HttpReplicaBackend, lines
from llmserver.backends.ollama_tools import ollama_messages, ollama_tools, relayed_calls
from llmserver.backends.replicas import Replica, ReplicaFailed
from llmserver.backends.usage_check import credible_usage
from llmserver.config.model_configs import ModelConfig, OllamaConfig, SamplingDefaults
from llmserver.errors import APIError, InvalidRequestError, UpstreamError

#: Ollama's context when none is set, for the embedding spec of a model without context_size
OLLAMA_DEFAULT_CONTEXT = 4096


def _unset(defaults: SamplingDefaults, name: str, value: float) -> bool:
    """True when ``value`` is only our built-in default (neither the config nor the request
    chose it), so Ollama's own default should apply instead."""
    builtin = SamplingDefaults.model_fields[name].default
    return name not in defaults.model_fields_set and value == builtin


class OllamaBackend(HttpReplicaBackend[OllamaConfig]):
    """A model served by one or more Ollama servers."""

    config_type: ClassVar[type[ModelConfig]] = OllamaConfig
    #: Ollama runs few requests at once (OLLAMA_NUM_PARALLEL); ``max_concurrent`` sets it
    max_parallel: ClassVar[int] = 4
    engine: ClassVar[str] = "Ollama"
    probe_path: ClassVar[str] = "/api/version"
    chat_path: ClassVar[str] = "/api/chat"
    text_path: ClassVar[str] = "/api/generate"

    def __init__(self, config: OllamaConfig) -> None:
        super().__init__(config)
        self._dimensions = 0

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the pool, check each replica, and load the model in every live one."""
        await super().start()
        if self.config.warm_up or self.config.embedding:
            live = [r for r in self.replicas.replicas if r.up]
            await asyncio.gather(*(self._warm_up(r) for r in live))

    async def _warm_up(self, replica: Replica) -> None:
        """An empty generate loads the model (one embedding for embedding models, which also
        tells its size); an Ollama without the model fails the start with its reason."""
        if self.config.embedding:
            path, body = "/api/embed", {"model": self.model_name, "input": ["Hello"]}
        else:
            path, body = "/api/generate", {"model": self.model_name}
        body |= self._common()
        try:
            answer = await self._post(replica, path, body)
        except ReplicaFailed as exc:
            self.replicas.mark_down(replica, exc.error.message)
            return
        except APIError as exc:
            raise ModelLoadError(f"Ollama at {replica.url}: {exc.message}") from None
        if self.config.embedding:
            vectors = answer.get("embeddings") or [[]]
            self._dimensions = len(vectors[0])

    # -- requests --------------------------------------------------------------------------------

    def _common(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.config.keep_alive is not None:
            body["keep_alive"] = self.config.keep_alive
        if self.config.context_size is not None:
            body["options"] = {"num_ctx": self.config.context_size}
        return body

    def _options(self, params: SamplingParams) -> dict[str, Any]:
        defaults = self.config.defaults
        out: dict[str, Any] = {}
        if params.max_tokens > 0:
            out["num_predict"] = params.max_tokens
        if not _unset(defaults, "temperature", params.temperature):
            out["temperature"] = params.temperature
        if not _unset(defaults, "top_p", params.top_p):
            out["top_p"] = params.top_p
        # the core sends these at their neutral values unless someone asked for them
        if params.top_k > 0:
            out["top_k"] = params.top_k
        if params.min_p > 0:
            out["min_p"] = params.min_p
        if params.repeat_penalty != 1.0:
            out["repeat_penalty"] = params.repeat_penalty
        if params.presence_penalty:
            out["presence_penalty"] = params.presence_penalty
        if params.frequency_penalty:
            out["frequency_penalty"] = params.frequency_penalty
        if params.seed is not None:
            out["seed"] = params.seed
        if params.stop:
            out["stop"] = list(params.stop)
        if self.config.context_size is not None:
            out["num_ctx"] = self.config.context_size
        return out

    def body(self, request: GenerationRequest) -> dict[str, Any]:
        """The ``/api/chat`` (messages) or raw ``/api/generate`` (prompt) body."""
        body: dict[str, Any] = {"model": self.model_name, "stream": True}
        if request.messages is not None:
            body["messages"] = ollama_messages(request.messages)
            if tools := ollama_tools(request.tools, request.tool_choice):
                body["tools"] = tools
        else:
            body["prompt"] = request.prompt
            if request.suffix is not None:  # Ollama fills the middle with the model's template
                body["suffix"] = request.suffix
            else:
                body["raw"] = True  # the core's text requests are plain continuations
        body |= self._common()
        body["options"] = self._options(request.params)
        if request.constraint is not None:
            schema = request.constraint.schema
            body["format"] = "json" if schema is None else schema
        if request.thought is not None and request.thought.asked is not None:
            body["think"] = request.thought.asked
        return body

    def deltas(
        self, resp: aiohttp.ClientResponse, chat: bool, request_bytes: int
    ) -> AsyncIterator[Delta]:
        """Deltas from the NDJSON answer (see :func:`_deltas`)."""
        return _deltas(resp, chat, request_bytes)

    async def _post(self, replica: Replica, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self._request(replica, path, orjson.dumps(body)) as resp:
            raw = await resp.read()
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamError("Ollama sent an answer that is not JSON") from None
        if not isinstance(answer, dict):
            raise UpstreamError("Ollama sent an answer that is not an object")
        return answer

    # -- embeddings ------------------------------------------------------------------------------

    def embedding_spec(self) -> EmbeddingSpec | None:
        """Embeddings for a model configured with ``embedding: true``."""
        if not self.config.embedding:
            return None
        context = self.config.context_size or OLLAMA_DEFAULT_CONTEXT
        return EmbeddingSpec(dimensions=self._dimensions, max_input_tokens=context)

    async def embed(self, inputs: Sequence[EmbeddingInput]) -> EmbeddingResult:
        """Vectors from ``/api/embed`` (too long an input is an error, not cut short)."""
        if not all(isinstance(text, str) for text in inputs):
            raise InvalidRequestError("this model takes text inputs only", param="input")
        body = {"model": self.model_name, "input": list(inputs), "truncate": False}
        body |= self._common()

        async def answer(replica: Replica) -> AsyncIterator[dict[str, Any]]:
            yield await self._post(replica, "/api/embed", body)

        # one answer from the first replica that gives one (the others are marked down)
        answers = [a async for a in self._failover("embeddings", answer)]
        return _embedding_result(answers[0], inputs)


def _embedding_result(answer: dict[str, Any], inputs: Sequence[EmbeddingInput]) -> EmbeddingResult:
    vectors = answer.get("embeddings")
    if not isinstance(vectors, list) or len(vectors) != len(inputs):
        raise UpstreamError("Ollama sent a different number of embeddings than inputs")
    request_bytes = sum(len(str(text).encode()) for text in inputs)
    total, _ = credible_usage(
        {"prompt_tokens": answer.get("prompt_eval_count"), "completion_tokens": 0},
        0,
        0,
        request_bytes,
    )
    # Ollama counts the whole batch; each input gets its share
    share, rest = divmod(total, max(1, len(inputs)))
    counts = [share + (1 if i < rest else 0) for i in range(len(inputs))]
    return EmbeddingResult([[float(x) for x in v] for v in vectors], counts)


async def _deltas(
    resp: aiohttp.ClientResponse, chat: bool, request_bytes: int
) -> AsyncIterator[Delta]:
    """Deltas from an NDJSON body as its lines arrive; the last (``done: true``) carries the
    finish reason and Ollama's counts, checked (see :func:`credible_usage`)."""
    finish: FinishReason | None = None
    final: dict[str, Any] = {}
    chunks = text_bytes = called = 0
    async with contextlib.aclosing(lines(resp)) as body:
        async for line in body:
            if not line:
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise UpstreamError("Ollama sent a line that is not JSON") from None
            if not isinstance(obj, dict):
                raise UpstreamError("Ollama sent a line that is not an object")
            if "error" in obj:
                raise UpstreamError(f"Ollama failed mid-stream: {obj['error']}")
            message = obj.get("message") or {}
            piece = message.get("content") if chat else obj.get("response")
            thought = message.get("thinking") if chat else obj.get("thinking")
            piece = piece if isinstance(piece, str) else ""
            thought = thought if isinstance(thought, str) else ""
            if piece or thought:
                chunks += 1
                text_bytes += len((piece + thought).encode("utf-8", "surrogatepass"))
                yield Delta(piece, 0, reasoning=thought)
            if chat and (calls := relayed_calls(message, called)):
                called += len(calls)
                chunks += 1
                text_bytes += sum(len(c.arguments) for c in calls)
                yield Delta("", 0, tool_calls=calls)
            if obj.get("done") is True:
                final = obj
                finish = "length" if obj.get("done_reason") == "length" else "stop"
                if finish == "stop" and called:
                    finish = "tool_calls"
                break
    if finish is None:
        raise UpstreamError("Ollama's response ended before it was done")
    reported = {
        "prompt_tokens": final.get("prompt_eval_count"),
        "completion_tokens": final.get("eval_count"),
    }
    prompt_tokens, completion_tokens = credible_usage(reported, text_bytes, chunks, request_bytes)
    yield Delta("", completion_tokens, finish, prompt_tokens=prompt_tokens)
