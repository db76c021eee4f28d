"""Request bodies for the benchmark: synthetic or given prompts, each made unique.

The synthetic prompt repeats common English words, most of which are one token in the usual
BPE vocabularies, so ``--input-tokens`` is approximate; the server's ``usage.prompt_tokens``,
when reported, is the real figure and is shown in the results. Every request starts with its
own tag so that a prefix cache cannot serve one request from another's work.

Two workloads are made for prefix caches. ``shared_prefix`` puts the same instruction of about
that many tokens before every request's tag and prompt (one long instruction, a different
article each time). ``turns`` makes conversations: request ``i`` is turn ``i // conversations
% turns`` of conversation ``i % conversations`` and repeats that conversation's earlier turns
(user prompts and fixed assistant replies of about ``output_tokens`` words) before a new user
prompt, so a server that keeps the conversation's cache evaluates only the newest part.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

Endpoint = Literal["chat", "completions"]
Prompt = str | list[dict[str, Any]]

ENDPOINT_PATHS: dict[str, str] = {"chat": "/chat/completions", "completions": "/completions"}
#: Ollama's paths, relative to the server's root URL (a completion is a raw generate)
OLLAMA_PATHS: dict[str, str] = {"chat": "/api/chat", "completions": "/api/generate"}

# Tokens the tag "[0123456789ab] " and a chat template add, roughly; subtracted from the body.
_OVERHEAD_TOKENS = 8

_WORDS_TEXT = (
    "the of and to in is you that it he was for on are as with his they at be this have from "
    "or one had by word but not what all were we when your can said there use an each which "
    "she do how their if will up other about out many then them these so some her would make "
    "like him into time has look two more write go see number no way could people my than "
    "first water been call who its now find long down day did get come made may part"
)


@dataclass(frozen=True, slots=True)
class Workload:
    """What every request of a run asks for."""

    endpoint: Endpoint = "chat"
    stream: bool = True
    input_tokens: int = 128
    output_tokens: int = 128  # 0: the server decides, and the count is not checked
    seed: int = 0
    prompts: tuple[Prompt, ...] = ()
    extra_body: dict[str, Any] = field(default_factory=dict)
    shared_prefix: int = 0  # tokens (about) of an instruction shared by every request; 0: none
    turns: int = 0  # turns per conversation; 0: every request is a new one-turn chat
    conversations: int = 1  # conversations running side by side (with turns)
    unique: bool = True  # False: no tag, so that every request is the same (a response cache)

    @property
    def path(self) -> str:
        """The endpoint path relative to the base URL."""
        return ENDPOINT_PATHS[self.endpoint]

    def path_for(self, api: str) -> str:
        """The endpoint path for a target speaking ``api`` ("openai" or "ollama")."""
        return OLLAMA_PATHS[self.endpoint] if api == "ollama" else self.path


def synthetic_prompt(input_tokens: int, seed: int) -> str:
    """A prompt of about ``input_tokens`` tokens, once the request tag is added."""
    rng = random.Random(seed)
    words = _WORDS_TEXT.split()
    count = max(1, input_tokens - _OVERHEAD_TOKENS)
    return " ".join(rng.choice(words) for _ in range(count))


def request_tag(seed: int, batch: str, index: int) -> str:
    """A short tag, deterministic in (seed, batch, index) and unique in practice."""
    digest = hashlib.blake2b(f"{seed}:{batch}:{index}".encode(), digest_size=6)
    return digest.hexdigest()


def shared_instruction(tokens: int, seed: int) -> str:
    """The instruction every request of a ``shared_prefix`` workload starts with."""
    rng = random.Random(f"shared:{seed}")
    words = _WORDS_TEXT.split()
    return "Instruction: " + " ".join(rng.choice(words) for _ in range(max(1, tokens - 4)))


def _tagged(prompt: Prompt, tag: str, head: str = "") -> Prompt:
    if isinstance(prompt, str):
        return f"{head}[{tag}] {prompt}"
    # the last message gets the tag: a system prompt the prompts share stays a shared prefix,
    # as it is in real traffic (the NAS workload's instruction)
    messages = [dict(m) for m in prompt]
    for message in reversed(messages):
        if isinstance(message.get("content"), str):
            message["content"] = f"{head}[{tag}] {message['content']}"
            break
    return messages


def _as_text(prompt: Prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(str(m.get("content", "")) for m in prompt)


class PayloadFactory:
    """Builds the encoded JSON body of request ``index`` of a batch."""

    def __init__(self, workload: Workload, model: str, api: str = "openai") -> None:
        self._workload = workload
        self._prompts: tuple[Prompt, ...] = workload.prompts or (
            synthetic_prompt(workload.input_tokens, workload.seed),
        )
        self._ollama = api == "ollama"
        base = self._ollama_body if self._ollama else self._base_body
        self._base = base(workload, model)
        self._head = (
            shared_instruction(workload.shared_prefix, workload.seed) + "\n\n"
            if workload.shared_prefix > 0
            else ""
        )
        # the assistant's part of earlier turns: fixed, about as long as a real reply
        self._reply = synthetic_prompt(max(workload.output_tokens, 16) + 8, workload.seed + 1)

    @staticmethod
    def _ollama_body(workload: Workload, model: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "stream": workload.stream}
        if workload.output_tokens > 0:
            # ignore_eos is an llmserver extension; Ollama logs it as unknown and ignores it
            body["options"] = {"num_predict": workload.output_tokens, "ignore_eos": True}
        if workload.endpoint == "completions":
            body["raw"] = True
        body.update(workload.extra_body)
        return body

    def turn(self, index: int) -> int:
        """The turn (from 0) that request ``index`` is of its conversation; 0 without turns."""
        work = self._workload
        return index // max(work.conversations, 1) % work.turns if work.turns > 0 else 0

    def _messages(self, batch: str, index: int) -> list[dict[str, Any]]:
        """Request ``index`` of a multi-turn workload: its conversation's turns up to its own."""
        work = self._workload
        conversation = index % max(work.conversations, 1)
        number = index // max(work.conversations, 1) // work.turns  # conversations restart
        tag = request_tag(work.seed, f"{batch}:conv{number}", conversation)
        messages: list[dict[str, Any]] = []
        for turn in range(self.turn(index) + 1):
            prompt = self._prompts[(conversation + turn) % len(self._prompts)]
            user = _tagged(prompt, f"{tag}.{turn}", self._head if turn == 0 else "")
            if isinstance(user, str):
                messages.append({"role": "user", "content": user})
            else:
                messages.extend(user)
            if turn < self.turn(index):
                messages.append({"role": "assistant", "content": self._reply})
        return messages

    @staticmethod
    def _base_body(workload: Workload, model: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "stream": workload.stream}
        if workload.output_tokens > 0:
            # min_tokens and ignore_eos are vLLM/llmserver extensions; other servers ignore them.
            body["max_tokens"] = workload.output_tokens
            body["min_tokens"] = workload.output_tokens
            body["ignore_eos"] = True
        if workload.stream:
            body["stream_options"] = {"include_usage": True}
        body.update(workload.extra_body)
        return body

    def build(self, batch: str, index: int) -> bytes:
        """The body of request ``index`` in ``batch``, with a unique tag in front of the prompt."""
        body = dict(self._base)
        if self._workload.turns > 0:
            body["messages"] = self._messages(batch, index)
            return orjson.dumps(body)
        prompt = self._prompts[index % len(self._prompts)]
        if self._workload.unique:
            tagged = _tagged(prompt, request_tag(self._workload.seed, batch, index), self._head)
        else:
            tagged = _tagged(prompt, "same", self._head)
        if self._workload.endpoint == "chat":
            if isinstance(tagged, str):
                tagged = [{"role": "user", "content": tagged}]
            body["messages"] = tagged
        else:
            body["prompt"] = _as_text(tagged)
        return orjson.dumps(body)


def _parse_json_prompt(item: Any, where: str) -> Prompt:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        messages = item.get("messages")
        if isinstance(messages, list) and all(isinstance(m, dict) for m in messages):
            return messages
        for key in ("prompt", "text"):
            if isinstance(item.get(key), str):
                return str(item[key])
    raise ValueError(f"{where}: expected a string or an object with messages, prompt or text")


def load_prompts(path: Path) -> tuple[Prompt, ...]:
    """Read prompts, one per line: plain text, or JSON Lines (a string or an object per line).

    A file is JSON Lines when it is named ``*.jsonl``/``*.ndjson`` or its first line is a JSON
    object. Raises ValueError when the file holds no prompt or a JSON line is malformed.
    """
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path}: no prompts")
    jsonl = path.suffix in (".jsonl", ".ndjson")
    if not jsonl and lines[0].lstrip().startswith("{"):
        try:
            jsonl = isinstance(orjson.loads(lines[0]), dict)
        except orjson.JSONDecodeError:
            jsonl = False
    if not jsonl:
        return tuple(lines)
    prompts: list[Prompt] = []
    for number, line in enumerate(lines, 1):
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: {exc}") from exc
        prompts.append(_parse_json_prompt(item, f"{path}:{number}"))
    return tuple(prompts)
