"""Result videos: output sizes, signed expiring URLs, and what the result host answers.

Result URLs point at the mock itself: ``/__files/<provider>/<task_id>.mp4?Expires=…&Signature=…``.
The signature is an HMAC over provider, task id and expiry with a per-server secret, so a URL
cannot be forged or extended; it expires with the task's retention, as the providers' do.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import urlencode

from wanmock.mockserver.tasks import Task
from wanmock.schemas import catalog

FILES_PREFIX = "/__files"
UPLOADS_PREFIX = "/__uploads"  # the upload host of the DashScope SDK's local files (uploads.py)
URL_CACHE_SIZE = 4096  # signed links kept (a poll of a recent task signs nothing)


@functools.cache
def output_sizes() -> dict[str, dict[str, tuple[int, int]]]:
    """Width x height by resolution tier and ratio, as the schema files document them (upstream [D5a])."""
    return catalog().output_sizes()


def output_size(resolution: str, ratio: str) -> tuple[int, int]:
    return output_sizes()[resolution.upper()][ratio]


@dataclass(frozen=True)
class LinkCheck:
    ok: bool
    reason: str = ""  # "expired" | "signature" when not ok


class ResultLinks:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._urls: dict[tuple[str, str, str, int], str] = {}

    def _sign(self, provider: str, task_id: str, expires: int) -> str:
        message = f"{provider}/{task_id}/{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def url(self, base_url: str, task: Task, expires_at: float) -> str:
        """The signed link (the same for every poll of a task: built once, kept a while)."""
        expires = int(expires_at)
        key = (base_url, task.provider, task.id, expires)
        found = self._urls.get(key)
        if found is None:
            query = urlencode({"Expires": expires, "Signature": self._sign(task.provider, task.id, expires)})
            found = f"{base_url}{FILES_PREFIX}/{task.provider}/{task.id}.mp4?{query}"
            if len(self._urls) >= URL_CACHE_SIZE:
                self._urls.clear()
            self._urls[key] = found
        return found

    def check(self, provider: str, task_id: str, expires: str | None, signature: str | None, now: float) -> LinkCheck:
        if not expires or not signature or not expires.isdigit():
            return LinkCheck(False, "signature")
        expected = self._sign(provider, task_id, int(expires))
        if not hmac.compare_digest(expected, signature):
            return LinkCheck(False, "signature")
        if now >= int(expires):
            return LinkCheck(False, "expired")
        return LinkCheck(True)


def storage_error(code: str, message: str, request_id: str) -> str:
    """An object-storage style XML error, as a pre-signed OSS URL answers (APIYI, DashScope)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>{request_id}</RequestId><HostId>wanmock</HostId></Error>\n"
    )
