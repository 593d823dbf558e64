"""JSON bodies, decoded and encoded as the mock does it everywhere, and the form in which the
journal and a task's record keep a request body (bounded, scrubbed).

No I/O and no web framework here: the task store formats a deferred request record with it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import orjson
from wanmock.mockserver.limits import bounded
from wanmock.mockserver.scrub import Scrubber

SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # after decoding, a valid pair is one character


def loads(raw: bytes) -> Any:
    """``decode_json(raw)``, by orjson where it can: what orjson refuses (a lone surrogate,
    NaN, an integer beyond 64 bits, invalid JSON) takes the exact way, which decides."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return decode_json(raw)


def dumps(value: Any) -> bytes:
    """A JSON answer's bytes, compact and UTF-8 as Starlette's JSONResponse renders it (orjson;
    the standard library for what orjson cannot encode, such as an integer beyond 64 bits)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


def decode_json(raw: bytes) -> Any:
    """The body as JSON (UTF-8 only). A lone UTF-16 surrogate escape ("\\ud800") becomes U+FFFD,
    as Go's encoding/json reads it: a str that cannot be encoded as UTF-8 would break schema
    validation, the journal and every answer that echoes it."""
    value = json.loads(raw.decode("utf-8"))
    if SURROGATE_ESCAPE.search(raw):
        text = json.dumps(value, ensure_ascii=False)
        if LONE_SURROGATE.search(text):
            value = json.loads(LONE_SURROGATE.sub("\ufffd", text))
    return value


NUL = "\0"  # what joins strings into one flat value: no header name or value can hold it


def join_flat(values: Sequence[str]) -> str | tuple[str, ...]:
    """Strings as one NUL-joined string, so a stored record stays flat (untracked by the
    collector); the tuple itself in the rare case that one of them holds a NUL."""
    joined = NUL.join(values)
    return joined if joined.count(NUL) == max(len(values) - 1, 0) else tuple(values)


def split_flat(joined: str | tuple[str, ...]) -> tuple[str, ...]:
    """The strings ``join_flat`` kept."""
    if isinstance(joined, tuple):
        return joined
    return tuple(joined.split(NUL)) if joined else ()


def text_of(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def journal_form(body: Any, clean: Scrubber | None = None) -> Any:
    """A request body as the journal keeps it: raw bytes as text, bounded (limits.py) and, with
    ``clean``, scrubbed in the same walk."""
    return bounded(text_of(body) if isinstance(body, bytes) else body, clean=clean)


def decoded_or_raw(raw: bytes) -> Any:
    """The body as the pipeline reads it: its JSON value, or the bytes when they are not JSON
    (or are JSON ``null``)."""
    if not raw:
        return None
    try:
        decoded = loads(raw)
    except (ValueError, RecursionError):
        return raw
    return raw if decoded is None else decoded


def request_record(raw: bytes, secrets: str | tuple[str, ...]) -> Any:
    """A request body as a task's record keeps it: decoded, bounded, and without the
    credentials its request presented (in any form; NUL-joined, as :func:`join_flat` keeps them)."""
    return journal_form(decoded_or_raw(raw), Scrubber.cached(split_flat(secrets)))
