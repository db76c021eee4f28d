"""How the jobs layer runs one line without knowing any wire protocol.

A surface that offers batch endpoints registers one :class:`LineHandler` per endpoint path
(``/v1/chat/completions`` ...). The handler validates a line's body exactly as the synchronous
endpoint would, runs it through the core service with the batch creator's :class:`Caller`, and
returns the body that endpoint would have sent, so a batch answer and a synchronous answer are
built by the same functions. The dependency points from the surface down to this interface:
jobs never imports a surface.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from llmserver.core.caller import Caller
from llmserver.core.service import Service
from llmserver.core.usage import Usage
from llmserver.errors import APIError


@dataclass(frozen=True, slots=True)
class LineAnswer:
    """A successful line: the endpoint's response body, the model that served it, its usage."""

    body: dict[str, Any]
    model: str
    usage: Usage


class LineHandler(Protocol):
    """One batch endpoint."""

    def check(self, body: dict[str, Any]) -> str | None:
        """Validate ``body`` as the endpoint would (an :class:`InvalidRequestError` naming the
        ``param``); return the model name it asks for (None: the default model)."""

    async def run(self, service: Service, caller: Caller, body: dict[str, Any]) -> LineAnswer:
        """Serve one line through the service; errors are raised as :class:`APIError`."""

    def error_body(self, error: APIError) -> dict[str, Any]:
        """The body the endpoint would answer ``error`` with."""


#: handlers by endpoint path
LineHandlers = Mapping[str, LineHandler]
