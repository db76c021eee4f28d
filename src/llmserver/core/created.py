"""Models created at run time (Ollama's ``/api/create`` and ``/api/copy``): what each is made
of, and the file in the data directory that keeps them across restarts.

A created model is a derived model (:mod:`llmserver.config.derived`): a base model plus a
system prompt, a template, parameters, preset turns and LoRA adapters. The store keeps the
entries as a config file would hold them, so a restart builds them the same way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmserver.config.model_configs import ModelConfig
from llmserver.errors import InvalidRequestError

logger = logging.getLogger("llmserver.models")

#: a blob's name: its sha256 (Ollama writes ``sha256:<hex>``)
DIGEST = re.compile(r"sha256[:-]([0-9a-f]{64})")

#: sampling settings a recipe may set (the names in a model's ``defaults``)
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "max_tokens")


@dataclass(frozen=True, slots=True)
class Recipe:
    """What a derived model is made of, whatever the surface that described it."""

    base: str
    system: str | None = None
    template: str | None = None
    #: sampling defaults (:data:`SAMPLING_KEYS`)
    defaults: dict[str, Any] = field(default_factory=dict)
    stop: tuple[str, ...] = ()
    context_size: int | None = None
    #: (role, content) turns put before every chat's own
    messages: tuple[tuple[str, str], ...] = ()
    #: (adapter file, scale)
    adapters: tuple[tuple[str, float], ...] = ()

    def entry(self, model_id: str) -> dict[str, Any]:
        """The ``models`` entry (with ``from``) that defines the model ``model_id``."""
        entry: dict[str, Any] = {"id": model_id, "from": self.base, "preload": False}
        entry["load_on_demand"] = True
        if self.system is not None:
            entry["system"] = self.system
        if self.template is not None:
            entry["template"] = self.template
        if self.defaults:
            entry["defaults"] = dict(self.defaults)
        if self.stop:
            entry["stop"] = list(self.stop)
        if self.context_size is not None:
            entry["context_size"] = self.context_size
        if self.messages:
            entry["messages"] = [{"role": r, "content": c} for r, c in self.messages]
        if self.adapters:
            entry["adapters"] = [{"path": p, "scale": s} for p, s in self.adapters]
        return entry

    @classmethod
    def of(cls, config: ModelConfig) -> Recipe:
        """What ``config`` is made of (for ``/api/show``'s Modelfile): its base (itself when it
        derives from none) and its settings."""
        defaults = config.defaults.model_dump(include=config.defaults.model_fields_set)
        adapters = getattr(config, "adapters", [])
        return cls(
            base=config.derived_from or config.id,
            system=config.system,
            template=config.chat_template,
            defaults=defaults,
            stop=tuple(config.stop),
            context_size=getattr(config, "context_size", None),
            messages=tuple((m.role, m.content) for m in config.messages),
            adapters=tuple((str(a.path), a.scale) for a in adapters),
        )


class CreatedModels:
    """The created models' entries, kept in one JSON file (written whole, atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[dict[str, Any]]:
        """Every stored entry, oldest first; an unreadable file is logged and read as empty."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            logger.error("created models cannot be read from %s: %s", self.path, exc)
            return []
        return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []

    def get(self, model_id: str) -> dict[str, Any] | None:
        """The entry of ``model_id``, if it was created here."""
        return next((e for e in self.entries() if e.get("id") == model_id), None)

    def put(self, entry: dict[str, Any]) -> None:
        """Store ``entry`` (replacing one with its id)."""
        kept = [e for e in self.entries() if e.get("id") != entry["id"]]
        self._write([*kept, entry])

    def remove(self, model_id: str) -> None:
        """Forget ``model_id``."""
        self._write([e for e in self.entries() if e.get("id") != model_id])

    def blob_path(self, digest: str) -> Path:
        """Where the blob ``digest`` is (or would be) kept; a 400 for a malformed digest."""
        match = DIGEST.fullmatch(digest)
        if match is None:
            raise InvalidRequestError(f"invalid digest {digest!r}: expected sha256:<64 hex>")
        return self.path.parent / "blobs" / f"sha256-{match.group(1)}"

    async def save_blob(self, digest: str, chunks: AsyncIterator[bytes]) -> None:
        """Keep the uploaded file ``digest``; a 400 (and nothing kept) when its bytes do not
        have that digest."""
        path = self.blob_path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        hasher = hashlib.sha256()
        try:
            with partial.open("wb") as out:
                async for chunk in chunks:
                    hasher.update(chunk)
                    out.write(chunk)
            if f"sha256-{hasher.hexdigest()}" != path.name:
                raise InvalidRequestError(f"the uploaded bytes do not have the digest {digest}")
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)

    def _write(self, entries: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".tmp")
        partial.write_text(json.dumps(entries, indent=2), encoding="utf-8")
        os.replace(partial, self.path)
