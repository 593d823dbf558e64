"""Bounds on what one request may cost the server: the declared body size (checked before a
byte is read, on every route), and the size of what the journal keeps of it.

A journal entry keeps at most JOURNAL_HEADERS headers (each value cut to
JOURNAL_HEADER_VALUE characters), a path and query of JOURNAL_TARGET characters, and of each
body a bounded copy (:func:`bounded`): strings cut to JOURNAL_STRING characters, at most
JOURNAL_ITEMS items per list or object, nesting cut at JOURNAL_DEPTH levels, and at most
JOURNAL_BODY_BYTES in all. So an entry is at most about JOURNAL_ENTRY_BYTES, and the memory
store keeps entries up to a total byte budget (``journal_bytes``) as well as a count.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any, Protocol

JOURNAL_STRING = 256
JOURNAL_DEPTH = 32
JOURNAL_ITEMS = 64
JOURNAL_BODY_BYTES = 8 * 1024
JOURNAL_HEADERS = 48
JOURNAL_HEADER_NAME = 64
JOURNAL_HEADER_VALUE = 256
JOURNAL_TARGET = 2048
JOURNAL_HEADER_BYTES = JOURNAL_HEADERS * (JOURNAL_HEADER_NAME + JOURNAL_HEADER_VALUE + 8)
JOURNAL_ENTRY_BYTES = 2 * JOURNAL_BODY_BYTES + JOURNAL_HEADER_BYTES + 3 * JOURNAL_TARGET
DEFAULT_JOURNAL_BYTES = 64 * 1024 * 1024
ENTRY_OVERHEAD = 256  # the JSON of an entry's fixed fields, about
MAX_CONTENT_LENGTH_DIGITS = 18  # 10^18 > any limit; more digits are refused without int()
HUGE_LENGTH = 1_000_000_000_000_000_000


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"...<{len(text)} characters>"


class Cleaner(Protocol):
    """What :func:`bounded` may scrub with as it copies (``wanmock.mockserver.scrub.Scrubber``)."""

    margin: int  # characters a secret's longest form takes: a string is scrubbed this far past its cut
    redacted: str  # what a secret-named member's value becomes

    def text(self, text: str) -> str: ...
    def redacts(self, name: str) -> bool: ...


class _Budget:
    def __init__(self, limit: int) -> None:
        self.left = limit


def bounded(value: Any, limit: int = JOURNAL_BODY_BYTES, clean: Cleaner | None = None) -> Any:
    """A copy of a JSON value fit for the journal: long strings (data URIs) cut short, at most
    JOURNAL_ITEMS items kept per container, deep nesting cut off, NaN and Infinity spelt as
    strings (the control plane answers strict JSON), and about ``limit`` bytes in all.

    With ``clean``, the same walk also scrubs: secret-named members redacted, secret values
    replaced in every string and name (a string is scrubbed before it is cut, so no piece of a
    secret survives at the cut)."""
    return _bounded(value, 0, _Budget(limit), clean)


def _text(text: str, limit: int, clean: Cleaner | None) -> str:
    if clean is None:
        return cut(text, limit)
    if len(text) <= limit:
        return clean.text(text)
    return clean.text(text[: limit + clean.margin])[:limit] + f"...<{len(text)} characters>"


def _bounded(value: Any, depth: int, budget: _Budget, clean: Cleaner | None) -> Any:
    if isinstance(value, str):
        kept = min(JOURNAL_STRING, max(budget.left, 16))
        shown = cut(value, kept)
        budget.left -= len(shown) + 2
        return shown if clean is None else _text(value, kept, clean)
    if isinstance(value, float) and not math.isfinite(value):
        budget.left -= 10
        return json.dumps(value)
    if isinstance(value, dict | list) and depth >= JOURNAL_DEPTH:
        budget.left -= 40
        return f"<nested deeper than {JOURNAL_DEPTH} levels>"
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if index >= JOURNAL_ITEMS or budget.left <= 0:
                out["..."] = f"<{len(value) - index} more members>"
                break
            name = cut(str(key), JOURNAL_STRING)
            budget.left -= len(name) + 4
            if clean is None:
                out[name] = _bounded(item, depth + 1, budget, clean)
                continue
            shown = _text(str(key), JOURNAL_STRING, clean)
            if item is not None and clean.redacts(name):
                _bounded(item, depth + 1, budget, None)  # counted as the plain copy counts it
                out[shown] = clean.redacted
            else:
                out[shown] = _bounded(item, depth + 1, budget, clean)
        return out
    if isinstance(value, list):
        items: list[Any] = []
        for index, item in enumerate(value):
            if index >= JOURNAL_ITEMS or budget.left <= 0:
                items.append(f"<{len(value) - index} more items>")
                break
            budget.left -= 2
            items.append(_bounded(item, depth + 1, budget, clean))
        return items
    budget.left -= 8
    return value


def bounded_headers(items: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """At most JOURNAL_HEADERS headers, names and values cut short (a count of the rest kept)."""
    kept: list[tuple[str, str]] = []
    dropped = 0
    for name, value in items:
        if len(kept) >= JOURNAL_HEADERS:
            dropped += 1
            continue
        kept.append((cut(name, JOURNAL_HEADER_NAME), cut(value, JOURNAL_HEADER_VALUE)))
    if dropped:
        kept.append(("...", f"<{dropped} more headers>"))
    return kept


def declared_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The request's Content-Length as a number (a huge one as a number above any limit);
    None when absent or not a number (the HTTP parser refuses those)."""
    for name, value in headers:
        if name.lower() == b"content-length":
            return length_of(value)
    return None


def length_of(value: bytes) -> int | None:
    """A Content-Length value as a number, as :func:`declared_length` reads it."""
    digits = value.strip().lstrip(b"0")
    if not value.strip().isdigit():
        return None
    if len(digits) > MAX_CONTENT_LENGTH_DIGITS:
        return HUGE_LENGTH
    return int(digits.decode("ascii") or "0")


def entry_size(data: dict[str, Any]) -> int:
    """The bytes a journal entry's JSON takes (what the memory store accounts)."""
    return len(json.dumps(data, default=str, ensure_ascii=False))
