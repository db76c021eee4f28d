"""The documents' contracts on the fake backend: the simple endpoints' defaults (seed 004 for
/infer, seed 002 for /generate and /chat), their error table with ``detail`` in English and
Korean, the /chat prompt formats, the fallback on every simple endpoint, and seed 001's paths as
aliases of ours."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmserver.backends.base import Delta, GenerationRequest
from llmserver.backends.fake import FakeBackend
from llmserver.config.settings import SettingsError, load_settings
from llmserver.errors import EngineError, OutOfMemoryError
from llmserver.security.keys import create_key
from support import fake_model, fake_settings, is_ready, open_client, sse_events
from support.fake import fake_backend, models
from support.mock_upstream import instant, serve

WRAP = "[QUESTION]\n{}\n[/QUESTION]\n\n[ANSWER]\n"
#: each simple endpoint with a body holding only its required field
MINIMAL: list[tuple[str, dict[str, Any]]] = [
    ("/infer", {"query": "hello there"}),
    ("/infer/stream", {"query": "hello there"}),
    ("/generate", {"prompt": "hello there"}),
    ("/chat", {"prompt": "hello there"}),
]
PATHS = [path for path, _ in MINIMAL]


@pytest.fixture
def make() -> Iterator[Callable[..., TestClient]]:
    """Start an app on fake models (``open_client`` rules), closing each one afterwards."""
    with ExitStack() as opened:

        def start(*models: dict[str, Any], ready: bool = True, **settings: Any) -> TestClient:
            settings_ = fake_settings(*(models or (fake_model("m"),)), **settings)
            return opened.enter_context(open_client(settings_, until=is_ready if ready else None))

        yield start


def _received(client: TestClient, model: str = "m") -> list[GenerationRequest]:
    """What reached the fake model, warm-ups left out."""
    return [r for r in fake_backend(client, model).received if r.request_id != "warmup"]


def _text(path: str, resp: Any) -> str:
    """The generated text of any simple endpoint's answer."""
    if path == "/infer/stream":
        events = sse_events(resp.text)
        assert events[-1] == "[DONE]"
        final: str = json.loads(events[-2])["generated_text"]
        return final
    body = resp.json()
    return str(body["generated_text"] if path == "/infer" else body["generated"])


# -- defaults --------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "body"), MINIMAL, ids=PATHS)
def test_an_empty_body_gets_the_documents_defaults(
    make: Callable[..., TestClient], path: str, body: dict[str, Any]
) -> None:
    client = make()
    resp = client.post(path, json=body)
    assert resp.status_code == 200, resp.text
    (request,) = _received(client)
    params = request.params
    if path.startswith("/infer"):  # seed 004
        assert (params.max_tokens, params.temperature, params.top_p) == (100, 0.7, 1.0)
        explicit = {**body, "max_length": 100, "temperature": 0.7, "top_p": 1.0}
    else:  # seed 002
        assert (params.max_tokens, params.temperature, params.top_k) == (256, 0.8, 50)
        explicit = {**body, "max_tokens": 256, "temperature": 0.8, "top_k": 50}
    # what the defaults produce is what asking for those values produces
    again = client.post(path, json=explicit)
    assert _text(path, again) == _text(path, resp)
    assert _received(client)[-1].params == params


@pytest.mark.parametrize(("path", "body"), MINIMAL, ids=PATHS)
def test_the_settings_override_each_default(
    make: Callable[..., TestClient], path: str, body: dict[str, Any]
) -> None:
    client = make(
        infer_max_length=3,
        infer_temperature=0.2,
        infer_top_p=0.5,
        generate_max_tokens=4,
        generate_temperature=0.3,
        generate_top_k=7,
    )
    resp = client.post(path, json=body)
    assert resp.status_code == 200, resp.text
    params = _received(client)[-1].params
    if path.startswith("/infer"):
        assert (params.max_tokens, params.temperature, params.top_p) == (3, 0.2, 0.5)
        assert len(_text(path, resp).split()) == 3
    else:
        assert (params.max_tokens, params.temperature, params.top_k) == (4, 0.3, 7)
        assert len(_text(path, resp).split()) == 4


def test_a_none_setting_leaves_the_value_to_the_model(make: Callable[..., TestClient]) -> None:
    model = fake_model("m", defaults={"temperature": 0.1, "top_p": 0.6, "top_k": 3})
    client = make(model, infer_temperature=None, infer_top_p=None, generate_top_k=None)
    client.post("/infer", json={"query": "hi"})
    client.post("/generate", json={"prompt": "hi"})
    infer, generate = _received(client)
    assert (infer.params.temperature, infer.params.top_p) == (0.1, 0.6)
    assert (generate.params.temperature, generate.params.top_k) == (0.8, 3)


