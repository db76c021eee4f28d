"""Request bodies: fields that fix the output length, unique prompts, prompt files."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from llmserver.bench.workload import (
    PayloadFactory,
    Workload,
    load_prompts,
    shared_instruction,
    synthetic_prompt,
)


def test_chat_body_fixes_output_and_asks_for_usage() -> None:
    factory = PayloadFactory(Workload(output_tokens=32, input_tokens=50), "m")
    body = orjson.loads(factory.build("b", 0))
    assert body["model"] == "m"
    assert body["max_tokens"] == body["min_tokens"] == 32
    assert body["ignore_eos"] is True
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    (message,) = body["messages"]
    assert message["role"] == "user"
    assert len(message["content"].split()) == 50 - 8 + 1  # the words and the tag


def test_completions_body_without_fixed_output() -> None:
    workload = Workload(
        endpoint="completions", stream=False, output_tokens=0, extra_body={"temperature": 0}
    )
    body = orjson.loads(PayloadFactory(workload, "m").build("b", 3))
    assert isinstance(body["prompt"], str)
    assert "max_tokens" not in body
    assert "ignore_eos" not in body
    assert "stream_options" not in body
    assert body["temperature"] == 0


def test_every_request_is_unique_and_deterministic() -> None:
    factory = PayloadFactory(Workload(seed=7), "m")
    bodies = {factory.build(batch, i) for batch in ("x", "y") for i in range(200)}
    assert len(bodies) == 400
    again = PayloadFactory(Workload(seed=7), "m")
    assert again.build("x", 5) == factory.build("x", 5)
    assert PayloadFactory(Workload(seed=8), "m").build("x", 5) != factory.build("x", 5)
    assert synthetic_prompt(20, 1) == synthetic_prompt(20, 1)


def test_load_text_prompts(tmp_path: Path) -> None:
    path = tmp_path / "prompts.txt"
    path.write_text("first prompt\n\nsecond {not json}\n", encoding="utf-8")
    assert load_prompts(path) == ("first prompt", "second {not json}")


def test_load_jsonl_prompts_and_tag_the_last_message(tmp_path: Path) -> None:
    path = tmp_path / "prompts.jsonl"
    lines = [
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"},
            ]
        },
        {"prompt": "plain"},
        "a string",
    ]
    path.write_bytes(b"\n".join(orjson.dumps(x) for x in lines))
    prompts = load_prompts(path)
    assert prompts[1:] == ("plain", "a string")
    factory = PayloadFactory(Workload(prompts=prompts), "m")
    messages = orjson.loads(factory.build("b", 0))["messages"]
    # the shared system prompt stays as it is (a prefix cache may serve it); the user's turn
    # is made unique
    assert messages[0]["content"] == "be brief"
    assert messages[1]["content"].endswith("] hi")
    assert messages[1]["content"].startswith("[")
    assert orjson.loads(factory.build("b", 4))["messages"][0]["content"].endswith("] plain")


def test_bad_prompt_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no prompts"):
        load_prompts(empty)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"x": 1}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="messages, prompt or text"):
        load_prompts(bad)


def test_shared_prefix_comes_before_the_unique_tag() -> None:
    factory = PayloadFactory(Workload(shared_prefix=100, input_tokens=40), "m")
    first, second = (orjson.loads(factory.build("b", i))["messages"][0]["content"] for i in (0, 1))
    head = shared_instruction(100, 0) + "\n\n"
    assert first.startswith(head)
    assert second.startswith(head)
    assert first != second
    assert first[len(head)] == "["  # the request's tag follows the shared instruction
    assert len(head.split()) == 100 - 4 + 1
    # the same instruction for every batch (both targets), another with another seed
    other = PayloadFactory(Workload(shared_prefix=100), "m").build("other", 5)
    assert orjson.loads(other)["messages"][0]["content"].startswith(head)
    assert shared_instruction(100, 1) != shared_instruction(100, 0)


def test_multi_turn_repeats_the_conversation_so_far() -> None:
    workload = Workload(turns=3, conversations=2, input_tokens=20, output_tokens=8)
    factory = PayloadFactory(workload, "m")
    bodies = [orjson.loads(factory.build("b", i))["messages"] for i in range(8)]
    assert [factory.turn(i) for i in range(8)] == [0, 0, 1, 1, 2, 2, 0, 0]
    # request 4 is turn 3 of conversation 0: requests 0 and 2 then a new user message
    assert [m["role"] for m in bodies[4]] == ["user", "assistant"] * 2 + ["user"]
    assert bodies[4][:3] == bodies[2]
    assert bodies[2][0] == bodies[0][0]
    assert bodies[1][0] != bodies[0][0]  # conversations differ from the first message on
    # after its last turn a conversation starts again, with a new tag
    assert len(bodies[6]) == 1
    assert bodies[6][0] != bodies[0][0]
    assert PayloadFactory(workload, "m").build("b", 4) == factory.build("b", 4)


def test_no_unique_sends_the_same_request_every_time() -> None:
    factory = PayloadFactory(Workload(unique=False), "m")
    assert len({factory.build(batch, i) for batch in ("x", "y") for i in range(5)}) == 1
