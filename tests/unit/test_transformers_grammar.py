"""The transformers backend's JSON constraint (llguidance behind a logits processor), driven by
random logits over a small byte-level BPE tokenizer trained here: whatever the scores say, what
comes out parses and validates, and only EOS may follow it."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from llmserver.backends.base import JsonConstraint
from llmserver.core.requests import ChatRequest, Message, Tool, ToolChoice
from llmserver.core.templating import ChatTemplate
from llmserver.core.tools.plan import ToolPlan
from llmserver.errors import InvalidRequestError

torch = pytest.importorskip("torch")
tokenizers = pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")
pytest.importorskip("llguidance")

from llmserver.backends.transformers_grammar import (  # noqa: E402  (after the skips)
    GrammarProcessor,
    GrammarUnavailableError,
    SchemaGrammars,
)

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 12},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit"],
}
ADD = {
    "type": "object",
    "properties": {"a": {"type": "integer", "maximum": 999}, "b": {"type": "number", "minimum": 0}},
    "required": ["a", "b"],
    "additionalProperties": False,
}
TOOLS = (Tool("get_weather", None, WEATHER), Tool("add", None, ADD))
CORPUS = [
    '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius", "days": 3}}',
    '[{"name": "add", "arguments": {"a": 12, "b": 3.5}}, {"name": "add", "arguments": {}}]',
    "The weather in Paris is mild; add 2 and 3 to get 5. \\n \\u00e9 true false null",
] * 20
SEEDS = range(12)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    """A byte-level BPE (every byte is a token) with a few hundred merges, and an EOS token."""
    backend = tokenizers.Tokenizer(tokenizers.models.BPE())
    backend.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["</s>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(CORPUS, trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>")


@pytest.fixture(scope="module")
def grammars(tokenizer: Any) -> SchemaGrammars:
    return SchemaGrammars(tokenizer, {tokenizer.eos_token_id}, len(tokenizer))


def tool_constraint(choice: ToolChoice, parallel: bool = True) -> JsonConstraint:
    """The constraint the core builds for this tool choice (the llama.cpp path gets the same)."""
    hi = (Message("user", "hi"),)
    req = ChatRequest(None, hi, tools=TOOLS, tool_choice=choice, parallel_tool_calls=parallel)
    constraint = ToolPlan.of(req).constraint(ChatTemplate(None))
    assert constraint is not None
    assert not constraint.triggers
    return constraint


def walk(
    grammars: SchemaGrammars,
    tokenizer: Any,
    constraint: JsonConstraint,
    seed: int,
    extra_columns: int = 0,
) -> str:
    """Sample from random scores through the processor until EOS; the text before it."""
    processor = GrammarProcessor(grammars.matcher(constraint))
    generator = torch.Generator().manual_seed(seed)
    width = len(tokenizer) + extra_columns
    ids = torch.tensor([[tokenizer.eos_token_id]])  # a one-token "prompt"
    out: list[int] = []
    for _ in range(600):
        scores = processor(ids, torch.randn(1, width, generator=generator) * 4)
        assert torch.isinf(scores[0, len(tokenizer) :]).all()  # columns beyond the vocabulary
        token = int(torch.multinomial(scores.softmax(-1), 1, generator=generator))
        if token == tokenizer.eos_token_id:
            return str(tokenizer.decode(out))
        out.append(token)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    raise AssertionError(f"no EOS after 600 tokens: {tokenizer.decode(out)!r}")


@pytest.mark.parametrize("seed", SEEDS)
def test_named_call_arguments_validate(grammars: SchemaGrammars, tokenizer: Any, seed: int) -> None:
    constraint = tool_constraint(ToolChoice("function", "get_weather"))
    assert constraint.schema == WEATHER
    text = walk(grammars, tokenizer, constraint, seed)
    jsonschema.validate(json.loads(text), WEATHER)


@pytest.mark.parametrize("seed", SEEDS)
def test_required_calls_validate(grammars: SchemaGrammars, tokenizer: Any, seed: int) -> None:
    constraint = tool_constraint(ToolChoice("required"))
    text = walk(grammars, tokenizer, constraint, seed, extra_columns=7)
    calls = json.loads(text)
    assert isinstance(calls, list)
    assert 1 <= len(calls) <= 8
    for call in calls:
        jsonschema.validate(call["arguments"], {"get_weather": WEATHER, "add": ADD}[call["name"]])


@pytest.mark.parametrize("seed", SEEDS[:4])
def test_one_call_without_parallel_calls(
    grammars: SchemaGrammars, tokenizer: Any, seed: int
) -> None:
    constraint = tool_constraint(ToolChoice("required"), parallel=False)
    call = json.loads(walk(grammars, tokenizer, constraint, seed))
    assert isinstance(call, dict)
    assert call["name"] in ("get_weather", "add")
    jsonschema.validate(call, constraint.schema)


def test_json_object_without_schema_must_open_an_object(
    grammars: SchemaGrammars, tokenizer: Any
) -> None:
    processor = GrammarProcessor(grammars.matcher(JsonConstraint(None, location=("constraint",))))
    scores = processor(torch.tensor([[tokenizer.eos_token_id]]), torch.zeros(1, len(tokenizer)))
    allowed = torch.isfinite(scores[0]).nonzero().flatten().tolist()
    assert allowed
    assert all(tokenizer.decode([t]).startswith("{") for t in allowed)


def test_json_is_spelled_as_json_dumps_spells_it(grammars: SchemaGrammars, tokenizer: Any) -> None:
    constraint = tool_constraint(ToolChoice("function", "add"))  # numbers only, no strings
    for seed in SEEDS[:4]:
        text = walk(grammars, tokenizer, constraint, seed)
        assert text.startswith('{"a": ')
        assert not any(c.isspace() for c in text.replace(", ", "").replace(": ", ""))


def test_only_eos_follows_complete_json(grammars: SchemaGrammars, tokenizer: Any) -> None:
    constraint = JsonConstraint({"type": "object", "properties": {}, "additionalProperties": False})
    processor = GrammarProcessor(grammars.matcher(constraint))
    prompt = torch.tensor([[tokenizer.eos_token_id]])
    scores = processor(prompt, torch.zeros(1, len(tokenizer)))
    assert torch.isfinite(scores).sum() >= 1  # "{" (possibly "{}" as one token)
    ids = prompt
    for token in tokenizer("{}", add_special_tokens=False)["input_ids"]:
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
        scores = processor(ids, torch.zeros(1, len(tokenizer)))
    allowed = torch.isfinite(scores[0]).nonzero().flatten().tolist()
    assert allowed == [tokenizer.eos_token_id]


def test_a_schema_it_cannot_compile_is_a_400_naming_the_field(grammars: SchemaGrammars) -> None:
    bad = JsonConstraint(
        {"type": "object", "properties": {"x": {"$ref": "#/$defs/missing"}}},
        location=("tools", 1, "parameters"),
    )
    with pytest.raises(InvalidRequestError) as info:
        grammars.matcher(bad)
    assert info.value.location == ("tools", 1, "parameters")
    assert "unsupported JSON schema" in str(info.value)


def test_unknown_format_is_not_enforced_but_still_parses(
    grammars: SchemaGrammars, tokenizer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    schema = {
        "type": "object",
        "properties": {"x": {"type": "string", "format": "colour", "maxLength": 5}},
        "required": ["x"],
    }
    text = walk(grammars, tokenizer, JsonConstraint(schema), 1)
    jsonschema.validate(json.loads(text), schema)
    assert "not enforced" in caplog.text


def test_a_slow_tokenizer_is_refused_clearly() -> None:
    class Slow(transformers.PreTrainedTokenizer):  # type: ignore[misc, name-defined]
        """A Python tokenizer (llguidance reads only fast ones); nothing of it is ever used."""

        def __init__(self) -> None:
            pass

        def __len__(self) -> int:
            return 10

    with pytest.raises(GrammarUnavailableError):
        SchemaGrammars(Slow(), {0}, 10)