def test_request_values_win_over_the_defaults(make: Callable[..., TestClient]) -> None:
    client = make()
    client.post("/infer", json={"query": "hi", "max_length": 5, "temperature": 0, "top_p": 0.9})
    body = {"prompt": "hi", "max_tokens": 6, "temperature": 1.5, "top_k": 0}
    client.post("/chat", json=body)
    infer, chat = _received(client)
    assert (infer.params.max_tokens, infer.params.temperature, infer.params.top_p) == (5, 0, 0.9)
    assert (chat.params.max_tokens, chat.params.temperature, chat.params.top_k) == (6, 1.5, 0)


# -- the error table -------------------------------------------------------------------------


async def _raising(exc: BaseException) -> AsyncIterator[Delta]:
    raise exc
    yield Delta("")  # pragma: no cover - makes this an async generator


def _fail_with(monkeypatch: pytest.MonkeyPatch, make_exc: Callable[[], BaseException]) -> None:
    """Every generation (warm-ups aside) fails with ``make_exc()`` before its first token."""
    original = FakeBackend.generate

    def generate(self: FakeBackend, request: GenerationRequest) -> AsyncIterator[Delta]:
        if request.request_id == "warmup":
            return original(self, request)
        return _raising(make_exc())

    monkeypatch.setattr(FakeBackend, "generate", generate)


def _wait_failed(client: TestClient) -> None:
    deadline = time.monotonic() + 10
    while client.get("/").json()["models"][0]["state"] != "failed":
        assert time.monotonic() < deadline, "the model never failed to load"
        time.sleep(0.01)


#: row -> (status, code, English detail, Korean detail)
ROWS: dict[str, tuple[int, str, str, str]] = {
    "concurrency": (
        429,
        "concurrency_limit_exceeded",
        "concurrent inference limit exceeded",
        "동시 추론 요청 한도 초과",
    ),
    "timeout": (503, "timeout", "inference timed out after 0.05 s", "LLM 추론 타임아웃 (0.05초)"),
    "out_of_memory": (
        503,
        "out_of_memory",
        "out of memory during inference",
        "LLM 추론 중 메모리 부족",
    ),
    "engine_error": (
        503,
        "engine_error",
        "fake failed: the engine crashed",
        "fake failed: the engine crashed",
    ),
    "load_failed": (
        503,
        "model_not_ready",
        "model load failed: weights are corrupt",
        "LLM 모델 로딩 실패",
    ),
    "other": (500, "internal_error", "internal server error", "서버 내부 오류가 발생했습니다"),
}


