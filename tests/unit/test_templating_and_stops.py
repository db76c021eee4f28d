"""Chat templates in the sandbox, and stop strings across token boundaries."""

from __future__ import annotations

import pytest

from llmserver.backends.base import StopMatcher
from llmserver.core.templating import (
    ChatTemplate,
    TemplateLoadError,
    UnsafeTemplateError,
)
from llmserver.errors import InvalidRequestError

MESSAGES = [{"role": "user", "content": "hi"}]


def test_default_chatml_when_model_has_none() -> None:
    text = ChatTemplate(None).render(MESSAGES)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_bos_and_generation_prompt() -> None:
    template = ChatTemplate(
        "{{ bos_token }}{% for m in messages %}[{{ m['content'] }}]{% endfor %}"
        "{% if add_generation_prompt %}>{% endif %}",
        bos_token="<s>",
    )
    assert template.render(MESSAGES) == "<s>[hi]>"
    assert template.render(MESSAGES, add_generation_prompt=False) == "<s>[hi]"


def test_raise_exception_is_a_400() -> None:
    template = ChatTemplate("{{ raise_exception('roles must alternate') }}")
    with pytest.raises(InvalidRequestError, match="roles must alternate"):
        template.render(MESSAGES)


def test_hostile_template_cannot_reach_python_internals() -> None:
    hostile = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(UnsafeTemplateError):
        ChatTemplate(hostile).render(MESSAGES)


def test_immutable_sandbox_blocks_mutation() -> None:
    template = ChatTemplate("{% set x = messages.append({'role': 'system'}) %}{{ messages }}")
    with pytest.raises(UnsafeTemplateError):
        template.render(MESSAGES)


def test_broken_template_fails_at_load() -> None:
    with pytest.raises(TemplateLoadError):
        ChatTemplate("{% for %}")


def feed_all(stops: list[str], pieces: list[str]) -> tuple[str, bool]:
    matcher = StopMatcher(stops)
    out = ""
    for piece in pieces:
        text, stopped = matcher.feed(piece)
        out += text
        if stopped:
            return out, True
    return out + matcher.flush(), False


def test_stop_split_across_pieces() -> None:
    assert feed_all(["END"], ["hello E", "N", "D more"]) == ("hello ", True)


def test_partial_stop_prefix_is_released() -> None:
    assert feed_all(["END"], ["hello E", "NOUGH"]) == ("hello ENOUGH", False)


def test_earliest_of_several_stops_wins() -> None:
    assert feed_all(["b", "a"], ["xxab"]) == ("xx", True)


def test_no_stops_passes_through() -> None:
    matcher = StopMatcher([])
    assert matcher.feed("abc") == ("abc", False)


def test_the_matcher_names_the_stop_it_reached() -> None:
    matcher = StopMatcher(["zz", "b", "ab", "a"])
    assert matcher.matched is None
    assert matcher.feed("xx") == ("xx", False)
    assert matcher.feed("abc") == ("", True)
    # "a" and "ab" both start first; "a" was complete first
    assert matcher.matched == "a"
    split = StopMatcher(["END"])
    split.feed("hello E")
    assert split.matched is None
    split.feed("ND")
    assert split.matched == "END"
