"""Request ids, access lines, JSON log lines, DEBUG text masking and the runtime log level."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from logging.handlers import TimedRotatingFileHandler
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmserver.observability.logs import (
    JsonFormatter,
    RequestIdFilter,
    configure_logging,
    current_level,
    set_level,
)
from llmserver.privacy import PIIMasker
from support.fake import app_of

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def restore_level() -> Iterator[None]:
    level = logging.getLogger().level
    yield
    logging.getLogger().setLevel(level)


@pytest.mark.parametrize(
    "given",
    ["abc-123", "req_1.2:3@host/x=y+z", "A" * 128],
)
def test_valid_request_id_is_echoed(client: TestClient, given: str) -> None:
    resp = client.get("/health", headers={"x-request-id": given})
    assert resp.headers["x-request-id"] == given


@pytest.mark.parametrize(
    "given",
    ["", "A" * 129, "has space", 'quote"d', "new\\nline", "ünïcode", "<script>"],
)
def test_unsafe_request_id_is_replaced(client: TestClient, given: str) -> None:
    resp = client.get("/health", headers={b"x-request-id": given.encode("utf-8")})
    returned = resp.headers["x-request-id"]
    assert returned != given
    assert len(returned) == 32
    assert int(returned, 16) >= 0


def test_every_response_gets_a_fresh_id(client: TestClient) -> None:
    ids = {client.get("/health").headers["x-request-id"] for _ in range(5)}
    ids.add(client.get("/nope").headers["x-request-id"])  # errors too
    ids.add(client.post(CHAT, json={"messages": USER, "stream": True}).headers["x-request-id"])
    assert len(ids) == 7


def test_access_line_fields_and_request_id(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="llmserver.access"):
        body = {"model": "f", "messages": USER, "stream": True}
        resp = client.post(CHAT, json=body, headers={"x-request-id": "trace-42"})
    assert resp.status_code == 200
    (line,) = [r for r in caplog.records if r.name == "llmserver.access"]
    fields = vars(line)
    assert fields["status"] == 200
    assert fields["model"] == "fake"
    assert fields["backend"] == "fake"
    assert fields["streamed"] is True
    assert fields["prompt_tokens"] > 0
    assert fields["completion_tokens"] == 12  # counted without include_usage
    assert fields["ttft_ms"] is not None
    assert fields["ttft_ms"] <= fields["latency_ms"]
    assert fields["tokens_per_s"] > 0
    assert fields["client"] == "testclient"
    assert fields["key_name"] == "-"
    assert fields["method"] == "POST"
    assert fields["path"] == CHAT
    # the filter on our handlers stamps the id; here the record is checked through it
    RequestIdFilter().filter(line)
    assert "hello there" not in line.getMessage()


def test_json_formatter_and_request_id_filter() -> None:
    from llmserver.observability.logs import request_id_var

    record = logging.LogRecord("llmserver.x", logging.INFO, __file__, 1, "hi %s", ("there",), None)
    record.status = 201
    token = request_id_var.set("rid-7")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hi there"
    assert line["request_id"] == "rid-7"
    assert line["status"] == 201
    assert line["level"] == "info"


def test_debug_text_is_masked_then_cut() -> None:
    masker = PIIMasker()
    text = "mail jane.doe@example.com or call 010-5843-6050 " + "x" * 100
    out = masker.excerpt(text)
    assert "jane.doe" not in out
    assert "5843" not in out
    assert out.startswith("mail [EMAIL] or call [PHONE]")
    assert len(out) <= 51


def test_request_text_only_at_debug(
    client: TestClient, caplog: pytest.LogCaptureFixture, restore_level: None
) -> None:
    secret = [{"role": "user", "content": "my phone is 010-5843-6050 ok"}]
    with caplog.at_level(logging.INFO):
        client.post(CHAT, json={"messages": secret})
    assert "010-5843" not in caplog.text
    assert "my phone" not in caplog.text
    caplog.clear()
    caplog.handler.addFilter(RequestIdFilter())  # as on our own handlers
    with caplog.at_level(logging.DEBUG):
        resp = client.post(CHAT, json={"messages": secret, "stream": True})
    assert "my phone is [PHONE] ok" in caplog.text
    assert "5843" not in caplog.text
    rid = resp.headers["x-request-id"]
    (debug,) = [r for r in caplog.records if "request text" in r.getMessage()]
    (access,) = [r for r in caplog.records if r.name == "llmserver.access"]
    # the request id is an extra attribute the log filter sets on each record
    assert debug.request_id == access.request_id == rid  # type: ignore[attr-defined]


def test_log_level_endpoint(client: TestClient, restore_level: None) -> None:
    resp = client.put("/admin/log-level", json={"level": "debug"})
    assert resp.status_code == 200
    assert resp.json() == {"level": "debug"}
    assert logging.getLogger().level == logging.DEBUG
    assert client.get("/admin/log-level").json() == {"level": "debug"}
    bad = client.put("/admin/log-level", json={"level": "loud"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "level"
    assert current_level() == "debug"
    set_level("warning")
    assert client.get("/admin/log-level").json() == {"level": "warning"}


def test_configure_logging_file_and_json(tmp_path: Path, restore_level: None) -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        configure_logging("info", "json", tmp_path / "logs")
        configure_logging("info", "json", tmp_path / "logs")
        ours = [h for h in root.handlers if getattr(h, "_llmserver", False)]
        assert len(ours) == 2  # console and file, not duplicated
        file_handler = next(h for h in ours if isinstance(h, logging.FileHandler))
        assert isinstance(file_handler, TimedRotatingFileHandler)
        assert file_handler.when == "MIDNIGHT"
        assert file_handler.backupCount == 30
        logging.getLogger("llmserver.test").info("to the file")
        file_handler.flush()
        lines = (tmp_path / "logs" / "llmserver.log").read_text().splitlines()
        assert json.loads(lines[-1])["message"] == "to the file"
    finally:
        for handler in list(root.handlers):
            if handler not in before:
                root.removeHandler(handler)
                handler.close()


def test_unexpected_error_is_a_logged_500_with_request_id(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    app_of(client).add_api_route("/test/broken", broken)
    with caplog.at_level(logging.INFO):
        resp = client.get("/test/broken", headers={"x-request-id": "rid-500"})
    assert resp.status_code == 500
    assert resp.headers["x-request-id"] == "rid-500"
    assert resp.json()["error"]["code"] == "internal_error"
    assert "boom" not in resp.text
    (line,) = [r for r in caplog.records if r.name == "llmserver.access"]
    assert vars(line)["status"] == 500
    assert vars(line)["error_code"] == "internal_error"
    assert "RuntimeError: boom" in caplog.text  # the traceback goes to the log
    assert client.get("/health").status_code == 200
