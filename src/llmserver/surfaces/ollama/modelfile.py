"""Ollama's Modelfile and ``/api/create``'s JSON form <-> the core's :class:`Recipe`.

``FROM``, ``SYSTEM``, ``TEMPLATE`` (a Jinja chat template: Ollama's Go templates are refused),
``PARAMETER`` (the sampling defaults, ``stop``, ``num_predict`` and ``num_ctx``), ``MESSAGE``
and ``ADAPTER`` (a LoRA GGUF file on the server) are honoured; anything else is refused by name.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from llmserver.core.created import Recipe
from llmserver.errors import InvalidRequestError

#: Ollama's parameter names -> the model's sampling defaults
SAMPLING = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "repeat_penalty": "repeat_penalty",
    "num_predict": "max_tokens",
}
ROLES = ("system", "user", "assistant")
#: marks of a Go template ({{ .System }}, {{ range .Messages }}), which Jinja would mangle
GO_TEMPLATE = re.compile(r"\{\{-?\s*(\.|range\b|if \.|end\b)")
_INSTRUCTION = re.compile(r"^\s*([A-Za-z]+)\s+(.*)$", re.DOTALL)


def recipe(
    base: str,
    system: str | None = None,
    template: str | None = None,
    parameters: dict[str, Any] | None = None,
    messages: list[tuple[str, str]] | None = None,
    adapters: list[str] | None = None,
) -> Recipe:
    """A recipe from Ollama's terms; unknown parameters and Go templates are a 400."""
    if not base:
        raise InvalidRequestError("'from' (FROM) is required: the model to derive from")
    if template is not None and GO_TEMPLATE.search(template):
        raise InvalidRequestError(
            "TEMPLATE must be a Jinja chat template (as in a GGUF file); Ollama's Go templates "
            "are not supported",
            param="template",
        )
    defaults: dict[str, Any] = {}
    stop: list[str] = []
    context: int | None = None
    for name, value in (parameters or {}).items():
        values = value if isinstance(value, list) else [value]
        if name == "stop":
            stop += [str(v) for v in values]
        elif name == "num_ctx":
            context = int(_number(name, values[-1], int))
        elif name in SAMPLING:
            kind = int if name in ("top_k", "num_predict") else float
            defaults[SAMPLING[name]] = _number(name, values[-1], kind)
        else:
            raise InvalidRequestError(f"parameter '{name}' is not supported", param="parameters")
    for role, _ in messages or []:
        if role not in ROLES:
            raise InvalidRequestError(f"MESSAGE role '{role}' is not one of {', '.join(ROLES)}")
    return Recipe(
        base=base,
        system=system,
        template=template,
        defaults=defaults,
        stop=tuple(stop),
        context_size=context,
        messages=tuple(messages or ()),
        adapters=tuple((path, 1.0) for path in adapters or ()),
    )


def _number(name: str, value: Any, kind: type[int] | type[float]) -> int | float:
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise InvalidRequestError(
            f"parameter '{name}' must be a number, not {value!r}", param="parameters"
        ) from None


def parse(text: str) -> Recipe:
    """A Modelfile's recipe. Values may be quoted, or span lines in triple quotes."""
    fields: dict[str, Any] = {"base": "", "parameters": {}, "messages": [], "adapters": []}
    for instruction, value in _instructions(text):
        if instruction == "FROM":
            fields["base"] = value
        elif instruction in ("SYSTEM", "TEMPLATE"):
            fields[instruction.lower()] = value
        elif instruction == "PARAMETER":
            name, _, raw = value.partition(" ")
            fields["parameters"].setdefault(name.strip(), []).append(_unquote(raw.strip()))
        elif instruction == "MESSAGE":
            role, _, content = value.partition(" ")
            fields["messages"].append((role.strip().lower(), _unquote(content.strip())))
        elif instruction == "ADAPTER":
            fields["adapters"].append(value)
        else:
            raise InvalidRequestError(
                f"Modelfile instruction {instruction} is not supported", param="modelfile"
            )
    params = {k: v if k == "stop" else v[-1] for k, v in fields.pop("parameters").items()}
    return recipe(parameters=params, **fields)


def _instructions(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    lines = iter(text.splitlines())
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _INSTRUCTION.match(line)
        if match is None:
            raise InvalidRequestError(f"Modelfile line not understood: {line!r}")
        instruction, value = match.group(1).upper(), match.group(2).strip()
        if value.startswith('"""') and not (len(value) > 5 and value.endswith('"""')):
            parts = [value[3:]]
            for more in lines:  # a triple-quoted value ends at the next """
                if more.rstrip().endswith('"""'):
                    parts.append(more.rstrip()[:-3])
                    break
                parts.append(more)
            else:
                raise InvalidRequestError('Modelfile: a """ value is not closed')
            value = "\n".join(parts)
        else:
            value = _unquote(value)
        out.append((instruction, value))
    return out


def _unquote(value: str) -> str:
    if value.startswith('"""') and value.endswith('"""') and len(value) >= 6:
        return value[3:-3]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return str(json.loads(value))
        except ValueError:
            return value[1:-1]
    return value


def render(made: Recipe, parameters: dict[str, Any]) -> str:
    """The Modelfile of a model: its base, system prompt, template, parameters, adapters and
    preset turns (``parameters``: the model's settings in Ollama's names)."""
    out = ["# Modelfile generated by llmserver", f"FROM {made.base}"]
    if made.system:
        out.append(f'SYSTEM """{made.system}"""')
    if made.template:
        out.append(f'TEMPLATE """{made.template}"""')
    out += [f"PARAMETER {k} {v}" for k, v in parameters.items()]
    out += [f"PARAMETER stop {json.dumps(s)}" for s in made.stop]
    for path, scale in made.adapters:
        if scale != 1.0:  # Ollama's ADAPTER has no scale; the config file says it
            out.append(f"# applied with scale {scale}")
        out.append(f"ADAPTER {shlex.quote(path)}")
    out += [f'MESSAGE {role} """{content}"""' for role, content in made.messages]
    return "\n".join(out) + "\n"
