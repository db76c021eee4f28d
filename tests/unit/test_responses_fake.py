"""The Responses API through the whole server stack on the deterministic fake backend: the
response object as the ``openai`` package types it, the stream's events in OpenAI's order
accumulated by the package's own stream state into the stored response, replay, function
calls and their round trip, stored conversations, keys, background runs, refusals by name."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openai import omit
from openai._models import construct_type
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent

from llmserver.core.events import Delta
from llmserver.core.usage import Usage
from llmserver.errors import EngineError
from llmserver.jobs.response_runs import LiveRun, ResponseRuns
from llmserver.jobs.response_store import ResponseStore, StoredResponse
from llmserver.security.keys import create_key
from llmserver.surfaces.responses.stream import Failures, ResponseBuilder, events
from support import fake_model, fake_settings, open_client, sse_events
from support.fake import fake_backend
from support.tools import CITY_SCHEMA, GENERIC_CALL

RESPONSES = "/v1/responses"
WEATHER = {"type": "function", "name": "get_weather", "parameters": CITY_SCHEMA}


def create(client: TestClient, **body: Any) -> dict[str, Any]:
    resp = client.post(RESPONSES, json={"model": "fake", "input": "hello there", **body})
    assert resp.status_code == 200, resp.text
    answer: dict[str, Any] = resp.json()
    return answer


def streamed(client: TestClient, path: str = RESPONSES, **body: Any) -> list[dict[str, Any]]:
    if body:
        resp = client.post(path, json={"model": "fake", "input": "hello there", **body})
    else:
        resp = client.get(path)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/event-stream")
    return [json.loads(data) for data in sse_events(resp.text)]


def _plain(value: Any) -> Any:
    """A dumped response without the client-side fields of a parsed response."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k not in ("parsed", "parsed_arguments")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def accumulated(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The events as the ``openai`` package's ``responses.stream`` accumulates them
    (``get_final_response``), dumped."""
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    for event in events:
        state.handle_event(construct_type(type_=ResponseStreamEvent, value=event))  # type: ignore[arg-type]
    final = state._completed_response
    assert final is not None
    dumped: dict[str, Any] = _plain(final.model_dump(mode="json"))
    return dumped


def typed(body: dict[str, Any]) -> dict[str, Any]:
    """A response body as the ``openai`` package reads it, dumped."""
    dumped: dict[str, Any] = Response.model_validate(body).model_dump(mode="json")
    return dumped


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """The fake model; stored responses and batches in a data directory of its own."""
    with open_client(fake_settings(fake_model("fake"), data_dir=tmp_path)) as c:
        yield c


@pytest.fixture
def caller(tmp_path: Path) -> Iterator[TestClient]:
    """A fake model that answers with one call of the weather tool."""
    settings = fake_settings(fake_model("fake", reply=GENERIC_CALL), data_dir=tmp_path)
    with open_client(settings) as c:
        yield c


def test_a_response_is_an_openai_response_object_and_is_stored(client: TestClient) -> None:
    body = create(client, instructions="Be brief.", metadata={"k": "v"}, user="u1")
    resp = Response.model_validate(body)
    assert resp.status == "completed"
    assert resp.output_text
    assert resp.output[0].type == "message"
    assert resp.usage is not None
    assert resp.usage.input_tokens > 0
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    assert (resp.instructions, resp.metadata, resp.user, body["store"]) == (
        "Be brief.",
        {"k": "v"},
        "u1",
        True,
    )
    assert client.get(f"{RESPONSES}/{resp.id}").json() == body


def test_a_response_cut_by_max_output_tokens_is_incomplete(client: TestClient) -> None:
    body = create(client, max_output_tokens=3)
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["output"][0]["status"] == "incomplete"
    assert body["usage"]["output_tokens"] == 3


def test_stream_events_come_in_order_and_accumulate_to_the_stored_response(
    client: TestClient,
) -> None:
    events = streamed(client, stream=True)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    kinds = [e["type"] for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = accumulated(events)
    assert final == typed(client.get(f"{RESPONSES}/{final['id']}").json())
    text = final["output"][0]["content"][0]["text"]
    assert text == "".join(e["delta"] for e in events if "delta" in e)


def test_a_stored_stream_is_replayed_after_a_sequence_number(client: TestClient) -> None:
    events = streamed(client, stream=True)
    rid = events[0]["response"]["id"]
    assert streamed(client, f"{RESPONSES}/{rid}?stream=true") == events
    assert streamed(client, f"{RESPONSES}/{rid}?stream=true&starting_after=3") == events[4:]


def test_a_function_call_is_an_output_item_with_a_call_id(caller: TestClient) -> None:
    body = create(caller, tools=[WEATHER])
    (call,) = body["output"]
    assert call["type"] == "function_call"
    assert call["name"] == "get_weather"
    assert call["call_id"]
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    Response.model_validate(body)


def test_a_streamed_function_call_accumulates_to_the_stored_response(caller: TestClient) -> None:
    events = streamed(caller, stream=True, tools=[WEATHER])
    kinds = [e["type"] for e in events]
    assert "response.function_call_arguments.delta" in kinds
    assert kinds[-3:] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = accumulated(events)
    assert final == typed(caller.get(f"{RESPONSES}/{final['id']}").json())


def test_the_round_trip_shows_the_model_the_call_and_its_output(caller: TestClient) -> None:
    first = create(caller, input="Weather in Paris?", tools=[WEATHER])
    call = first["output"][0]
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": "Sunny"}
    create(caller, previous_response_id=first["id"], input=[output], tool_choice="none")
    prompt = fake_backend(caller).seen[-1]
    assert "Weather in Paris?" in prompt
    assert "<|im_start|>tool\nSunny<|im_end|>" in prompt
    listed = caller.get(f"{RESPONSES}/{first['id']}/input_items").json()
    assert [(i["type"], i["role"]) for i in listed["data"]] == [("message", "user")]


def test_input_tokens_count_the_prompt_a_response_reads(client: TestClient) -> None:
    body = {"model": "fake", "input": "hello there", "instructions": "Be brief."}
    counted = client.post(f"{RESPONSES}/input_tokens", json=body).json()
    assert counted["object"] == "response.input_tokens"
    assert (
        counted["input_tokens"] == create(client, instructions="Be brief.")["usage"]["input_tokens"]
    )


def test_nothing_is_stored_with_store_false_and_deleted_is_gone(client: TestClient) -> None:
    unstored = create(client, store=False)
    assert client.get(f"{RESPONSES}/{unstored['id']}").status_code == 404
    stored = create(client)
    deleted = client.delete(f"{RESPONSES}/{stored['id']}")
    assert deleted.json() == {"id": stored["id"], "object": "response", "deleted": True}
    missing = client.get(f"{RESPONSES}/{stored['id']}")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    gone = client.post(
        RESPONSES, json={"model": "fake", "input": "x", "previous_response_id": stored["id"]}
    )
    assert gone.status_code == 404
    assert gone.json()["error"]["param"] == "previous_response_id"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tools": [{"type": "mcp", "server_label": "x"}]}, "tools[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input[0].content[0].type",
        ),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        ({"include": ["file_search_call.results"]}, "include[0]"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"tool_choice": {"type": "web_search"}, "tools": [WEATHER]}, "tool_choice.type"),
        ({"max_tool_calls": 2}, "max_tool_calls"),
        ({"text": {"verbosity": "low"}}, "text.verbosity"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
        ({"background": True, "store": False}, "background"),
        ({"temperature": "0.5"}, "temperature"),
        ({"top_p": True}, "top_p"),
    ],
)
def test_what_is_not_served_is_refused_by_name(
    client: TestClient, extra: dict[str, Any], param: str
) -> None:
    resp = client.post(RESPONSES, json={"model": "fake", "input": "hi", **extra})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_logprobs_on_a_model_without_them_name_the_include(client: TestClient) -> None:
    asked = {"model": "fake", "input": "hi", "include": ["message.output_text.logprobs"]}
    resp = client.post(RESPONSES, json=asked)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "include"


# -- keys, background runs, the store ------------------------------------------------------------


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    path = tmp_path / "keys.json"
    options: dict[str, dict[str, Any]] = {
        "a": {},
        "b": {},
        "other-only": {"models": ["other"]},
        "masked": {"mask_pii": True},
    }
    keys = {name: create_key(path, name, **opts) for name, opts in options.items()}
    models = (fake_model("fake"), fake_model("other"))
    settings = fake_settings(*models, keys_file=path, data_dir=tmp_path)
    with open_client(settings) as c:
        yield c, {name: {"Authorization": f"Bearer {k}"} for name, k in keys.items()}


def test_a_response_belongs_to_the_key_that_created_it(
    keyed: tuple[TestClient, dict[str, dict[str, str]]],
) -> None:
    client, keys = keyed
    made = client.post(RESPONSES, json={"model": "fake", "input": "hi"}, headers=keys["a"])
    rid = made.json()["id"]
    assert client.get(f"{RESPONSES}/{rid}", headers=keys["a"]).status_code == 200
    for path in (f"{RESPONSES}/{rid}", f"{RESPONSES}/{rid}/input_items"):
        assert client.get(path, headers=keys["b"]).status_code == 404
    assert client.delete(f"{RESPONSES}/{rid}", headers=keys["b"]).status_code == 404
    follow = {"model": "fake", "input": "more", "previous_response_id": rid}
    assert client.post(RESPONSES, json=follow, headers=keys["b"]).status_code == 404
    assert client.get(f"{RESPONSES}/{rid}", headers=keys["a"]).status_code == 200
    assert client.post(RESPONSES, json={"model": "fake", "input": "hi"}).status_code == 401
    denied = client.post(
        RESPONSES, json={"model": "fake", "input": "hi"}, headers=keys["other-only"]
    )
    assert denied.status_code == 403


def test_a_masked_key_is_masked_in_responses_and_their_continuations(
    keyed: tuple[TestClient, dict[str, dict[str, str]]],
) -> None:
    client, keys = keyed
    email = "jane.doe@example.com"
    asked = {"model": "fake", "input": f"mail {email} now"}
    first = client.post(RESPONSES, json=asked, headers=keys["masked"]).json()
    seen = fake_backend(client).seen
    assert email not in seen[-1]
    assert "[EMAIL]" in seen[-1]
    follow = {"model": "fake", "input": "and?", "previous_response_id": first["id"]}
    assert client.post(RESPONSES, json=follow, headers=keys["masked"]).is_success
    assert email not in seen[-1]
    assert "[EMAIL]" in seen[-1]


def _until(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.02)
    return value


def test_a_background_run_completes_and_is_followed_by_stream(tmp_path: Path) -> None:
    settings = fake_settings(fake_model("fake", token_delay_s=0.01), data_dir=tmp_path)
    with open_client(settings) as client:
        queued = create(client, background=True)
        assert queued["status"] in ("queued", "in_progress")
        assert queued["background"] is True
        path = f"{RESPONSES}/{queued['id']}"
        events = streamed(client, f"{path}?stream=true")
        assert events[-1]["type"] == "response.completed"
        done = _until(lambda: (b := client.get(path).json())["status"] == "completed" and b)
        assert accumulated(events) == typed(done)


def test_a_background_run_is_cancelled(tmp_path: Path) -> None:
    settings = fake_settings(fake_model("fake", token_delay_s=0.5), data_dir=tmp_path)
    with open_client(settings) as client:
        queued = create(client, background=True)
        cancelled = client.post(f"{RESPONSES}/{queued['id']}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        assert client.get(f"{RESPONSES}/{queued['id']}").json()["status"] == "cancelled"
        again = client.post(f"{RESPONSES}/{queued['id']}/cancel")
        assert again.json()["status"] == "cancelled"
        foreground = create(client, max_output_tokens=1, store=True)
        refused = client.post(f"{RESPONSES}/{foreground['id']}/cancel")
        assert refused.status_code == 400


def test_the_store_forgets_responses_past_their_retention(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path / "db.sqlite3")
    body = {"id": "resp_1", "status": "completed", "output": []}
    store.put(StoredResponse("resp_1", "a", 100, 200, body, [], []))
    assert store.get("resp_1", "a", 150) is not None
    assert store.get("resp_1", "b", 150) is None
    assert store.get("resp_1", "a", 200) is None
    assert store.purge(199) == 0
    assert store.purge(200) == 1


def test_a_background_run_cut_by_a_restart_is_failed(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path / "db.sqlite3")
    running = {"id": "resp_2", "status": "in_progress", "output": []}
    store.put(StoredResponse("resp_2", "a", 100, 10**12, running, [], []))
    assert ResponseStore(tmp_path / "db.sqlite3").interrupted() == 1
    found = store.get("resp_2", "a", 150)
    assert found is not None
    assert found.status == "failed"
    assert found.body["error"]["code"] == "server_error"


def _batch(client: TestClient, lines: list[dict[str, Any]]) -> dict[str, Any]:
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    upload = client.post("/v1/files", files={"file": ("in.jsonl", data)}, data={"purpose": "batch"})
    assert upload.status_code == 200, upload.text
    asked = {"input_file_id": upload.json()["id"], "endpoint": RESPONSES}
    made = client.post("/v1/batches", json={**asked, "completion_window": "24h"})
    assert made.status_code == 200, made.text
    batch: dict[str, Any] = made.json()
    return batch


def _line(custom_id: str, **body: Any) -> dict[str, Any]:
    body = {"model": "fake", "input": "hello there", "max_output_tokens": 3, **body}
    return {"custom_id": custom_id, "method": "POST", "url": RESPONSES, "body": body}


def test_batch_lines_answer_as_the_route_does(client: TestClient) -> None:
    batch = _batch(client, [_line("a"), _line("b", instructions="Be brief.")])
    path = f"/v1/batches/{batch['id']}"
    done = _until(lambda: (b := client.get(path).json())["status"] == "completed" and b)
    output = client.get(f"/v1/files/{done['output_file_id']}/content").text
    answers = {line["custom_id"]: line["response"] for line in map(json.loads, output.splitlines())}
    for answer in answers.values():
        assert answer["status_code"] == 200
        body = answer["body"]
        Response.model_validate(body)
        assert body["status"] == "incomplete"
        assert body["store"] is False
    assert answers["b"]["body"]["instructions"] == "Be brief."


def test_batch_lines_that_need_the_store_fail_validation(client: TestClient) -> None:
    batch = _batch(client, [_line("a", previous_response_id="resp_1")])
    assert batch["status"] == "failed"
    (error,) = batch["errors"]["data"]
    assert error["param"] == "body.previous_response_id"


class _Failing:
    """A generation that fails after its first piece of text."""

    usage = Usage()

    async def events(self) -> AsyncIterator[tuple[int, Delta]]:
        yield 0, Delta("Hel")
        raise EngineError("the engine broke")


async def _events_of(failures: Failures) -> list[dict[str, Any]]:
    builder = ResponseBuilder("resp_x", "fake", {}, 0)
    gen: Any = _Failing()
    return [event async for event in events(gen, builder, failures)]


async def test_a_failure_after_the_stream_began_is_a_failed_response() -> None:
    got = await _events_of("after_start")
    assert [e["sequence_number"] for e in got] == list(range(len(got)))
    assert got[-1]["type"] == "response.failed"
    failed = got[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "engine_error", "message": "the engine broke"}
    assert failed["output"][0]["content"][0]["text"] == "Hel"
    with pytest.raises(EngineError):
        await _events_of("raise")


def test_a_namespace_tool_is_flattened_and_its_calls_name_it(caller: TestClient) -> None:
    grouped = {"type": "namespace", "name": "weather", "description": "d", "tools": [WEATHER]}
    body = create(caller, tools=[grouped])
    (call,) = body["output"]
    assert (call["name"], call["namespace"]) == ("get_weather", "weather")
    assert body["tools"][0]["tools"][0]["name"] == "get_weather"
    Response.model_validate(body)


@pytest.mark.parametrize(
    ("inner", "param"),
    [
        ({"type": "custom", "name": "patch"}, "tools[0].tools[0].type"),
        ({**WEATHER, "parameters": {"type": "string"}}, "tools[0].tools[0].parameters"),
    ],
)
def test_a_namespace_tool_that_cannot_be_served_is_named(
    client: TestClient, inner: dict[str, Any], param: str
) -> None:
    grouped = {"type": "namespace", "name": "ns", "description": "d", "tools": [inner]}
    resp = client.post(RESPONSES, json={"model": "fake", "input": "hi", "tools": [grouped]})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param


def _long_conversation() -> list[dict[str, Any]]:
    words = " ".join(["word"] * 12)
    call = {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"}
    items: list[dict[str, Any]] = [
        {"role": "user", "content": f"oldest {words}"},
        call,
        {"type": "function_call_output", "call_id": "c1", "output": f"sunny {words}"},
    ]
    items += [{"role": "user", "content": f"turn{i} {words}"} for i in range(6)]
    return [*items, {"role": "user", "content": "newest question"}]


def test_truncation_auto_drops_the_oldest_items_until_the_prompt_fits(tmp_path: Path) -> None:
    settings = fake_settings(fake_model("fake", context_size=64), data_dir=tmp_path)
    with open_client(settings) as client:
        asked: dict[str, Any] = {
            "model": "fake",
            "input": _long_conversation(),
            "instructions": "Be brief.",
            "tools": [WEATHER],
            "max_output_tokens": 4,
        }
        refused = client.post(RESPONSES, json=asked)
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "context_length_exceeded"
        body = create(client, **asked, truncation="auto")
        assert body["truncation"] == "auto"
        prompt = fake_backend(client).seen[-1]
        assert "Be brief." in prompt
        assert "newest question" in prompt
        assert "oldest" not in prompt
        assert "sunny" not in prompt  # the tool output went with its call
        assert body["usage"]["input_tokens"] < 64
        counted = client.post(f"{RESPONSES}/input_tokens", json={**asked, "truncation": "auto"})
        assert counted.json()["input_tokens"] == body["usage"]["input_tokens"]
        listed = client.get(f"{RESPONSES}/{body['id']}/input_items?order=asc").json()
        assert len(listed["data"]) == len(asked["input"])  # what was sent is kept whole


def test_a_background_run_may_be_streamed_as_it_is_created(tmp_path: Path) -> None:
    settings = fake_settings(fake_model("fake", token_delay_s=0.01), data_dir=tmp_path)
    with open_client(settings) as client:
        events = streamed(client, stream=True, background=True)
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        assert events[-1]["type"] == "response.completed"
        stored = client.get(f"{RESPONSES}/{events[0]['response']['id']}").json()
        assert accumulated(events) == typed(stored)
        assert stored["background"] is True


async def test_a_background_run_cancelled_before_it_ever_ran_ends(tmp_path: Path) -> None:
    async def count(caller: Any, model: str, used: Usage) -> None:
        return None

    runs = ResponseRuns(ResponseStore(tmp_path / "db.sqlite3"), 60.0, count)
    ran: list[bool] = []

    async def work() -> None:
        ran.append(True)

    run = LiveRun({"id": "resp_3", "status": "queued"})
    runs.start("resp_3", run, work())
    assert await runs.cancel("resp_3")  # at once: the task has not taken a step yet
    assert not ran
    assert run.done
    assert run.body["status"] == "cancelled"
    assert [event async for event in run.follow(-1)] == []  # a follower is not left waiting
    assert "resp_3" not in runs.live


#: a fake reasoning model: the template opens the thought (DeepSeek-R1's style), the reply
#: thinks, closes the thought and answers
R1_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)


@pytest.fixture
def thinker(tmp_path: Path) -> Iterator[TestClient]:
    model = fake_model("r1", chat_template=R1_TEMPLATE, reply=" I should greet. </think> Hello")
    with open_client(fake_settings(model, data_dir=tmp_path)) as c:
        yield c


def test_a_thought_is_a_reasoning_item_before_the_message(thinker: TestClient) -> None:
    body = create(thinker, model="r1", input="Hi")
    reasoning, message = body["output"]
    assert reasoning["type"] == "reasoning"
    assert reasoning["summary"] == [{"type": "summary_text", "text": "I should greet."}]
    assert message["content"][0]["text"] == "Hello"
    assert body["usage"]["output_tokens_details"]["reasoning_tokens"] > 0
    typed(body)  # the openai package reads it


def test_a_streamed_thought_accumulates_to_the_stored_response(thinker: TestClient) -> None:
    events = streamed(thinker, model="r1", input="Hi", stream=True)
    kinds = [e["type"] for e in events]
    assert kinds[2:5] == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
    ]
    done = kinds.index("response.reasoning_summary_text.done")
    assert kinds[done : done + 3] == [
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
    ]
    assert kinds.index("response.output_text.delta") > done
    final = accumulated(events)
    assert final == typed(thinker.get(f"{RESPONSES}/{final['id']}").json())


def test_reasoning_effort_none_switches_the_thought_off(thinker: TestClient) -> None:
    body = create(thinker, model="r1", input="Hi", reasoning={"effort": "none"})
    assert [item["type"] for item in body["output"]] == ["message"]
    assert fake_backend(thinker, "r1").seen[-1].endswith("<think>\n</think>\n\n")  # closed
