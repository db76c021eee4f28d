"""llama-server's code-completion limits on ``/infill``: ``n_indent`` ends a completion at the
first line indented less than it, ``t_max_predict_ms`` once a new line has begun and the time is
up; both cut streamed text without taking back what was sent."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from llmserver.core.fim import CodeLimits, LimitCut
from support import fake_model, fake_settings, open_client
from support.fake import fake_backend

FIM = {"prefix": "<PRE>", "suffix": "<SUF>", "middle": "<MID>"}
#: the body of an ``if`` block, then the code after the block
BLOCK = "x + 1\n        y = x\n        z = y\n    return z\n"


def _streamed(limits: CodeLimits, pieces: list[str]) -> tuple[str, bool]:
    cut = LimitCut(limits)
    out = ""
    for piece in pieces:
        text, done = cut.feed(piece)
        out += text
        if done:
            return out, True
    return out, False


@pytest.mark.parametrize("split", range(1, len(BLOCK)))
def test_n_indent_ends_at_the_first_line_indented_less_wherever_the_text_is_split(
    split: int,
) -> None:
    out, done = _streamed(CodeLimits(n_indent=8), [BLOCK[:split], BLOCK[split:]])
    assert done
    assert out == "x + 1\n        y = x\n        z = y\n    "  # the line's indentation stays


def test_n_indent_never_checks_the_line_the_hole_is_in() -> None:
    assert _streamed(CodeLimits(n_indent=8), ["x", " + 1"]) == ("x + 1", False)


def test_n_indent_ends_at_an_empty_line_as_llama_server_does() -> None:
    assert _streamed(CodeLimits(n_indent=4), ["a\n", "\n", "    b"]) == ("a\n", True)


def test_time_limit_ends_only_once_a_new_line_has_begun() -> None:
    now = [0.0]
    cut = LimitCut(CodeLimits(time_ms=100), clock=lambda: now[0])
    assert cut.feed("first") == ("first", False)
    now[0] = 1.0
    assert cut.feed(" line") == (" line", False)  # late, but still on the hole's line
    assert cut.feed("\nnext") == ("\nnext", True)


@pytest.fixture
def client() -> Iterator[TestClient]:
    """``coder`` answers :data:`BLOCK` (a word per token), in a FIM format from its config."""
    with open_client(fake_settings(fake_model("coder", fim=FIM, reply=BLOCK))) as c:
        yield c


def test_infill_with_n_indent_stops_the_generation_at_the_block_end(client: TestClient) -> None:
    body = {"model": "coder", "input_prefix": "if x:\n        ", "n_indent": 8}
    answer = client.post("/infill", json=body).json()
    assert answer["content"] == "x + 1\n        y = x\n        z = y\n    "
    assert answer["stop_type"] == "limit"
    assert answer["tokens_predicted"] < len(BLOCK.split())  # the rest was never generated
    stream = client.post("/infill", json={**body, "stream": True})
    events = [json.loads(e.removeprefix("data: ")) for e in stream.text.split("\n\n") if e]
    assert "".join(e["content"] for e in events) == answer["content"]
    assert events[-1]["stop_type"] == "limit"


def test_infill_without_limits_runs_to_the_end(client: TestClient) -> None:
    answer = client.post("/infill", json={"model": "coder", "input_prefix": "if x:\n"}).json()
    assert answer["content"] == BLOCK
    assert fake_backend(client, "coder").received[-1].prompt == "<PRE>if x:\n<SUF><MID>"


def test_negative_limits_are_refused_by_name(client: TestClient) -> None:
    resp = client.post("/infill", json={"model": "coder", "n_indent": -1})
    assert resp.status_code == 400
    assert "n_indent" in resp.text
