"""Canonical API errors. A profile turns each into its provider's status code and envelope."""

from __future__ import annotations

from collections.abc import Sequence

from wanmock.schemas import Issue

DETAIL_LIMIT = 4096

# kind -> the HTTP status used when the provider profile does not say otherwise
DEFAULT_STATUS = {
    "invalid_request": 400,
    "invalid_json": 400,
    "unsupported_media_type": 415,
    "payload_too_large": 413,
    "missing_async_header": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "insufficient_balance": 402,
    "not_found": 404,
    "unknown_model": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "rate_limited": 429,
    "server_error": 500,
    "bad_gateway": 502,
    "unavailable": 503,
    "timeout": 504,
}


class ApiError(Exception):
    """An error the mock answers in the provider's own shape.

    ``kind`` is canonical (a key of DEFAULT_STATUS); ``status`` and ``code`` override what the
    profile would choose (a fault rule asks for "429 Throttling", say); ``issues`` carries the
    schema validation issues behind an ``invalid_request``.
    """

    def __init__(
        self,
        kind: str,
        detail: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        issues: Sequence[Issue] = (),
        headers: dict[str, str] | None = None,
        verbatim: bool = False,
    ) -> None:
        if kind not in DEFAULT_STATUS:
            raise ValueError(f"unknown error kind {kind!r}")
        if len(detail) > DETAIL_LIMIT:  # a message quoting a client's huge value stays readable
            detail = detail[:DETAIL_LIMIT] + f"...<{len(detail)} characters>"
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.explicit_status = status
        self.status = status or DEFAULT_STATUS[kind]
        self.code = code
        self.retry_after = retry_after
        self.issues = tuple(issues)
        self.headers = dict(headers or {})
        self.verbatim = verbatim  # the detail is the exact message to answer (a fault rule's)


def kind_for_status(status: int) -> str:
    """The canonical kind that a bare HTTP status most likely means (for fault rules)."""
    for kind, default in DEFAULT_STATUS.items():
        if default == status:
            return kind
    return "server_error" if status >= 500 else "invalid_request"
