"""HTTP helpers shared by every part of the server: reading and decoding a body once, the
credentials a request carries, what the journal keeps of a value, and a dropped connection.

Nothing here knows a provider: the pipeline turns these into provider-shaped answers.
"""

from __future__ import annotations

import json
import re
import sys
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from wanmock.mockserver.errors import ApiError
from wanmock.mockserver.limits import bounded, declared_length
from wanmock.mockserver.scrub import Fingerprint, Scrubber, request_secrets

if TYPE_CHECKING:
    from wanmock.mockserver.state import AppState

TEST_HEADER = "x-wanmock-test"
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
    """An unsalted fingerprint, for code outside a server; a server uses AppState.fingerprint."""
    return Fingerprint(b"wanmock")(token)


def bearer_token(request: Request) -> str | None:
    """The Bearer token: None without an Authorization header, "" with another scheme."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def request_scrubber(request: Request, state: AppState) -> Scrubber:
    """Removes what the request presented as a credential (headers, query), in every form, and
    fingerprints credential headers with the store's salt (wanmock.mockserver.scrub)."""
    return Scrubber(request_secrets(request.headers.items(), request.url.query), state.fingerprint)


def check_declared_length(request: Request, limit: int) -> None:
    """Refuse a declared Content-Length above ``limit`` before a byte is read, on every route and
    method (2^63 is refused at once)."""
    declared = declared_length(request.scope["headers"])
    if declared is not None and declared > limit:
        raise ApiError("payload_too_large", f"request body is {declared} bytes; at most {limit} accepted")


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


def shorten(value: Any) -> Any:
    """A bounded copy of a JSON value for the journal and task dumps: strings cut short, at most
    so many items per container, nesting cut off, a byte budget (wanmock.mockserver.limits)."""
    return bounded(value)
