"""HTTP helpers shared by every part of the server: reading and decoding a body once, the
credentials a request carries, what the journal keeps of a value, and a dropped connection.

Nothing here knows a provider: the pipeline turns these into provider-shaped answers.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from wanmock.mockserver.errors import ApiError

TEST_HEADER = "x-wanmock-test"
SECRET_HEADERS = ("authorization", "cookie", "x-api-key")
JOURNAL_STRING_LIMIT = 256
JOURNAL_DEPTH_LIMIT = 32
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # after decoding, a valid pair is one character


class ConnectionDropped(Exception):
    """Raised after the response has started, so the client sees the connection break."""


class DroppedResponse(Response):
    """A response that starts (200, a promised length) and then breaks the connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"1000")],
            }
        )
        raise ConnectionDropped("wanmock fault rule: connection dropped")


# -- credentials ----------------------------------------------------------------------------


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def bearer_token(request: Request) -> str | None:
    """The Bearer token: None without an Authorization header, "" with another scheme."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def scrubbed_headers(request: Request) -> dict[str, str]:
    out = {}
    for name, value in request.headers.items():
        if name in SECRET_HEADERS:
            token = value.partition(" ")[2] or value
            value = f"<redacted sha256:{fingerprint(token)}>"
        out[name] = value
    return out


# -- bodies ---------------------------------------------------------------------------------


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (payload_too_large) as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    digits = (declared or "").lstrip("0")
    if declared and declared.isascii() and declared.isdigit() and (len(digits) > 18 or int(digits or 0) > limit):
        raise ApiError("payload_too_large", f"request body is {declared} bytes; at most {limit} accepted")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError("payload_too_large", f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


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


def json_refusal(exc: ValueError | RecursionError) -> ApiError:
    """Why ``decode_json`` refused a body, as the invalid_json error a client reads."""
    if isinstance(exc, UnicodeDecodeError):
        return ApiError("invalid_json", f"the body is not UTF-8 ({exc.reason} at byte {exc.start})")
    if isinstance(exc, json.JSONDecodeError):
        return ApiError("invalid_json", f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    if isinstance(exc, RecursionError):
        return ApiError("invalid_json", "invalid JSON: nested too deeply")
    limit = sys.get_int_max_str_digits()  # an integer with more digits than Python converts
    return ApiError("invalid_json", f"invalid JSON: a number has more than {limit} digits")


def parse_json(raw: bytes) -> Any:
    try:
        return decode_json(raw)
    except (ValueError, RecursionError) as exc:
        raise json_refusal(exc) from exc


# -- the journal ----------------------------------------------------------------------------


def shorten(value: Any, depth: int = 0) -> Any:
    """A copy of a JSON value fit for the journal: long strings (data URIs) cut short, deep
    nesting cut off, NaN and Infinity spelt as strings (the control plane answers strict JSON)."""
    if isinstance(value, str) and len(value) > JOURNAL_STRING_LIMIT:
        return value[:JOURNAL_STRING_LIMIT] + f"...<{len(value)} characters>"
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value)
    if isinstance(value, dict | list) and depth >= JOURNAL_DEPTH_LIMIT:
        return f"<nested deeper than {JOURNAL_DEPTH_LIMIT} levels>"
    if isinstance(value, dict):
        return {k: shorten(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [shorten(v, depth + 1) for v in value]
    return value
