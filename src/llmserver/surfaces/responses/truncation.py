"""``truncation: "auto"``: a conversation past the model's context loses its oldest items.

As OpenAI describes it: when the input exceeds the context window, items are dropped from the
beginning of the conversation until it fits (``instructions`` always stay, and so does the
newest item). A tool's output whose call was dropped goes with it, so the rest is still a
conversation the model's template can render. The prompt is counted by the model's own
tokenizer (the service's token count, which loads a model that loads on demand), so the
search for the fewest items to drop takes a few counts, not one per item. A model this server
cannot count for (an upstream one) is sent the conversation whole.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from llmserver.core.caller import Caller
from llmserver.core.service import Service
from llmserver.errors import InvalidRequestError
from llmserver.surfaces.responses.translate import Item, Translated, messages


def _answerable(items: Sequence[Item]) -> list[Item]:
    """``items`` without tool outputs whose call is not among them."""
    calls: set[str] = set()
    kept = []
    for item in items:
        if item.get("type") == "function_call":
            calls.add(item["call_id"])
        if item.get("type") == "function_call_output" and item["call_id"] not in calls:
            continue
        kept.append(item)
    return kept


async def fit(
    service: Service, who: Caller, instructions: str | None, translated: Translated
) -> Translated:
    """``translated`` with the oldest items of its conversation dropped until the prompt is
    shorter than the model's context (unchanged when it already is)."""
    chat = translated.chat
    conversation = translated.conversation

    async def count(dropped: int) -> int:
        kept = _answerable(conversation[dropped:])
        trimmed = dataclasses.replace(chat, messages=messages(instructions, kept))
        return await service.count_tokens(who, trimmed)

    try:
        whole = await count(0)
    except InvalidRequestError as err:
        if err.code == "token_counting_unsupported":
            return translated
        raise
    model = service.admin.model(who, service.admin.authorise(who, chat.model).id)
    limit = model.context_length
    if limit is None or whole < limit or len(conversation) < 2:
        return translated
    low, high = 1, len(conversation) - 1  # the fewest items to drop lies in [low, high]
    while low < high:
        middle = (low + high) // 2
        if await count(middle) < limit:
            high = middle
        else:
            low = middle + 1
    kept = _answerable(conversation[low:])
    chat = dataclasses.replace(chat, messages=messages(instructions, kept))
    return dataclasses.replace(translated, chat=chat)
