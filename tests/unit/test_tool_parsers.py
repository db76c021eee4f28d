"""The ``auto`` tool-call parsers on raw outputs of real models, split at every point.

The raw outputs are written in each model family's documented output format (Qwen's function
calling guide, Hermes 2 Pro's model card, Meta's Llama 3.1/3.2 prompt-format page, Mistral's
v3 and v11 tokenizer formats), with the whitespace those models emit; no such model can be
run here (nothing comes from a model hub), so they are transcribed, not captured.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmserver.backends.base import ToolCallDelta
from llmserver.core.generation import add_call_delta
from llmserver.core.requests import ToolCall
from llmserver.core.tools.formats import (
    FORCED,
    GENERIC,
    HERMES,
    LLAMA3,
    MISTRAL,
    ToolFormat,
    detect,
)
from llmserver.core.tools.stream import ForcedCalls, ToolStream

NAMES = ["get_current_temperature", "get_temperature_date", "get_weather"]

QWEN_TWO_CALLS = (
    "<tool_call>\n"
    '{"name": "get_current_temperature", "arguments": {"location": "San Francisco, CA, USA", '
    '"unit": "celsius"}}\n'
    "</tool_call>\n"
    "<tool_call>\n"
    '{"name": "get_temperature_date", "arguments": {"location": "San Francisco, CA, USA", '
    '"date": "2024-10-01", "unit": "celsius"}}\n'
    "</tool_call>"
)
QWEN3_THINKING = (
    "<think>\nThe user wants the weather in 서울. I should call get_weather.\n</think>\n\n"
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "서울"}}\n</tool_call>'
)
HERMES_TEXT_THEN_CALL = (
    "Let me check that for you.\n"
    '<tool_call>\n{"arguments": {"city": "Paris"}, "name": "get_weather"}\n</tool_call>'
)
LLAMA31_JSON = (
    '{"name": "get_current_temperature", "parameters": {"location": "San Francisco, CA", '
    '"unit": "fahrenheit"}}'
)
LLAMA32_PYTHON_TAG = '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}'
MISTRAL_V3 = (
    '[TOOL_CALLS] [{"name": "get_current_temperature", "arguments": {"location": "Paris, '
    'France", "unit": "celsius"}, "id": "9Ae3bDc2F"}]'
)
MISTRAL_V11 = '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_temperature_date[ARGS]{"location": "Paris", "date": "2024-10-01"}'  # noqa: E501
GENERIC_CALL = '{"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}}'

CASES: list[tuple[ToolFormat, str, list[tuple[str, dict[str, object]]], str]] = [
    (
        HERMES,
        QWEN_TWO_CALLS,
        [
            (
                "get_current_temperature",
                {"location": "San Francisco, CA, USA", "unit": "celsius"},
            ),
            (
                "get_temperature_date",
                {"location": "San Francisco, CA, USA", "date": "2024-10-01", "unit": "celsius"},
            ),
        ],
        "",
    ),
    (
        HERMES,
        QWEN3_THINKING,
        [("get_weather", {"city": "서울"})],
        "<think>\nThe user wants the weather in 서울. I should call get_weather.\n</think>\n\n",
    ),
    (
        HERMES,
        HERMES_TEXT_THEN_CALL,
        [("get_weather", {"city": "Paris"})],
        "Let me check that for you.\n",
    ),
    (
        LLAMA3,
        LLAMA31_JSON,
        [("get_current_temperature", {"location": "San Francisco, CA", "unit": "fahrenheit"})],
        "",
    ),
    (LLAMA3, LLAMA32_PYTHON_TAG, [("get_weather", {"city": "Paris"})], ""),
    (
        MISTRAL,
        MISTRAL_V3,
        [("get_current_temperature", {"location": "Paris, France", "unit": "celsius"})],
        "",
    ),
    (
        MISTRAL,
        MISTRAL_V11,
        [
            ("get_weather", {"city": "Paris"}),
            ("get_temperature_date", {"location": "Paris", "date": "2024-10-01"}),
        ],
        "",
    ),
    (GENERIC, GENERIC_CALL, [("get_weather", {"city": "Paris"})], ""),
    # not calls: plain answers, JSON that is no call, a call to a tool nobody gave, bad JSON
    (HERMES, "It is sunny in Paris today.", [], "It is sunny in Paris today."),
    (LLAMA3, "Sure! The answer is 4.", [], "Sure! The answer is 4."),
    (GENERIC, '{"answer": 4}', [], '{"answer": 4}'),
    (
        HERMES,
        '<tool_call>\n{"name": "launch_rockets", "arguments": {}}\n</tool_call>',
        [],
        '<tool_call>\n{"name": "launch_rockets", "arguments": {}}\n</tool_call>',
    ),
    (
        HERMES,
        'Trying: <tool_call>{"name": "get_weather", "argu',
        [],
        'Trying: <tool_call>{"name": "get_weather", "argu',
    ),
    (MISTRAL, "[TOOL_CALLS] not json", [], "[TOOL_CALLS] not json"),
    (HERMES, "<tool_call>[1, 2]</tool_call> ok", [], "<tool_call>[1, 2]</tool_call> ok"),
    (HERMES, "<tool_call>[]</tool_call> ok", [], "<tool_call>[]</tool_call> ok"),
    (GENERIC, "[] and {}", [], "[] and {}"),
    (HERMES, '<tool_call>{"name": 4}</tool_call>', [], '<tool_call>{"name": 4}</tool_call>'),
    # other shapes: OpenAI's own, arguments as a JSON string, a generic list, key order
    (
        HERMES,
        '<tool_call>{"type": "function", "function": {"name": "get_weather", '
        '"arguments": "{\\"city\\": \\"Paris\\"}"}}</tool_call>',
        [("get_weather", {"city": "Paris"})],
        "",
    ),
    (
        GENERIC,
        '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}, '
        '{"name": "get_weather", "arguments": {"city": "Oslo"}}]}',
        [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Oslo"})],
        "",
    ),
    (
        MISTRAL,
        '[TOOL_CALLS]get_weather[CALL_ID]a1B2c3D4e[ARGS]{"city": "Paris"}',
        [("get_weather", {"city": "Paris"})],
        "",
    ),
    (LLAMA3, '{"name": "get_weather"}', [("get_weather", {})], ""),
]

MARKUP = ("<tool_call>", "</tool_call>", "<|python_tag|>", "[TOOL_CALLS]", "[ARGS]")


def run(
    fmt: ToolFormat, pieces: list[str], parser: ToolStream | None = None
) -> tuple[str, list[ToolCall]]:
    """Feed the pieces as a stream would; the content and the reassembled calls."""
    parser = parser or ToolStream(fmt, NAMES)
    content = ""
    calls: list[ToolCall] = []
    deltas: list[ToolCallDelta] = []
    for piece in pieces:
        text, more = parser.feed(piece)
        content += text
        deltas += more
    text, more = parser.finish()
    content += text
    deltas += more
    for delta in deltas:
        add_call_delta(calls, delta)
    # each call's first piece carries its id and name, the ones after only arguments
    firsts = [d for d in deltas if d.id is not None]
    assert all(d.name and not d.arguments for d in firsts)
    assert len(firsts) == len(calls)
    return content, calls


def as_plain(calls: list[ToolCall]) -> list[tuple[str, object]]:
    return [(c.name, json.loads(c.arguments)) for c in calls]


@pytest.mark.parametrize(("fmt", "raw", "calls", "content"), CASES)
def test_whole_output_parses(
    fmt: ToolFormat, raw: str, calls: list[tuple[str, object]], content: str
) -> None:
    got_content, got_calls = run(fmt, [raw])
    assert as_plain(got_calls) == calls
    assert got_content == content
    if calls:
        assert not any(mark in got_content for mark in MARKUP)
    for call in got_calls:  # the model's own text of the arguments, never re-serialised
        assert (
            call.arguments in raw
            or json.dumps(call.arguments)[1:-1] in raw
            or (call.arguments == "{}")
        )


@pytest.mark.parametrize(("fmt", "raw", "calls", "content"), CASES)
def test_every_two_way_split_equals_the_whole(
    fmt: ToolFormat, raw: str, calls: list[tuple[str, object]], content: str
) -> None:
    whole = run(fmt, [raw])[1]
    for cut in range(len(raw) + 1):
        got_content, got_calls = run(fmt, [raw[:cut], raw[cut:]])
        assert as_plain(got_calls) == calls, cut
        assert got_content == content, cut
        # the reassembled arguments are the same string, not only the same JSON
        assert [(c.name, c.arguments) for c in got_calls] == [
            (c.name, c.arguments) for c in whole
        ], cut


@pytest.mark.parametrize(("fmt", "raw", "calls", "content"), CASES)
def test_character_by_character_equals_the_whole(
    fmt: ToolFormat, raw: str, calls: list[tuple[str, object]], content: str
) -> None:
    got_content, got_calls = run(fmt, list(raw))
    assert as_plain(got_calls) == calls
    assert got_content == content
    whole = run(fmt, [raw])[1]
    assert [(c.name, c.arguments) for c in got_calls] == [(c.name, c.arguments) for c in whole]


STREAMED = [
    (HERMES, QWEN_TWO_CALLS),
    (HERMES, QWEN3_THINKING),
    (LLAMA3, LLAMA31_JSON),
    (MISTRAL, MISTRAL_V3),
    (MISTRAL, MISTRAL_V11),
    (GENERIC, GENERIC_CALL),
]


@pytest.mark.parametrize(("fmt", "raw"), STREAMED)
def test_arguments_stream_as_the_model_writes_them(fmt: ToolFormat, raw: str) -> None:
    """Fed character by character, a call's first piece comes with the '{' of its arguments
    and every later character of the arguments object comes out as soon as it is fed."""
    parser = ToolStream(fmt, NAMES)
    fed = ""
    pieces: list[tuple[int, ToolCallDelta]] = []
    for ch in raw:
        fed += ch
        pieces += [(len(fed), d) for d in parser.feed(ch)[1]]
    pieces += [(len(fed), d) for d in parser.finish()[1]]
    heads = [(at, d) for at, d in pieces if d.id is not None]
    assert heads
    for at, head in heads:
        assert fed[at - 1] == "{"  # sent the moment its arguments begin
        fragments = [(at, d.arguments) for at, d in pieces if d.index == head.index and d.arguments]
        assert len(fragments) > 3
        assert all(raw[at - len(text) : at] == text for at, text in fragments)


def test_a_call_cut_short_keeps_its_arguments_as_far_as_they_came() -> None:
    """Once a call's first piece is out it stays a call: cut short (max_tokens), its
    arguments end where the model stopped, in every split."""
    raw = 'Trying: <tool_call>{"name": "get_weather", "arguments": {"city": "Par'
    for cut in range(len(raw) + 1):
        content, calls = run(HERMES, [raw[:cut], raw[cut:]])
        assert content == "Trying: "
        assert [(c.name, c.arguments) for c in calls] == [("get_weather", '{"city": "Par')]


def test_json_that_breaks_off_after_the_call_began_ends_the_call() -> None:
    raw = (
        '<tool_call>{"name": "get_weather", "arguments": {"city": Paris}}</tool_call>Done.'
        '<tool_call>{"name": "add", "arguments": {}}</tool_call>'
    )
    for cut in range(len(raw) + 1):
        content, calls = run(HERMES, [raw[:cut], raw[cut:]], ToolStream(HERMES, [*NAMES, "add"]))
        assert content == "Done."
        assert [(c.name, c.arguments) for c in calls] == [
            ("get_weather", '{"city": '),
            ("add", "{}"),
        ]


def test_an_unknown_tool_after_a_sent_call_is_left_out() -> None:
    raw = (
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}, '
        '{"name": "launch_rockets", "arguments": {"n": 1}}, '
        '{"name": "get_weather", "arguments": {"city": "Oslo"}}]'
    )
    for cut in range(len(raw) + 1):
        content, calls = run(MISTRAL, [raw[:cut], raw[cut:]])
        assert content == ""
        assert as_plain(calls) == [
            ("get_weather", {"city": "Paris"}),
            ("get_weather", {"city": "Oslo"}),
        ]


def test_arguments_before_the_name_come_in_one_piece() -> None:
    parser = ToolStream(HERMES, NAMES)
    deltas = [d for ch in HERMES_TEXT_THEN_CALL for d in parser.feed(ch)[1]]
    assert [(d.id is not None, d.arguments) for d in deltas] == [
        (True, ""),
        (False, '{"city": "Paris"}'),
    ]


def test_content_is_never_markup_while_streaming() -> None:
    """No prefix of the stream releases any part of a marker as content."""
    raw = HERMES_TEXT_THEN_CALL
    parser = ToolStream(HERMES, NAMES)
    shown = ""
    for ch in raw:
        shown += parser.feed(ch)[0]
        assert "<" not in shown
    assert shown == "Let me check that for you.\n"


def test_parallel_false_keeps_the_first_call() -> None:
    parser = ToolStream(HERMES, NAMES, parallel=False)
    _, deltas = parser.feed(QWEN_TWO_CALLS)
    calls: list[ToolCall] = []
    for d in deltas + parser.finish()[1]:
        add_call_delta(calls, d)
    assert [c.name for c in calls] == ["get_current_temperature"]


def test_forced_named_call_streams_and_cut_short_output() -> None:
    raw = ' {"city": "Paris", "unit": "celsius"} '
    for cut in range(len(raw) + 1):
        content, calls = run(
            FORCED, [raw[:cut], raw[cut:]], ForcedCalls(NAMES, True, "get_weather")
        )
        assert content == ""
        assert [(c.name, c.arguments) for c in calls] == [("get_weather", raw.strip())]
    forced = ForcedCalls(NAMES, True, "get_weather")
    first = forced.feed('{"ci')[1]
    assert (first[0].name, first[0].arguments) == ("get_weather", "")
    assert "".join(d.arguments for d in first[1:]) == '{"ci'
    assert forced.feed('ty": "Par')[1] == [ToolCallDelta(0, arguments='ty": "Par')]
    assert forced.finish() == ("", [])  # cut short: the call ends where it was
    assert ForcedCalls(NAMES, True, "get_weather").finish() == ("", [])


def test_forced_required_calls_stream() -> None:
    raw = (
        '[{"name": "get_weather", "arguments": {"city": "Paris"}},'
        '{"name": "get_temperature_date", "arguments": {"location": "Oslo", "date": "x"}}]'
    )
    content, calls = run(FORCED, list(raw), ForcedCalls(NAMES, True, None))
    assert content == ""
    assert [(c.name, c.arguments) for c in calls] == [
        ("get_weather", '{"city": "Paris"}'),
        ("get_temperature_date", '{"location": "Oslo", "date": "x"}'),
    ]
    content, calls = run(FORCED, [raw], ForcedCalls(NAMES, False, None))
    assert [c.name for c in calls] == ["get_weather"]
    assert run(FORCED, ["not json"], ForcedCalls(NAMES, True, None)) == ("not json", [])


@pytest.mark.parametrize(
    ("source", "fmt"),
    [
        ("{% for t in tools %}<tool_call>{% endfor %}", HERMES),
        ("{{ '[TOOL_CALLS]' }}{{ tools }}", MISTRAL),
        ("<|start_header_id|>ipython<|end_header_id|>{{ '<|python_tag|>' }}{{ tools }}", LLAMA3),
        ("<|im_start|>{{ messages }}", GENERIC),
    ],
)
def test_format_is_chosen_from_the_template(source: str, fmt: ToolFormat) -> None:
    assert detect(source) is fmt


@pytest.mark.parametrize(
    ("source", "trigger", "before"),
    [
        ("<tool_call>{{ tools }}", "<tool_call>", "<tool_call>"),
        ("[TOOL_CALLS]{{ tools }}", r"\[TOOL_CALLS\]", "[TOOL_CALLS]"),
        ("[TOOL_CALLS]{{ tools }}[ARGS]", r"\[TOOL_CALLS\]", "[TOOL_CALLS]"),
        ("<|python_tag|>{{ tools }}", r"^\s*(\{[\s\S]*)$", ""),
        ("{{ messages }}", r"^\s*(\{[\s\S]*)$", ""),
    ],
)
def test_auto_mode_gets_a_lazy_grammar_that_compiles(
    source: str, trigger: str, before: str, vocab: Any
) -> None:
    """The grammar engages on the format's own trigger and llama.cpp's parser accepts it."""
    llama_grammar = pytest.importorskip("llama_cpp.llama_grammar")
    from llmserver.backends.llamacpp_sampling import (
        alternatives_gbnf,
        build_grammar,
        free_sampler,
        lazy_gbnf,
    )
    from llmserver.core.requests import ChatRequest, Message, Tool
    from llmserver.core.templating import ChatTemplate
    from llmserver.core.tools.plan import ToolPlan

    params = {"type": "object", "properties": {"city": {"type": "string"}}}
    add = {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9}}}
    tools = (Tool("get_weather", None, params), Tool("add", None, add))
    req = ChatRequest(None, (Message("user", "hi"),), tools=tools)
    constraint = ToolPlan.of(req).constraint(ChatTemplate(source))
    assert constraint is not None
    assert constraint.triggers == (trigger,)
    assert constraint.before == before
    if constraint.alternatives:  # Mistral v11: the name is text before the JSON
        assert [lit for lit, _ in constraint.alternatives] == ["get_weather[ARGS]", "add[ARGS]"]
        json_gbnf = alternatives_gbnf(constraint)
        assert '"get_weather[ARGS]" alt0' in json_gbnf
        assert '"add[ARGS]" alt1' in json_gbnf
    else:
        schema = json.dumps(constraint.schema)
        json_gbnf = llama_grammar.LlamaGrammar.from_json_schema(schema)._grammar
    llama_grammar.LlamaGrammar.from_string(lazy_gbnf(json_gbnf, constraint))
    # llama.cpp's own parser, with the default model's vocabulary: a sampler, not an error
    sampler = build_grammar(vocab, constraint)
    assert sampler
    free_sampler(sampler)


@pytest.fixture(scope="module")
def vocab() -> Iterator[Any]:
    llama_cpp = pytest.importorskip("llama_cpp")
    from llmserver.config.settings import default_model_path

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(default_model_path()).encode(), params)
    assert model
    yield llama_cpp.llama_model_get_vocab(model)
    llama_cpp.llama_model_free(model)


def test_a_grammar_llama_cpp_cannot_parse_is_refused(vocab: Any) -> None:
    """The check above can fail: llama.cpp's parser gives no sampler for a broken grammar."""
    from llmserver.backends.base import JsonConstraint
    from llmserver.backends.llamacpp_sampling import lazy_sampler

    assert not lazy_sampler(vocab, "root ::= undefined-rule", JsonConstraint(None, triggers=("x",)))


@settings(max_examples=40, deadline=None)
@given(case=st.sampled_from(CASES), cuts=st.lists(st.integers(0, 400), max_size=6))
def test_any_split_equals_the_whole(
    case: tuple[ToolFormat, str, list[tuple[str, object]], str], cuts: list[int]
) -> None:
    fmt, raw, _, _ = case
    points = sorted({min(c, len(raw)) for c in cuts})
    pieces = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    content, calls = run(fmt, pieces)
    whole_content, whole_calls = run(fmt, [raw])
    assert content == whole_content
    assert [(c.name, c.arguments) for c in calls] == [(c.name, c.arguments) for c in whole_calls]
