"""Models named on the command line (``llmserver serve MODEL ...``) and the vLLM / llama-server
flag spellings, turned into ordinary ``models:`` entries so the settings validate them as if they
came from a config file.

A MODEL is a ``.gguf`` file, a model directory, a Hugging Face id or an ``http(s)://.../v1`` URL.
``name=value`` words after a MODEL set that model's fields (``id=chat``, ``context_size=8192``).
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmserver.config.model_configs import choose_backend
from llmserver.config.registry import config_type
from llmserver.config.settings import SettingsError

#: seconds to wait for an upstream's model list when a URL is given without ``id=``
LIST_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Alias:
    """A flag other servers use, and the model field it sets (per backend where they differ)."""

    dest: str
    flags: tuple[str, ...]
    field: str
    help: str
    kind: Callable[[str], Any] = str
    #: backend -> field, where the field has another name there
    per_backend: tuple[tuple[str, str], ...] = ()
    metavar: str = "N"

    def field_for(self, backend: str) -> str:
        """The field this flag sets on a model of ``backend``."""
        return dict(self.per_backend).get(backend, self.field)


def thread_count(text: str) -> int | str:
    """``--threads``: a positive integer or ``auto``."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or auto, got {text!r}")
    return value


ALIASES = (
    Alias(
        "served_model_name",
        ("--served-model-name",),
        "id",
        "the model's id; more names become its aliases (vLLM)",
        metavar="NAME",
    ),
    Alias(
        "max_model_len",
        ("--max-model-len", "-c", "--ctx-size"),
        "context_size",
        "context window in tokens (vLLM --max-model-len, llama-server -c)",
        int,
        (("vllm", "max_model_len"),),
    ),
    Alias(
        "parallel",
        ("--parallel", "-np"),
        "max_concurrent",
        "requests generated at once, the model's slots (llama-server -np)",
        int,
    ),
    Alias(
        "threads",
        ("--threads", "-t"),
        "threads",
        "CPU compute threads, or auto: fewer while other programs keep cores busy "
        "(llama-server -t)",
        thread_count,
    ),
    Alias(
        "n_gpu_layers",
        ("--n-gpu-layers", "-ngl"),
        "gpu_layers",
        "layers offloaded to the GPU, -1 all (llama-server -ngl)",
        int,
    ),
    Alias(
        "tensor_parallel_size",
        ("--tensor-parallel-size", "-tp"),
        "tensor_parallel_size",
        "GPUs to split each layer across (vLLM -tp)",
        int,
    ),
    Alias(
        "gpu_memory_utilization",
        ("--gpu-memory-utilization",),
        "gpu_memory_utilization",
        "share of each GPU's memory vLLM may take (vLLM)",
        float,
        metavar="SHARE",
    ),
    Alias(
        "chat_template",
        ("--chat-template",),
        "chat_template",
        "Jinja chat template file used instead of the model's own",
        metavar="FILE",
    ),
)


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _setting(token: str) -> tuple[str, str] | None:
    """``(name, value)`` for a ``name=value`` word, None for a model."""
    name, sep, value = token.partition("=")
    if not sep or not name.isidentifier() or _is_url(token) or Path(token).exists():
        return None
    return name, value


def source_entry(source: str, cwd: Path) -> dict[str, Any]:
    """The ``models:`` entry for one MODEL word (its id still to be chosen for a URL)."""
    if _is_url(source):
        return {"url": source}
    local = Path(source).expanduser()
    if not local.is_absolute():
        local = cwd / local
    hub_like = (
        not local.exists()
        and not source.startswith(("/", "./", "../", "~"))
        and not source.lower().endswith(".gguf")
    )
    if hub_like:
        return {"id": source, "path": source}  # a Hugging Face id: vLLM's served name too
    local = local.resolve()
    name = local.stem if local.suffix.lower() == ".gguf" else local.name
    return {"id": name, "path": str(local)}


def model_entries(tokens: list[str], cwd: Path, list_models: Any = None) -> list[dict[str, Any]]:
    """The ``models:`` entries for the MODEL words of ``serve``.

    A URL without ``id=`` is asked for its models (``GET URL/models``) and each one is served
    under its own name; ``list_models`` replaces that request in tests.
    """
    entries: list[dict[str, Any]] = []
    for token in tokens:
        setting = _setting(token)
        if setting is None:
            entries.append(source_entry(token, cwd))
            continue
        if not entries:
            raise SettingsError(f"'{token}' must follow the model it is for")
        name, value = setting
        entries[-1][name] = [v for v in value.split(",") if v] if name == "aliases" else value
    out: list[dict[str, Any]] = []
    for entry in entries:
        if "url" in entry and "id" not in entry:
            names = (list_models or upstream_models)(entry["url"])
            out += [{**entry, "id": name} for name in names]
        else:
            out.append(entry)
    return out


def upstream_models(url: str) -> list[str]:
    """The model ids an OpenAI-compatible server lists at ``url/models``."""
    target = url.rstrip("/") + "/models"
    try:
        with urllib.request.urlopen(target, timeout=LIST_TIMEOUT_S) as response:
            body = json.loads(response.read())
        names = [str(item["id"]) for item in body["data"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise SettingsError(
            f"cannot list the models of {url} ({reason}); name the model: {url} id=NAME"
        ) from None
    if not names:
        raise SettingsError(f"{url} lists no models; name the model: {url} id=NAME")
    return names


def given_aliases(values: Mapping[str, Any]) -> dict[str, Any]:
    """The alias flags that were given, by ``dest``."""
    return {a.dest: values[a.dest] for a in ALIASES if values.get(a.dest) is not None}


def apply_aliases(entry: dict[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """``entry`` with the alias flags mapped onto its backend's own fields."""
    backend = entry.get("backend")
    try:
        backend = backend if isinstance(backend, str) else choose_backend(entry)
        fields = config_type(backend).model_fields
    except ValueError as exc:
        raise SettingsError(f"invalid model {entry.get('id', '')!r}: {exc}") from None
    out = dict(entry)
    for alias in ALIASES:
        if alias.dest not in given:
            continue
        value = given[alias.dest]
        if alias.dest == "served_model_name":
            out["id"], out["aliases"] = value[0], [*value[1:], *out.get("aliases", [])]
            continue
        field = alias.field_for(backend)
        if field not in fields:
            raise SettingsError(f"{alias.flags[0]} does not apply to a {backend} model")
        out[field] = value
    return out
