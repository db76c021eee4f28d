"""Chat templates render as transformers' own ``apply_chat_template`` renders them."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from llmserver.core.templating import ChatTemplate, UnsafeTemplateError
from llmserver.errors import InvalidRequestError

#: loop controls, tojson on non-ASCII text, tools, documents, a request kwarg, the generation tag
TEMPLATE = (
    "{{ bos_token }}"
    "{% if tools %}<tools>{% for t in tools %}{{ t | tojson }}\n{% endfor %}</tools>\n{% endif %}"
    "{% if documents %}{% for d in documents %}[doc {{ d.title }}: {{ d.text }}]\n"
    "{% endfor %}{% endif %}"
    "{% for m in messages %}"
    "{% if m.role == 'system' %}{% continue %}{% endif %}"
    "{% if m.content == 'STOP' %}{% break %}{% endif %}"
    "<{{ m.role }}>"
    "{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}"
    "{% else %}{{ m.content | tojson }}{% endif %}"
    "{% if m.tool_calls %}{% for c in m.tool_calls %}"
    "{{ {'name': c.function.name, 'arguments': c.function.arguments} | tojson(indent=2) }}"
    "{% endfor %}{% endif %}"
    "{% set ns = namespace(count=loop.index) %}#{{ ns.count }}\n"
    "{% endfor %}"
    "{% if enable_thinking is defined and not enable_thinking %}<no-think>{% endif %}"
    "{{ dict(a=1) | tojson(sort_keys=True) }}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)

MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "skipped by continue"},
    {"role": "user", "content": "서울 날씨 어때? <b>&'\""},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "weather", "arguments": {"city": "서울"}},
            }
        ],
    },
    {"role": "tool", "content": "맑음, 21°C", "tool_call_id": "call_1"},
    {"role": "user", "content": "STOP"},
    {"role": "user", "content": "never rendered"},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "날씨를 알려준다",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
DOCUMENTS = [{"title": "안내", "text": "한국어 문서"}]


def transformers_render(**kwargs: Any) -> str:
    """What transformers' ``apply_chat_template`` gives for TEMPLATE."""
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel({"<unk>": 0}, unk_token="<unk>"))
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>"
    )
    return str(tok.apply_chat_template(chat_template=TEMPLATE, tokenize=False, **kwargs))


@pytest.mark.parametrize("generation_prompt", [True, False])
def test_renders_like_transformers(generation_prompt: bool) -> None:
    expected = transformers_render(
        conversation=MESSAGES,
        tools=TOOLS,
        documents=DOCUMENTS,
        add_generation_prompt=generation_prompt,
        enable_thinking=False,
    )
    ours = ChatTemplate(TEMPLATE, bos_token="<s>", eos_token="</s>").render(
        MESSAGES,
        generation_prompt,
        tools=TOOLS,
        documents=DOCUMENTS,
        kwargs={"enable_thinking": False},
    )
    assert ours == expected
    # the features under test really were exercised
    assert '"서울 날씨 어때? <b>&\'\\""' in ours  # tojson: no ASCII or HTML escaping
    assert "skipped by continue" not in ours
    assert "never rendered" not in ours
    assert "<no-think>" in ours
    assert "한국어 문서" in ours
    assert '"name": "weather"' in ours


def test_without_tools_renders_like_transformers() -> None:
    messages = MESSAGES[1:2]
    expected = transformers_render(conversation=messages, add_generation_prompt=True)
    assert ChatTemplate(TEMPLATE, bos_token="<s>").render(messages) == expected


def test_kwargs_cannot_replace_server_variables() -> None:
    with pytest.raises(InvalidRequestError) as info:
        ChatTemplate(TEMPLATE).render(MESSAGES, kwargs={"messages": []})
    assert info.value.param == "chat_template_kwargs"


def test_namespace_refuses_dunder_attributes() -> None:
    template = ChatTemplate("{% set ns = namespace(__class__=1) %}{{ ns }}")
    with pytest.raises(UnsafeTemplateError):
        template.render(MESSAGES)


def test_fallback_is_flagged() -> None:
    assert ChatTemplate(None).fallback
    assert not ChatTemplate(TEMPLATE).fallback
    assert ChatTemplate(TEMPLATE).takes_tools
    assert not ChatTemplate(None).takes_tools


async def test_model_without_template_logs_a_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmserver.backends.base import PromptFormat
    from llmserver.backends.fake import FakeBackend
    from llmserver.core.manager import ModelManager
    from support import fake_model, fake_settings

    monkeypatch.setattr(FakeBackend, "prompt_format", lambda self: PromptFormat(None))
    settings = fake_settings(fake_model("plain"), fake_model("templated", chat_template=TEMPLATE))
    manager = ModelManager(settings)
    with caplog.at_level(logging.WARNING, logger="llmserver"):
        await manager.load_all()
    try:
        warned = [r.getMessage() for r in caplog.records if "no chat template" in r.getMessage()]
        assert len(warned) == 1
        assert "plain" in warned[0]
        template = manager.lookup("templated").template
        assert template is not None
        assert template.source == TEMPLATE
    finally:
        await manager.close_all()
