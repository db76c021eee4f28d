"""A deterministic fake backend for fast tests, registered like any plugin.

Tokens are whitespace-delimited words. The reply is either the configured ``reply`` or words
picked by a generator seeded from the prompt and the request seed, so the same request always
gives the same text.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import zlib
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import ClassVar

from llmserver.backends.base import (
    Delta,
    EmbeddingInput,
    EmbeddingResult,
    EmbeddingSpec,
    GenerationRequest,
    ModelLoadError,
    PromptFormat,
    StopMatcher,
)
from llmserver.config.model_configs import FakeConfig, ModelConfig

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "llamas",
    "serve",
    "tokens",
    "from",
    "small",
    "local",
    "models",
    "on",
    "quiet",
    "machines",
    "every",
    "morning",
]
REPLY_WORDS = 12
#: how many received texts a fake model remembers, for tests to look at
SEEN = 64
_TOKEN = re.compile(r"\s*\S+|\s+")


def split_tokens(text: str) -> list[str]:
    """The fake tokenizer: each word with its leading whitespace is one token."""
    return _TOKEN.findall(text)


class FakeBackend:
    """Deterministic text, exact token counts, optional per-token delay."""

    config_type: ClassVar[type[ModelConfig]] = FakeConfig
    max_parallel: ClassVar[int] = 4

    def __init__(self, config: FakeConfig) -> None:
        self.config = config
        self.started = False
        #: the texts this model was given, newest last: prompts, message contents and
        #: embedding inputs (so tests can check what reached a model, masked or not)
        self.seen: deque[str] = deque(maxlen=SEEN)
        #: the generation requests this model was given, newest last (warm-ups included, with
        #: ``request_id`` "warmup"), so tests can check the sampling values that reached it
        self.received: deque[GenerationRequest] = deque(maxlen=SEEN)
        #: token id -> text, for every token this model has made
        self._pieces: dict[int, str] = {}

    async def start(self) -> None:
        """Nothing to load; wait ``load_delay_s`` to act like a real model."""
        await asyncio.sleep(self.config.load_delay_s)
        if self.config.fail_load is not None:
            raise ModelLoadError(self.config.fail_load)
        self.started = True

    def prompt_format(self) -> PromptFormat:
        """ChatML, like many small instruct models."""
        return PromptFormat(chat_template=CHATML, context_length=self.config.context_size)

    def tokenize(self, text: str) -> list[int]:
        """Stable ids for the fake tokens."""
        return self.tokenize_text(text, add_special=True)

    def tokenize_text(self, text: str, add_special: bool) -> list[int]:
        """Stable ids for the fake tokens (the fake has no BOS); each remembered, so that
        :meth:`detokenize` can give it back."""
        out = []
        for tok in split_tokens(text):
            token = zlib.crc32(tok.encode()) & 0xFFFF
            self._pieces[token] = tok
            out.append(token)
        return out

    def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of tokens this fake has made (an unknown id reads as ``<unk>``)."""
        return "".join(self.token_piece(t) for t in tokens)

    def token_piece(self, token: int) -> str:
        """One token's text."""
        return self._pieces.get(token, "<unk>")

    def _reply(self, request: GenerationRequest) -> list[str]:
        if request.constraint is not None and not request.constraint.triggers:
            return split_tokens(json.dumps({"answer": "fake", "words": WORDS[:3]}))
        if self.config.reply is not None:
            return split_tokens(self.config.reply)
        seed = request.params.seed if request.params.seed is not None else 0
        rng = random.Random(zlib.crc32(request.prompt.encode()) ^ seed)
        count = 10**9 if request.params.ignore_eos else REPLY_WORDS
        return [" " + rng.choice(WORDS) for _ in range(min(count, request.params.max_tokens))]

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """Stream the reply a token at a time."""
        self.seen.append(request.prompt)
        self.received.append(request)
        self.seen.extend(m.get("content", "") for m in request.messages or ())
        stops = StopMatcher(request.params.stop)
        tokens = self._reply(request)
        limit = request.params.max_tokens
        for index, token in enumerate(tokens[:limit], start=1):
            if self.config.token_delay_s:
                await asyncio.sleep(self.config.token_delay_s)
            text, stopped = stops.feed(token)
            if stopped:
                yield Delta(text, 1, "stop", stop_sequence=stops.matched)
                return
            if index == limit:
                yield Delta(text + stops.flush(), 1, "length")
                return
            yield Delta(text, 1)
        yield Delta(stops.flush(), 0, "stop")

    def embedding_spec(self) -> EmbeddingSpec | None:
        """Embeddings only when ``embedding_dimensions`` is set."""
        dims = self.config.embedding_dimensions
        if not dims:
            return None
        return EmbeddingSpec(dims, self.config.context_size, token_input=True, matryoshka=True)

    async def embed(self, inputs: Sequence[EmbeddingInput]) -> EmbeddingResult:
        """Unit vectors seeded from each input; a text and its fake token ids agree."""
        vectors, counts = [], []
        self.seen.extend(item for item in inputs if isinstance(item, str))
        for item in inputs:
            ids = self.tokenize(item) if isinstance(item, str) else list(item)
            rng = random.Random(zlib.crc32(str(ids).encode()))
            raw = [rng.uniform(-1, 1) for _ in range(self.config.embedding_dimensions)]
            norm = math.sqrt(sum(v * v for v in raw))
            vectors.append([v / norm for v in raw])
            counts.append(len(ids))
        return EmbeddingResult(vectors, counts)

    async def health(self) -> bool:
        """Healthy once started."""
        return self.started

    async def close(self) -> None:
        """Nothing to free."""
        self.started = False
