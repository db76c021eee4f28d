"""A non-streaming request's work is cancelled when its client leaves, and only then."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from fastapi import Request

from llmserver.http.respond import ClientDisconnected, until_disconnect


class FakeRequest:
    """Just ``receive``: the client stays until ``leave`` is set."""

    def __init__(self) -> None:
        self.leave = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.leave.wait()
        return {"type": "http.disconnect"}


async def test_returns_the_result_while_the_client_stays() -> None:
    async def work() -> str:
        await asyncio.sleep(0.01)
        return "done"

    request = FakeRequest()
    assert await until_disconnect(cast(Request, request), work()) == "done"
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_client_leaving_cancels_the_work() -> None:
    cancelled = asyncio.Event()
    request = FakeRequest()

    async def work() -> str:
        try:
            request.leave.set()
            await asyncio.sleep(5)  # bounded: a broken watcher fails the test, slowly
        finally:
            cancelled.set()
        return "never"

    with pytest.raises(ClientDisconnected):
        await until_disconnect(cast(Request, request), work())
    assert cancelled.is_set()
    # the task itself is not left cancelling: it goes on to answer 499
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_an_error_of_the_work_still_comes_through() -> None:
    async def work() -> str:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await until_disconnect(cast(Request, FakeRequest()), work())
