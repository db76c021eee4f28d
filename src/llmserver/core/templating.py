"""Chat templates from the model's own metadata, rendered in Jinja2's immutable sandbox.

Templates come only from model files or the operator's config, never from a request.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NoReturn

from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmserver.errors import InvalidRequestError

#: used when a model file carries no chat template
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class TemplateLoadError(Exception):
    """The template does not compile or does something the sandbox forbids."""


class UnsafeTemplateError(Exception):
    """Rendering touched something the sandbox forbids (a hostile template)."""


def _raise_exception(message: str) -> NoReturn:
    raise InvalidRequestError(f"chat template rejected the conversation: {message}")


def _strftime_now(fmt: str) -> str:
    return datetime.now(UTC).strftime(fmt)


class ChatTemplate:
    """A compiled chat template plus the special tokens it refers to."""

    def __init__(self, source: str | None, bos_token: str = "", eos_token: str = "") -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        try:
            self._template = env.from_string(source or CHATML_TEMPLATE)
        except TemplateError as exc:
            raise TemplateLoadError(f"chat template does not compile: {exc}") from exc
        self.bos_token = bos_token
        self.eos_token = eos_token

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        """The prompt text for ``messages``; a template error becomes a 400."""
        try:
            return self._template.render(
                messages=messages,
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
