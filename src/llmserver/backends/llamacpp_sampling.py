"""Per-sequence sampler chains for the llama.cpp batch engine.

Each sequence owns a llama.cpp sampler chain built from its own parameters and seed, so
concurrent sequences never share random state, penalties or a grammar. The chain mirrors what
``Llama.generate`` builds, so a request samples the same way it did before batching.
"""

from __future__ import annotations

import ctypes
import json
import re
from typing import Any

from llmserver.backends.base import JsonConstraint, SamplingParams
from llmserver.backends.llamacpp_json import json_schema_gbnf, schema_converter
from llmserver.errors import InvalidRequestError

#: tokens the repetition penalties look back over (llama-cpp-python's default)
PENALTY_LAST_N = 64


def build_sampler(vocab: Any, n_vocab: int, params: SamplingParams, grammar: Any) -> Any:
    """A new sampler chain (a ``llama_sampler*``); the caller frees it with ``free_sampler``."""
    import llama_cpp

    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())

    def add(sampler: Any) -> None:
        llama_cpp.llama_sampler_chain_add(chain, sampler)

    neutral = (
        params.repeat_penalty == 1.0
        and params.frequency_penalty == 0.0
        and params.presence_penalty == 0.0
    )
    if not neutral:
        add(
            llama_cpp.llama_sampler_init_penalties(
                n_vocab,
                PENALTY_LAST_N,
                params.repeat_penalty,
                params.frequency_penalty,
                params.presence_penalty,
            )
        )
    if grammar is not None:
        add(grammar)
    if params.temperature <= 0.0:
        add(llama_cpp.llama_sampler_init_greedy())
        return chain
    seed = params.seed if params.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED
    add(llama_cpp.llama_sampler_init_top_k(params.top_k))
    add(llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
    add(llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
    add(llama_cpp.llama_sampler_init_temp(params.temperature))
    add(llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain


def build_grammar(vocab: Any, constraint: JsonConstraint | None) -> Any:
    """A grammar sampler for a JSON constraint, or None; a bad schema is a 400."""
    if constraint is None:
        return None
    import llama_cpp
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    location = constraint.location
    try:
        if constraint.alternatives:
            grammar = LlamaGrammar.from_string(alternatives_gbnf(constraint), verbose=False)
        elif constraint.schema is None:
            grammar = LlamaGrammar.from_string(JSON_GBNF, verbose=False)
        else:
            grammar = LlamaGrammar.from_string(
                json_schema_gbnf(constraint.schema, location), verbose=False
            )
    except InvalidRequestError:
        raise
    except Exception as exc:
        raise InvalidRequestError(f"unsupported JSON schema: {exc}", location=location) from exc
    if constraint.triggers:
        sampler = lazy_sampler(vocab, grammar._grammar, constraint)
    else:
        sampler = llama_cpp.llama_sampler_init_grammar(
            vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
        )
    if not sampler:
        raise InvalidRequestError(
            "unsupported JSON schema: grammar did not compile", location=location
        )
    return sampler


def alternatives_gbnf(constraint: JsonConstraint) -> str:
    """A grammar whose root is one of the constraint's literals, then JSON matching its schema.

    Each schema's rules get a prefix of their own (``alt0-...``); shared primitives such as
    ``string`` or ``space`` are written once by llama-cpp-python's converter.
    """
    converter = schema_converter(constraint.location)
    options = []
    for i, (literal, schema) in enumerate(constraint.alternatives):
        resolved = converter.resolve_refs(schema, f"alternative {i}")
        rule = converter.visit(resolved, f"alt{i}")
        options.append(f"( {json.dumps(literal)} {rule} )")
    return f"root ::= {' | '.join(options)}\n{converter.format_grammar()}"


def lazy_gbnf(json_gbnf: str, constraint: JsonConstraint) -> str:
    """The grammar of a lazy constraint: ``before`` JSON ``after``, repeated if asked."""
    body = re.sub(r"^root ::=", "lazy-json ::=", json_gbnf, count=1, flags=re.MULTILINE)
    parts = [json.dumps(constraint.before)] if constraint.before else []
    parts += ["lazy-ws", "lazy-json", "lazy-ws"]
    parts += [json.dumps(constraint.after)] if constraint.after else []
    item = " ".join(parts)
    root = "lazy-item (lazy-ws lazy-item)*" if constraint.repeat else "lazy-item"
    rules = f"root ::= {root}\nlazy-item ::= {item}\nlazy-ws ::= [ \\t\\n]{{0,4}}\n"
    return rules + body


def lazy_sampler(vocab: Any, json_gbnf: str, constraint: JsonConstraint) -> Any:
    """llama.cpp's lazy grammar sampler for ``constraint`` (null when the grammar is bad)."""
    import llama_cpp

    patterns = [p.encode("utf-8") for p in constraint.triggers]
    array = (ctypes.c_char_p * len(patterns))(*patterns)
    return llama_cpp.llama_sampler_init_grammar_lazy_patterns(
        vocab,
        lazy_gbnf(json_gbnf, constraint).encode("utf-8"),
        b"root",
        array,
        len(patterns),
        None,
        0,
    )


def free_sampler(sampler: Any) -> None:
    """Free a chain (and every sampler in it)."""
    import llama_cpp

    if sampler:
        llama_cpp.llama_sampler_free(sampler)
