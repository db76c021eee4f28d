"""A second real llmserver behind the first: proxying, replicas that die, unreachable upstreams."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from llmserver.config.settings import DEFAULT_MODEL_ID
from support import RunningServer, free_port, run_server, wait_ready

pytestmark = pytest.mark.integration

QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Name three colours."}]
SAMPLING: dict[str, Any] = {"temperature": 0, "seed": 11, "max_tokens": 32}


def sdk(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def upstream(model_id: str, urls: str | list[str]) -> dict[str, Any]:
    return {
        "id": model_id,
        "url": urls,
        "upstream_model": DEFAULT_MODEL_ID,
        "probe_interval_s": 0.2,
    }


def _counts(usage: Any) -> tuple[int, int, int]:
    """Token counts; how much of the prompt the prefix cache held differs from call to call."""
    assert usage is not None
    return usage.prompt_tokens, usage.completion_tokens, usage.total_tokens


@pytest.fixture(scope="module")
def proxy(
    default_server: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """Our server with one model proxied to the default server and one that is unreachable."""
    dead = f"http://127.0.0.1:{free_port()}/v1"
    config = {"models": [upstream("proxied", default_server.base_url), upstream("dead", dead)]}
    # /ready stays 503 while "dead" is unreachable (that is the point of /ready), so wait for
    # the server itself, then check that /ready says exactly that
    with run_server(tmp_path_factory.mktemp("proxy"), config, wait=False) as server:
        deadline = time.monotonic() + 120
        ready: dict[str, Any] = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                ready = httpx.get(f"{server.url}/ready", timeout=5).json()
                if ready.get("models", {}).get("proxied") == "ready":
                    break
            time.sleep(0.2)
        assert ready == {"status": "not ready", "models": {"proxied": "ready", "dead": "unhealthy"}}
        yield server


def test_chat_through_proxy_equals_direct(
    default_server: RunningServer, proxy: RunningServer
) -> None:
    direct = sdk(default_server).chat.completions.create(
        model=DEFAULT_MODEL_ID, messages=QUESTION, **SAMPLING
    )
    via = sdk(proxy).chat.completions.create(model="proxied", messages=QUESTION, **SAMPLING)
    assert via.model == "proxied"
    assert via.choices[0].message.content == direct.choices[0].message.content
    assert via.choices[0].finish_reason == direct.choices[0].finish_reason
    assert _counts(via.usage) == _counts(direct.usage)


def test_stream_through_proxy_equals_direct(
    default_server: RunningServer, proxy: RunningServer
) -> None:
    direct = sdk(default_server).chat.completions.create(
        model=DEFAULT_MODEL_ID, messages=QUESTION, **SAMPLING
    )
    stream = sdk(proxy).chat.completions.create(
        model="proxied",
        messages=QUESTION,
        stream=True,
        stream_options={"include_usage": True},
        **SAMPLING,
    )
    pieces, usage = [], None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
    assert len([p for p in pieces if p]) > 1  # relayed in pieces, not as one block
    assert "".join(pieces) == direct.choices[0].message.content
    assert _counts(usage) == _counts(direct.usage)


def test_completion_through_proxy_equals_direct(
    default_server: RunningServer, proxy: RunningServer
) -> None:
    prompt = "The capital of France is"
    direct = sdk(default_server).completions.create(
        model=DEFAULT_MODEL_ID, prompt=prompt, **SAMPLING
    )
    via = sdk(proxy).completions.create(model="proxied", prompt=prompt, **SAMPLING)
    assert via.choices[0].text == direct.choices[0].text
    assert _counts(via.usage) == _counts(direct.usage)


def test_unreachable_upstream_is_503(proxy: RunningServer) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(proxy).chat.completions.create(model="dead", messages=QUESTION, max_tokens=4)
    assert caught.value.status_code == 503
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["code"] == "upstream_unavailable"  # the SDK unwraps {"error": ...}
    assert set(body) == {"message", "type", "param", "code"}


class Outcome:
    """What one streaming request saw."""

    def __init__(self) -> None:
        self.chunks = 0
        self.text = ""
        self.error: Exception | None = None


def stream_one(client: openai.OpenAI, outcome: Outcome, first_chunk: threading.Event) -> None:
    try:
        stream = client.chat.completions.create(
            model="replicated", messages=QUESTION, stream=True, temperature=0, max_tokens=48
        )
        for chunk in stream:
            outcome.chunks += 1
            first_chunk.set()
            for choice in chunk.choices:
                outcome.text += choice.delta.content or ""
    except Exception as exc:
        outcome.error = exc


def test_replica_killed_mid_run_loses_no_unstarted_request(tmp_path: Path) -> None:
    # both replicas load at once; then wait for each
    with run_server(tmp_path, wait=False) as one, run_server(tmp_path, wait=False) as two:
        wait_ready(one.url, one.process)
        wait_ready(two.url, two.process)
        config = {"models": [upstream("replicated", [one.base_url, two.base_url])]}
        with run_server(tmp_path, config) as proxy:
            client = sdk(proxy)
            outcomes = [Outcome() for _ in range(8)]
            first_chunk = threading.Event()
            threads = [
                threading.Thread(target=stream_one, args=(client, o, first_chunk)) for o in outcomes
            ]
            for thread in threads:
                thread.start()
            assert first_chunk.wait(60), "no request started streaming"
            one.stop(signal.SIGKILL)
            for thread in threads:
                thread.join(120)
            started_then_cut = [o for o in outcomes if o.error is not None]
            # a request cut off by the kill had already streamed; every other one completed
            assert all(o.chunks > 0 for o in started_then_cut), [o.error for o in outcomes]
            completed = [o for o in outcomes if o.error is None]
            assert len(completed) >= len(outcomes) - 1  # one llama.cpp slot per replica
            assert all(o.text for o in completed)
            # requests queued on the killed replica were moved, and it was taken out of rotation
            assert "retrying request" in proxy.log()
            assert f"replica {one.base_url} is down" in proxy.log()
            # new requests keep working on the surviving replica
            again = client.chat.completions.create(
                model="replicated", messages=QUESTION, max_tokens=4
            )
            assert again.choices[0].message.content
