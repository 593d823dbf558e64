"""HTTP helpers shared by every part of the server: reading and decoding a body once, the
credentials a request carries, what the journal keeps of a value, and a dropped connection.

Nothing here knows a provider: the pipeline turns these into provider-shaped answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import math
import re
import sys
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send
from wanmock.mockserver.bodies import decode_json
from wanmock.mockserver.errors import ApiError

TEST_HEADER = "x-wanmock-test"
# In a response start message: the whole body follows at once, so the server may write head and
# body together (wanmock.mockserver.netguard does; any other ASGI server ignores the key).
ONE_WRITE = "wanmock.one_write"
# Two more of wanmock's own server's offers, found on the cycle behind ``receive`` and ``send``
# (netguard.CoalescingCycle); any other server has neither, and the ASGI messages are used:
TAKE_BODY = "take_body"  # the whole request body, when it has all arrived and is unread
WRITE_ANSWER = "write_answer"  # a whole answer (head and body) written at once, as one send would
SECRET_HEADERS = ("authorization", "cookie", "x-api-key")
JOURNAL_STRING_LIMIT = 256
JOURNAL_DEPTH_LIMIT = 32
# What Starlette's URL parsing changes in a path (escapes ?#\, drops tab and newlines): such a
# path takes the slow, exact way; any other is used as the server gave it.
URL_REWRITES_PATH = re.compile(r"[?#\\\t\r\n]")


class ConnectionDropped(Exception):
    """Raised after the response has started, so the client sees the connection break."""


@contextlib.asynccontextmanager
async def until_shutdown() -> AsyncIterator[None]:
    """Around a lifespan's ``yield``: the server may tear the lifespan down by cancelling it,
    without a shutdown (uvicorn does on a second Ctrl-C). That ends it here, so that the code
    after the ``yield`` (closing the store, removing rendered files) runs and Starlette does
    not report the cancellation as a failed shutdown, with a traceback, on the way out."""
    with contextlib.suppress(asyncio.CancelledError):
        yield


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


@functools.lru_cache(maxsize=4096)
def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The Bearer token: None without an Authorization header, "" with another scheme."""
    header = headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def scrubbed_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The request's headers (an ASGI scope's list) for the journal, credentials fingerprinted."""
    out = {}
    for key, raw_value in raw:
        name, value = key.decode("latin-1"), raw_value.decode("latin-1")
        if name in SECRET_HEADERS:
            token = value.partition(" ")[2] or value
            value = f"<redacted sha256:{fingerprint(token)}>"
        out[name] = value
    return out


# -- the request, read from the ASGI scope ---------------------------------------------------


def header_map(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The headers of an ASGI scope by (lower-case) name; the first of repeated ones, as
    Starlette's ``Headers.get`` answers."""
    headers: dict[str, str] = {}
    for key, value in raw:
        name = key.decode("latin-1")
        if name not in headers:
            headers[name] = value.decode("latin-1")
    return headers


def url_path(scope: Scope) -> str:
    """``Request(scope).url.path``, without building the URL for an ordinary path."""
    path: str = scope["path"]
    return path if URL_REWRITES_PATH.search(path) is None else Request(scope).url.path


def url_query(scope: Scope) -> str:
    """``Request(scope).url.query``, without building the URL for an ordinary query."""
    raw: bytes = scope.get("query_string", b"")
    if not raw:
        return ""
    if raw.isascii() and b"#" not in raw and b"\n" not in raw and b"\r" not in raw and b"\t" not in raw:
        return raw.decode("ascii")
    return Request(scope).url.query


_BASES: dict[tuple[Any, ...], str] = {}


def base_url(scope: Scope, host: str | None) -> str:
    """``str(Request(scope).base_url)`` without its trailing slash, built once per origin."""
    server = scope.get("server")
    key = (
        scope.get("scheme"),
        host,
        tuple(server) if server else None,
        scope.get("root_path"),
        scope.get("app_root_path"),
    )
    found = _BASES.get(key)
    if found is None:
        found = str(Request(scope).base_url).rstrip("/")
        if len(_BASES) < 1024:
            _BASES[key] = found
    return found


# -- bodies ---------------------------------------------------------------------------------


def server_offer(channel: Receive | Send, name: str) -> Any:
    """The server's own method ``name`` (TAKE_BODY, WRITE_ANSWER) on the request cycle that
    ``channel`` (the app's ``receive`` or ``send``) belongs to; None from any other server."""
    return getattr(getattr(channel, "__self__", None), name, None)


def take_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body at once, when the server offers it (TAKE_BODY: all arrived, unread);
    None where it must be read from ``receive``. Refused as :func:`read_body` refuses it."""
    take = server_offer(receive, TAKE_BODY)
    whole: bytes | None = None if take is None else take()
    if whole is not None and len(whole) > limit:
        raise ApiError("payload_too_large", f"request body exceeds {limit} bytes")
    return whole


async def read_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
    """The body, refused (payload_too_large) as soon as it is known to exceed ``limit`` bytes."""
    declared = headers.get("content-length")
    digits = (declared or "").lstrip("0")
    if declared and declared.isascii() and declared.isdigit() and (len(digits) > 18 or int(digits or 0) > limit):
        raise ApiError("payload_too_large", f"request body is {declared} bytes; at most {limit} accepted")
    chunks, size = [], 0
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        if message["type"] != "http.request":
            continue
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError("payload_too_large", f"request body exceeds {limit} bytes")
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


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


_KEPT = frozenset({int, bool, type(None)})  # what shorten() returns as it is


def shorten(value: Any, depth: int = 0) -> Any:
    """A copy of a JSON value fit for the journal: long strings (data URIs) cut short, deep
    nesting cut off, NaN and Infinity spelt as strings (the control plane answers strict JSON).
    Plain containers are walked without a call per leaf (the hot path: every answer)."""
    kind = type(value)
    if kind is dict and depth < JOURNAL_DEPTH_LIMIT:
        return {
            k: v if type(v) in _KEPT or (type(v) is str and len(v) <= JOURNAL_STRING_LIMIT) else shorten(v, depth + 1)
            for k, v in value.items()
        }
    if kind is list and depth < JOURNAL_DEPTH_LIMIT:
        return [
            v if type(v) in _KEPT or (type(v) is str and len(v) <= JOURNAL_STRING_LIMIT) else shorten(v, depth + 1)
            for v in value
        ]
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
