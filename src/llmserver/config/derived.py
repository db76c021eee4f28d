"""Derived models: a ``models`` entry with ``from: <model id>`` is a variant of another model.

The variant gets the base entry's settings, then its own (``system``, ``defaults``,
``template``, ``stop``, ``adapters``, ``context_size``...), and is validated with the base's
config type. Where the engine allows it the variant shares the base's weights: llama.cpp loads
the file once and gives the variant a context of its own (with its LoRA adapters); a model
served elsewhere has no weights here, so the variant only changes what is sent. Engines that
cannot share (Transformers, vLLM, sentence-transformers) are refused, not loaded twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: backends whose models a variant may derive from
SHARING_BACKENDS = ("llamacpp", "upstream", "ollama", "fake")
#: keys of the base entry a variant does not inherit (it is another model, resident on its own)
NOT_INHERITED = ("id", "aliases", "preload", "load_on_demand", "pinned", "derived_from")


def resolve_derived(entries: list[Any]) -> list[Any]:
    """``entries`` with every ``from:`` entry replaced by its base's settings merged with its
    own (``template`` is the variant's ``chat_template``), ``derived_from`` naming the root
    base. Raises ValueError for an unknown base, a cycle or a base that cannot share."""
    raw = [_as_dict(e) for e in entries]
    by_name: dict[str, int] = {}
    for index, entry in enumerate(raw):
        if entry is None:
            continue
        for name in (entry.get("id"), *entry.get("aliases", ())):
            if isinstance(name, str):
                by_name.setdefault(name, index)
    out = list(entries)
    for index, entry in enumerate(raw):
        if entry is not None and "from" in entry:
            out[index] = _merged(index, raw, by_name, ())
    return out


def _as_dict(entry: Any) -> dict[str, Any] | None:
    if isinstance(entry, Mapping):
        return dict(entry)
    dump = getattr(entry, "model_dump", None)
    return dict(dump(exclude_unset=True)) | {"backend": entry.backend} if dump else None


def _merged(
    index: int, raw: list[dict[str, Any] | None], by_name: dict[str, int], seen: tuple[int, ...]
) -> dict[str, Any]:
    entry = raw[index]
    assert entry is not None
    if "from" not in entry:
        return entry
    where = f"models[{index}]"
    if index in seen:
        raise ValueError(f"{where}.from: a chain of 'from' comes back to itself")
    base_name = entry["from"]
    if base_name not in by_name:
        raise ValueError(f"{where}.from: '{base_name}' is not a configured model")
    base = _merged(by_name[base_name], raw, by_name, (*seen, index))
    backend = base.get("backend")
    if backend is None:
        from llmserver.config.model_configs import choose_backend

        backend = choose_backend(base)
    if backend not in SHARING_BACKENDS:
        raise ValueError(
            f"{where}.from: a {backend} model cannot share its weights with a variant "
            f"(variants derive from {', '.join(SHARING_BACKENDS)} models)"
        )
    own = {k: v for k, v in entry.items() if k != "from"}
    if "template" in own:
        own["chat_template"] = own.pop("template")
    inherited = {k: v for k, v in base.items() if k not in NOT_INHERITED}
    root = base.get("derived_from") or base["id"]
    return {**inherited, "backend": backend, **own, "derived_from": root}
