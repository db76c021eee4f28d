"""The real default model (SmolLM2 through llama.cpp) says what it can do, through the
official ``openai`` and ``ollama`` packages."""

from __future__ import annotations

import ollama
import openai
import pytest

from llmserver.config.settings import DEFAULT_MODEL_ID
from support import RunningServer

pytestmark = pytest.mark.integration


def test_default_model_shows_capabilities_and_context_on_both_surfaces(
    default_server: RunningServer,
) -> None:
    client = openai.OpenAI(base_url=default_server.base_url, api_key="unused", max_retries=0)
    card = client.models.retrieve(DEFAULT_MODEL_ID).model_dump()
    # no FIM tokens and no thinking template in SmolLM2's GGUF
    assert card["capabilities"] == ["completion", "chat", "tools"]
    assert card["context_length"] == card["max_model_len"]
    assert card["context_length"] >= 2048
    listed = {m.id: m.model_dump() for m in client.models.list()}
    assert listed[DEFAULT_MODEL_ID]["capabilities"] == card["capabilities"]
    shown = ollama.Client(host=default_server.url).show(DEFAULT_MODEL_ID)
    assert shown.capabilities == ["completion", "tools"]
