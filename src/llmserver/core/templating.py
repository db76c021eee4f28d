"""Chat templates rendered the way Hugging Face's ``apply_chat_template`` renders them.

The environment matches transformers' chat-template environment (loop controls, the
``{% generation %}`` tag, ``tojson`` without ASCII or HTML escaping, ``dict``, ``namespace``,
``raise_exception``, ``strftime_now``), inside Jinja2's immutable sandbox. Templates come only
from model files or the operator's config, never from a request; a request can pass values in
(``tools``, ``documents``, ``chat_template_kwargs``) but never template text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser
from jinja2.runtime import Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

from llmserver.errors import InvalidRequestError

#: used when a model file carries no chat template
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

#: names the server sets itself; ``chat_template_kwargs`` may not replace them
RESERVED = frozenset(
    {"messages", "tools", "documents", "add_generation_prompt", "bos_token", "eos_token"}
)


class TemplateLoadError(Exception):
    """The template does not compile or does something the sandbox forbids."""


class UnsafeTemplateError(Exception):
    """Rendering touched something the sandbox forbids (a hostile template)."""


class GenerationTag(Extension):
    """``{% generation %}...{% endgeneration %}``: marks assistant text for training masks.

    Serving needs no mask, so the block renders its body unchanged (as transformers does when
    it is not asked for the assistant mask).
    """

    tags = {"generation"}  # noqa: RUF012 (Jinja declares it so)

    def parse(self, parser: Parser) -> nodes.Node:
        """Parse the block up to ``endgeneration``."""
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        call = self.call_method("_body")
        return nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _body(self, caller: Macro) -> str:
        return str(caller())


class _SafeNamespace(Namespace):
    """``namespace()`` that refuses underscore names, so no dunder can be stored on it."""

    def __init__(*args: Any, **kwargs: Any) -> None:
        self, rest = args[0], args[1:]
        attrs = dict(*rest, **kwargs)
        for name in attrs:
            _SafeNamespace._check(name)
        Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _SafeNamespace._check(name)
        Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: object) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise SecurityError(f"a namespace may not hold the attribute {name!r}")


def _make_dict(*args: Any, **kwargs: Any) -> dict[Any, Any]:
    return dict(*args, **kwargs)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _raise_exception(message: str) -> NoReturn:
    raise InvalidRequestError(f"chat template rejected the conversation: {message}")


def _strftime_now(fmt: str) -> str:
    return datetime.now(UTC).strftime(fmt)


def environment() -> ImmutableSandboxedEnvironment:
    """A sandboxed environment with transformers' chat-template extensions and helpers."""
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _make_dict
    env.globals["namespace"] = _SafeNamespace
    return env


class ChatTemplate:
    """A compiled chat template plus the special tokens it refers to.

    ``fallback`` is True when the model carried no template and ChatML is used instead.
    """

    def __init__(self, source: str | None, bos_token: str = "", eos_token: str = "") -> None:
        self.source = source or CHATML_TEMPLATE
        self.fallback = not source
        try:
            self._template = environment().from_string(self.source)
        except TemplateError as exc:
            raise TemplateLoadError(f"chat template does not compile: {exc}") from exc
        self.bos_token = bos_token
        self.eos_token = eos_token

    @property
    def takes_tools(self) -> bool:
        """Whether the template reads the ``tools`` variable (it renders tool definitions)."""
        return "tools" in self.source

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool = True,
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> str:
        """The prompt text for ``messages``; a template error becomes a 400.

        ``kwargs`` are extra template variables (a request's ``chat_template_kwargs``, such
        as ``enable_thinking``); they cannot replace the variables the server sets.
        """
        extra = dict(kwargs or {})
        if clash := sorted(RESERVED & extra.keys()):
            raise InvalidRequestError(
                f"chat_template_kwargs may not set {', '.join(clash)}",
                param="chat_template_kwargs",
            )
        try:
            return self._template.render(
                **extra,
                messages=[dict(m) for m in messages],
                tools=[dict(t) for t in tools] if tools else None,
                documents=[dict(d) for d in documents] if documents else None,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except SecurityError as exc:
            raise UnsafeTemplateError(f"chat template is unsafe: {exc}") from exc
        except TemplateError as exc:
            raise InvalidRequestError(
                f"chat template failed to render: {exc}", param="messages"
            ) from exc
