"""Per-key request-rate and concurrency limits, off unless configured, on the injected clock."""

from __future__ import annotations

import threading
from collections import deque

from wanmock.mockserver.config import RateLimit
from wanmock.mockserver.errors import ApiError

WINDOW = 60.0


class RateLimiter:
    def __init__(self, limits: dict[str, RateLimit]) -> None:
        self.limits = limits
        self._hits: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, provider: str, key: str, now: float, unfinished: int | None = None) -> None:
        """Raise a rate_limited ApiError when this request would exceed the provider's limits.

        ``unfinished`` (submits only) is how many tasks of this key are still queued or running.
        """
        limit = self.limits.get(provider)
        if limit is None:
            return
        if limit.concurrency is not None and unfinished is not None and unfinished >= limit.concurrency:
            raise ApiError(
                "rate_limited",
                f"concurrency limit exceeded: {unfinished} unfinished tasks, at most {limit.concurrency}",
                retry_after=5.0,
                headers=_headers(limit.concurrency, 0, now + 5.0),
            )
        if limit.rpm is None:
            return
        with self._lock:
            hits = self._hits.setdefault((provider, key), deque())
            while hits and hits[0] <= now - WINDOW:
                hits.popleft()
            if len(hits) >= limit.rpm:
                reset = hits[0] + WINDOW
                raise ApiError(
                    "rate_limited",
                    # no "rate limit exceeded" prefix: Modellix already puts its category there
                    f"more than {limit.rpm} requests per minute with this API key",
                    retry_after=max(reset - now, 0.0),
                    headers=_headers(limit.rpm, 0, reset),
                )
            hits.append(now)

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()


def _headers(limit: int, remaining: int, reset_at: float) -> dict[str, str]:
    # Modellix documents these headers [M10][M12]; the others ignore them harmlessly.
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": str(int(reset_at)),
    }
