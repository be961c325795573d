"""JSON as the service stores it: what both databases and the admin can hold, refused at the door otherwise.

Python's json module reads more than we can keep. Each rule below closed a way to answer 200 (or 5xx) and then
lose the event: `1e400` becomes Infinity (jsonb and SQLite's JSON refuse it), `\\u0000` and lone surrogates
(`\\ud800`) are refused by PostgreSQL and break UTF-8 everywhere else, integers past 64 bits overflow the
columns they reach, and deep nesting makes json.loads recurse until RecursionError (and, stored, bloats every
page that shows the payload). ValueError names the rule and where it was broken.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 32  # Centra's deepest order document is about 8 levels; an envelope adds 3
MAX_INTEGER = 2**63 - 1  # what a bigint column holds; smaller columns are bounded by the serializers
_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_RISKY_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


class StrictJSONError(ValueError):
    """The text is not JSON we can store; the message says why and where."""


def check_depth(text: str, limit: int = MAX_DEPTH) -> None:
    """Refuse nesting deeper than `limit` before json.loads sees it (it recurses once per level)."""
    if text.count("[") + text.count("{") <= limit:
        return  # cannot be deeper than the number of openings: the usual case costs two counts
    depth = 0
    for char in _NOT_BRACKETS.sub("", _STRINGS.sub("", text)):
        if char in "[{":
            depth += 1
            if depth > limit:
                raise StrictJSONError(f"nesting is deeper than {limit} levels")
        else:
            depth -= 1


def _constant(name: str) -> Any:
    raise StrictJSONError(f"{name} is not a JSON value")


def _float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise StrictJSONError(f"the number {_cut(literal)} is out of range")
    return value


def _int(literal: str) -> int:
    # The length test first: a 4,000-digit literal is refused without converting it.
    if len(literal) > 20 or abs(value := int(literal)) > MAX_INTEGER:
        raise StrictJSONError(f"the integer {_cut(literal)} is out of range (at most {MAX_INTEGER} in size)")
    return value


def _cut(literal: str) -> str:
    return literal if len(literal) <= 30 else literal[:27] + "..."


def _bad_text(value: str) -> str | None:
    if value.isascii():
        return "the NUL character (\\u0000)" if "\x00" in value else None
    if "\x00" in value:
        return "the NUL character (\\u0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "a lone surrogate (\\ud800-\\udfff), which is not Unicode text"
    return None


def check_strings(document: Any) -> None:
    """Refuse NUL characters and lone surrogates in any key or string, naming the path to the first one."""
    stack: list[tuple[Any, str]] = [(document, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                where = f"{path}.{key}" if path else str(key)
                problem = _bad_text(key)
                if problem:
                    raise StrictJSONError(f"a key at {_path(path)} holds {problem}")
                stack.append((value, where))
        elif isinstance(item, list):
            stack.extend((value, f"{path}.{index}" if path else str(index)) for index, value in enumerate(item))
        elif isinstance(item, str):
            problem = _bad_text(item)
            if problem:
                raise StrictJSONError(f"the string at {_path(path)} holds {problem}")


def _path(path: str) -> str:
    # The path is built from the sender's own (already checked) keys: keep it short in the message.
    return (path if len(path) <= 120 else path[:117] + "...") or "the top level"


def loads(text: str) -> Any:
    """json.loads for what we store; StrictJSONError (a ValueError) naming the problem otherwise."""
    check_depth(text)
    document = json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    if _RISKY_ESCAPE.search(text):
        # Only an escape can put a NUL or a lone surrogate into a parsed string (UTF-8 decoding refuses encoded
        # surrogates, json.loads raw control characters), so a body without one needs no walk.
        check_strings(document)
    return document