def _row_client(
    row: str, language: str, make: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> TestClient:
    """An app in which every simple request meets the error of ``row``."""
    extra = {"error_language": language}
    if row == "concurrency":
        client = make(fake_model("m", max_concurrent=1, max_queue=0), **extra)
        limiter = models(client).lookup("m").limiter
        client.portal.call(limiter.acquire)  # type: ignore[union-attr]  # the only slot, held
        return client
    if row == "timeout":
        return make(fake_model("m", token_delay_s=0.5, inference_timeout_s=0.05), **extra)
    if row == "load_failed":
        client = make(fake_model("m", fail_load="weights are corrupt"), ready=False, **extra)
        _wait_failed(client)
        return client
    errors: dict[str, Callable[[], BaseException]] = {
        "out_of_memory": OutOfMemoryError,
        "engine_error": lambda: EngineError("fake failed: the engine crashed"),
        "other": lambda: RuntimeError("secret internal state"),
    }
    _fail_with(monkeypatch, errors[row])
    return make(**extra)


@pytest.mark.parametrize("language", ["en", "ko"])
@pytest.mark.parametrize("row", sorted(ROWS))
def test_each_error_row_on_each_simple_endpoint(
    make: Callable[..., TestClient],
    monkeypatch: pytest.MonkeyPatch,
    row: str,
    language: str,
) -> None:
    status, code, english, korean = ROWS[row]
    client = _row_client(row, language, make, monkeypatch)
    for path, body in MINIMAL:
        resp = client.post(path, json=body)
        assert resp.status_code == status, (path, resp.text)
        assert resp.headers["content-type"] == "application/json", path
        data = resp.json()
        assert set(data) == {"detail", "error"}, path
        assert data["detail"] == (korean if language == "ko" else english), path
        assert data["error"]["code"] == code, path
        assert data["error"]["message"] == english, path  # the error object stays as it was
        assert set(data["error"]) == {"message", "type", "param", "code"}
        assert "secret" not in resp.text
    # the OpenAI surface keeps OpenAI's shape
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    openai_body = client.post("/v1/chat/completions", json=chat).json()
    assert set(openai_body) == {"error"}
    assert openai_body["error"]["code"] == code


@pytest.mark.parametrize("language", ["en", "ko"])
def test_refusals_before_any_route_carry_detail(
    make: Callable[..., TestClient], tmp_path: Path, language: str
) -> None:
    keys = tmp_path / "keys.json"
    key = create_key(keys, "one")
    client = make(
        keys_file=keys,
        rate_limit_requests_per_minute=1,
        error_language=language,
        max_body_bytes=1000,
    )
    for path, _ in MINIMAL:
        big = client.post(path, content=b"x" * 2000, headers={"Content-Type": "application/json"})
        assert big.status_code == 413, path
        assert big.json()["detail"] == big.json()["error"]["message"]
        assert big.json()["error"]["code"] == "request_too_large"
    for path, body in MINIMAL:
        resp = client.post(path, json=body)
        assert resp.status_code == 401, path
        data = resp.json()
        assert data["detail"] == data["error"]["message"]
        assert data["detail"].startswith("Missing API key")
        assert data["error"]["code"] == "missing_api_key"
    auth = {"Authorization": f"Bearer {key}"}
    assert client.post("/infer", json={"query": "hi"}, headers=auth).status_code == 200
    for path, body in MINIMAL:  # the key's one request per minute is spent
        resp = client.post(path, json=body, headers=auth)
        assert resp.status_code == 429, path
        data = resp.json()
        assert data["detail"].startswith("Rate limit reached for requests per minute")
        assert data["error"]["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize("language", ["en", "ko"])
def test_request_errors_carry_detail(make: Callable[..., TestClient], language: str) -> None:
    client = make(error_language=language)
    for path, body in [("/infer", {}), ("/infer/stream", {"query": ""})]:
        data = client.post(path, json=body).json()
        assert data["detail"] == data["error"]["message"]
        assert data["error"]["param"] == "query"
    for path in ("/generate", "/chat"):
        resp = client.post(path, json={"prompt": "hi", "model": "nope"})
        assert resp.status_code == 404
        assert resp.json()["detail"] == "The model 'nope' does not exist"


def test_bad_error_language_is_refused() -> None:
    with pytest.raises(SettingsError, match="error_language"):
        fake_settings(error_language="fr")


# -- /chat prompt formats --------------------------------------------------------------------


def test_chat_wrap_sends_exactly_the_documents_prompt(make: Callable[..., TestClient]) -> None:
    client = make(chat_prompt_format="wrap")
    resp = client.post("/chat", json={"prompt": "판교에서 백엔드 개발자 채용하는 곳 알려줘"})
    assert resp.status_code == 200, resp.text
    (request,) = _received(client)
    expected = WRAP.format("판교에서 백엔드 개발자 채용하는 곳 알려줘")
    assert request.prompt == expected
    assert request.messages is None  # a plain continuation, no chat template
    data = resp.json()
    assert data["prompt"] == "판교에서 백엔드 개발자 채용하는 곳 알려줘"
    assert data["full_text"] == expected + data["generated"]
    # /generate and the OpenAI surface are not wrapped
    client.post("/generate", json={"prompt": "plain"})
    chat = {"messages": [{"role": "user", "content": "templated"}]}
    client.post("/v1/chat/completions", json=chat)
    generate, openai_chat = _received(client)[1:]
    assert generate.prompt == "plain"
    assert openai_chat.prompt.startswith("<|im_start|>user\ntemplated<|im_end|>")


def test_chat_format_per_model_and_server(make: Callable[..., TestClient]) -> None:
    client = make(
        fake_model("m"),
        fake_model("templated", chat_prompt_format="template"),
        fake_model("custom", chat_prompt_format="Q: {prompt}\nA:"),
        chat_prompt_format="wrap",
    )
    for model in ("m", "templated", "custom"):
        assert client.post("/chat", json={"prompt": "hi", "model": model}).status_code == 200
    assert _received(client, "m")[0].prompt == WRAP.format("hi")
    assert _received(client, "templated")[0].prompt == (
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert _received(client, "custom")[0].prompt == "Q: hi\nA:"


def test_chat_template_is_the_default(make: Callable[..., TestClient]) -> None:
    client = make()
    data = client.post("/chat", json={"prompt": "hi"}).json()
    assert _received(client)[0].prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert data["prompt"] == "hi"
    assert data["full_text"].startswith("<|im_start|>user\nhi<|im_end|>")


@pytest.mark.parametrize("value", ["no placeholder", "", "{prompts}"])
def test_a_format_without_prompt_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="chat_prompt_format"):
        fake_settings(chat_prompt_format=value)
    with pytest.raises(SettingsError, match="chat_prompt_format"):
        fake_settings(fake_model("m", chat_prompt_format=value))


# -- fallback --------------------------------------------------------------------------------

FALLBACK = "잠시 후 다시 시도해 주세요."


@pytest.mark.parametrize(("path", "body"), MINIMAL, ids=PATHS)
def test_fallback_on_each_simple_endpoint(
    make: Callable[..., TestClient],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    path: str,
    body: dict[str, Any],
) -> None:
    caplog.set_level(logging.INFO)
    _fail_with(monkeypatch, lambda: EngineError("fake failed: the engine crashed"))
    client = make(fallback_response=FALLBACK)
    resp = client.post(path, json=body)
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-llmserver-fallback"] == "true"
    if path == "/infer":
        assert resp.json() == {"generated_text": FALLBACK}
    elif path == "/infer/stream":
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = sse_events(resp.text)
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert "".join(c.get("text", "") for c in chunks[:-1]) == FALLBACK
        assert {"index": 0, "finish_reason": "stop"} in chunks
        assert chunks[-1]["generated_text"] == FALLBACK
        assert "detail" not in resp.text
    else:
        prompt = body["prompt"]
        expected = {"prompt": prompt, "generated": FALLBACK, "full_text": prompt + FALLBACK}
        assert resp.json() == expected
    endpoint = path.strip("/").split("/")[0]
    failure = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any(
        r.getMessage()
        == f"{endpoint} failed, answering with the fallback response: fake failed: the engine "
        "crashed (engine_error)"
        for r in failure
    ), caplog.text


def test_fallback_hides_unexpected_errors_with_their_traceback(
    make: Callable[..., TestClient],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _fail_with(monkeypatch, lambda: RuntimeError("secret internal state"))
    client = make(fallback_response=FALLBACK)
    for path, body in MINIMAL:
        resp = client.post(path, json=body)
        assert resp.status_code == 200, path
        assert resp.headers["x-llmserver-fallback"] == "true"
        assert "secret" not in resp.text
    logged = [r for r in caplog.records if "answering with the fallback" in r.getMessage()]
    assert len(logged) == 4
    assert all(r.exc_info is not None for r in logged)


def test_fallback_leaves_refusals_of_the_request_alone(
    make: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    _fail_with(monkeypatch, lambda: EngineError("fake failed"))
    client = make(fallback_response=FALLBACK)
    for path in ("/infer", "/infer/stream"):
        resp = client.post(path, json={"query": "   "})
        assert resp.status_code == 400
        assert "x-llmserver-fallback" not in resp.headers
    for path in ("/generate", "/chat"):
        assert client.post(path, json={"prompt": "hi", "model": "nope"}).status_code == 404


def test_without_fallback_a_failure_is_its_error(
    make: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    _fail_with(monkeypatch, lambda: EngineError("fake failed"))
    client = make()
    for path, body in MINIMAL:
        resp = client.post(path, json=body)
        assert resp.status_code == 503
        assert "x-llmserver-fallback" not in resp.headers


def test_a_stream_failing_after_its_first_chunk_ends_with_a_detail_event(
    make: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = FakeBackend.generate

    async def generate(self: FakeBackend, request: GenerationRequest) -> AsyncIterator[Delta]:
        async for delta in original(self, request):
            yield delta
            if request.request_id != "warmup":
                raise EngineError("fake failed mid-stream")

    monkeypatch.setattr(FakeBackend, "generate", generate)
    client = make(fallback_response=FALLBACK, error_language="ko")
    resp = client.post("/infer/stream", json={"query": "hi"})
    assert resp.status_code == 200  # the headers were sent: no fallback any more
    assert "x-llmserver-fallback" not in resp.headers
    events = sse_events(resp.text)
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])
    assert error["detail"] == "fake failed mid-stream"
    assert error["error"]["code"] == "engine_error"


def test_wrap_and_defaults_reach_an_upstream_engine() -> None:
    """A model without a tokenizer gets the wrapped prompt as a plain completion, and the
    documents' sampling values in its body."""
    with serve(instant()) as up:
        model = {"id": "up", "url": up.base_url, "chat_prompt_format": "wrap"}
        settings = load_settings({"models": [model]})
        with open_client(settings, raise_server_exceptions=True) as client:
            assert client.post("/chat", json={"prompt": "hi"}).status_code == 200
            assert client.post("/infer", json={"query": "hey"}).status_code == 200
        chat, infer = [r["body"] for r in up.requests if r["body"] is not None]
    assert chat["prompt"] == WRAP.format("hi")
    assert "messages" not in chat
    assert (chat["max_tokens"], chat["temperature"], chat["top_k"]) == (256, 0.8, 50)
    assert infer["messages"] == [{"role": "user", "content": "hey"}]
    assert (infer["max_tokens"], infer["temperature"], infer["top_p"]) == (100, 0.7, 1.0)
