"""JSON-schema grammars for llama.cpp: llama-cpp-python's schema converter, corrected.

The converter (``llama_cpp.llama_grammar.SchemaConverter``) is used as it is, with two rules
of its own replaced:

- its string character admits the control characters U+0000 to U+001F, which JSON allows in a
  string only escaped: a model that wrote a raw line feed inside a string produced output that
  ``json.loads`` refuses. Here a string character is what RFC 8259 allows.
- it ignores ``minimum``, ``maximum``, ``exclusiveMinimum`` and ``exclusiveMaximum``. Here a
  bounded integer (and a number whose bounds are whole numbers) gets a rule that spells out
  the allowed digits, so only values inside the bounds can be written.

Everything this module writes is a GBNF expression over decimal digits; nothing runs at import.
"""

from __future__ import annotations

import math
from typing import Any

from llmserver.errors import InvalidRequestError, Location

#: a character of a JSON string (RFC 8259): anything but a quote, a backslash or a control
#: character, or an escape
JSON_CHAR = (
    r'[^"\\\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] '
    r"[0-9a-fA-F])"
)
#: the longest integer part a bounded number may have (the converter's own limit)
MAX_DIGITS = 16
#: the keywords that bound a number
BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")

# the fraction a number's integer part may be followed by
_ANY_FRACTION = '("." [0-9]{1,16})?'
_ZERO_FRACTION = '("." "0"{1,16})?'
_NONZERO_FRACTION = '"." [0-9]{0,15} [1-9]'


def json_schema_gbnf(schema: Any, location: Location) -> str:
    """The GBNF grammar of ``schema``; a schema it cannot hold is a 400 naming ``location``."""
    converter = schema_converter(location)
    resolved = converter.resolve_refs(schema, "request")
    converter.visit(resolved, "")
    return str(converter.format_grammar())


def schema_converter(location: Location) -> Any:
    """A fresh llama-cpp-python ``SchemaConverter`` with JSON's string characters and numeric
    bounds (the class is made here because llama_cpp is imported only when it is used)."""
    from llama_cpp import llama_grammar

    base: Any = llama_grammar.SchemaConverter
    reserved = llama_grammar.RESERVED_NAMES

    class Converter(base):  # type: ignore[misc]
        def _add_primitive(self, name: str, rule: Any) -> Any:
            if name == "char":
                rule = llama_grammar.BuiltinRule(JSON_CHAR, [])
            return super()._add_primitive(name, rule)

        def visit(self, schema: Any, name: str) -> Any:
            expression = bounded_number_gbnf(schema, location) if isinstance(schema, dict) else None
            if expression is None:
                return super().visit(schema, name)
            rule_name = name + "-" if name in reserved else name or "root"
            return self._add_rule(rule_name, f"{expression} space")

    return Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)


def bounded_number_gbnf(schema: dict[str, Any], location: Location) -> str | None:
    """The expression for an ``integer`` or ``number`` schema with bounds (None: no bounds, or
    not a plain numeric schema, which the converter handles)."""
    kind = schema.get("type")
    if kind not in ("integer", "number") or "enum" in schema or "const" in schema:
        return None
    bounds = {key: schema[key] for key in BOUNDS if key in schema}
    if not bounds:
        return None
    for key, value in bounds.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isinf(value):
            raise InvalidRequestError(f"{key} must be a finite number", location=location)
    if kind == "integer":
        return _integer_range(bounds, location)
    return _number_range(bounds, location)


def _integer_range(bounds: dict[str, int | float], location: Location) -> str:
    low = _inclusive_low(bounds)
    high = _inclusive_high(bounds)
    if low is not None and high is not None and low > high:
        raise InvalidRequestError(f"no integer lies within the bounds {bounds}", location=location)
    alternatives = []
    if low is None or low < 0:  # negative values: "-" and their magnitude
        smallest = 1 if high is None or high >= 0 else -high
        largest = None if low is None else -low
        alternatives.append(f'"-" {naturals(smallest, largest)}')
    if high is None or high >= 0:
        alternatives.append(naturals(max(low or 0, 0), high))
    return _group(alternatives)


def _inclusive_low(bounds: dict[str, int | float]) -> int | None:
    lows = [math.ceil(bounds["minimum"])] if "minimum" in bounds else []
    if "exclusiveMinimum" in bounds:
        lows.append(math.floor(bounds["exclusiveMinimum"]) + 1)
    return max(lows) if lows else None


def _inclusive_high(bounds: dict[str, int | float]) -> int | None:
    highs = [math.floor(bounds["maximum"])] if "maximum" in bounds else []
    if "exclusiveMaximum" in bounds:
        highs.append(math.ceil(bounds["exclusiveMaximum"]) - 1)
    return min(highs) if highs else None


def _number_range(bounds: dict[str, int | float], location: Location) -> str:
    """A number between whole-number bounds, without an exponent. A fractional bound cannot be
    spelled out digit by digit here, so it is refused by name rather than ignored."""
    for key, value in bounds.items():
        if value != math.floor(value):
            raise InvalidRequestError(
                f"{key} {value}: the llamacpp backend enforces a number's bounds only when "
                "they are whole numbers",
                location=location,
                code="unsupported_schema",
            )
    low, low_open = _tightest(bounds, "minimum", "exclusiveMinimum", max)
    high, high_open = _tightest(bounds, "maximum", "exclusiveMaximum", min)
    alternatives = []
    if low is None or low < 0:  # x = -m with m > 0: -x's bounds are x's, mirrored
        top = None if low is None else -low
        bottom, bottom_open = (0, True) if high is None or high >= 0 else (-high, high_open)
        alternatives += [f'"-" {a}' for a in _magnitudes(bottom, bottom_open, top, low_open)]
    if high is None or high >= 0:
        bottom, bottom_open = (0, False) if low is None or low < 0 else (low, low_open)
        alternatives += _magnitudes(bottom, bottom_open, high, high_open)
    if not alternatives:
        raise InvalidRequestError(f"no number lies within the bounds {bounds}", location=location)
    return _group(alternatives)


def _tightest(
    bounds: dict[str, int | float], closed: str, open_: str, pick: Any
) -> tuple[int | None, bool]:
    """The tighter of a closed and an open bound, and whether it is open."""
    found = [(int(bounds[k]), k == open_) for k in (closed, open_) if k in bounds]
    if not found:
        return None, False
    value = pick(v for v, _ in found)
    return value, any(v == value and is_open for v, is_open in found)


def _magnitudes(low: int, low_open: bool, high: int | None, high_open: bool) -> list[str]:
    """Alternatives for a non-negative number between ``low`` and ``high`` (whole numbers;
    None: no upper bound), each an integer part and the fractions it may take."""
    if high is not None and (high < low or (high == low and (low_open or high_open))):
        return []
    if high is not None and high == low:
        return [f"{naturals(low, low)} {_ZERO_FRACTION}"]
    out = []
    first = low + 1 if low_open else low
    if low_open:  # low itself only with a fraction above it
        out.append(f"{naturals(low, low)} {_NONZERO_FRACTION}")
    last = None if high is None else high - 1
    if last is None or first <= last:
        out.append(f"{naturals(first, last)} {_ANY_FRACTION}")
    if high is not None and not high_open:  # high itself only as a whole number
        out.append(f"{naturals(high, high)} {_ZERO_FRACTION}")
    return out


def naturals(low: int, high: int | None) -> str:
    """An expression for the decimal integers from ``low`` to ``high`` (None: up to
    :data:`MAX_DIGITS` digits), written without leading zeros; ``0 <= low <= high``."""
    top = high if high is not None else max(10**MAX_DIGITS, 10 ** len(str(low))) - 1
    alternatives = []
    for length in range(len(str(low)), len(str(top)) + 1):
        start = max(low, 10 ** (length - 1) if length > 1 else 0)
        end = min(top, 10**length - 1)
        if start <= end:
            alternatives.append(_between(str(start), str(end)))
    return _group(alternatives)


def _between(low: str, high: str) -> str:
    """Digit strings of one length from ``low`` to ``high``, digit by digit."""
    if not low:
        return ""
    rest = len(low) - 1
    if low[0] == high[0]:
        return _then(f'"{low[0]}"', _between(low[1:], high[1:]))
    if low[1:] == "0" * rest and high[1:] == "9" * rest:
        return _then(f"[{low[0]}-{high[0]}]", _any_digits(rest))
    alternatives = [_then(f'"{low[0]}"', _between(low[1:], "9" * rest))]
    if int(high[0]) - int(low[0]) > 1:
        middle = f"[{int(low[0]) + 1}-{int(high[0]) - 1}]"
        alternatives.append(_then(middle, _any_digits(rest)))
    alternatives.append(_then(f'"{high[0]}"', _between("0" * rest, high[1:])))
    return _group(alternatives)


def _any_digits(count: int) -> str:
    return "" if count == 0 else "[0-9]" if count == 1 else f"[0-9]{{{count}}}"


def _then(first: str, rest: str) -> str:
    return f"{first} {rest}" if rest else first


def _group(alternatives: list[str]) -> str:
    return alternatives[0] if len(alternatives) == 1 else f"({' | '.join(alternatives)})"
