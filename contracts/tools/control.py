"""The client side of a wanmock server's control plane (``/__admin/``), in one place.

* :func:`identify` answers "is this a wanmock, and what does it serve?" for a URL a user typed:
  the server's origin (``http://127.0.0.1:8000``) or a provider base URL as the ``wanmock serve``
  banner prints it (``http://127.0.0.1:8000/modellix``). Every command that takes ``--target``
  asks it; a URL that is no wanmock raises :class:`NotAWanmock` (the commands' usage error).
* :class:`Control` calls the control plane: health, the manual clock, fault rules, forced task
  transitions, the journal, tasks and reset. It sends the admin token (``WANMOCK_ADMIN_TOKEN``)
  when one is set, and scopes everything to one test when given a test id.
"""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx

ADMIN_TOKEN_HEADER = "X-Wanmock-Admin-Token"
ADMIN_TOKEN_VARIABLE = "WANMOCK_ADMIN_TOKEN"
TEST_HEADER = "X-Wanmock-Test"
ADMIN_PREFIX = "/__admin"
HEALTH_PATH = f"{ADMIN_PREFIX}/health"  # answers 200 with {"providers": [...], "clock": ...}


class NotAWanmock(Exception):
    """The URL is not a wanmock server, or not one that serves the provider asked for."""


class ControlPlaneError(Exception):
    """The control plane refused a call (its status and answer are in the message)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ServerInfo:
    """What a wanmock server says about itself on ``GET /__admin/health``."""

    origin: str
    providers: tuple[str, ...]
    clock: str
    health: Mapping[str, Any] = field(repr=False)

    @property
    def manual_clock(self) -> bool:
        return self.clock == "manual"

    def base_url(self, provider: str) -> str:
        """Where ``provider`` is served: at the root when it is the only one, else under ``/<provider>``."""
        if provider not in self.providers:
            raise NotAWanmock(f"{self.origin} does not serve {provider} (it serves {', '.join(self.providers)})")
        return self.origin if len(self.providers) == 1 else f"{self.origin}/{provider}"


def split_target(url: str) -> tuple[str, str]:
    """(origin, path) of a URL a user typed; the path without its trailing slash."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise NotAWanmock(f"{url!r} is not an http(s) URL such as http://127.0.0.1:8000")
    return f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")


def token_scoped(handler: Callable[[argparse.Namespace, TextIO, TextIO], int]) -> Callable[..., int]:
    """A command handler whose ``--admin-token`` is seen by this process's control-plane clients
    (through WANMOCK_ADMIN_TOKEN) only while it runs: the variable is restored afterwards, so a
    command run in-process (a test, a notebook) leaves no token behind for later servers or tools."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        before = os.environ.get(ADMIN_TOKEN_VARIABLE)
        try:
            return handler(args, out, err)
        finally:
            if before is None:
                os.environ.pop(ADMIN_TOKEN_VARIABLE, None)
            else:
                os.environ[ADMIN_TOKEN_VARIABLE] = before

    return run


def admin_headers(token: str | None = None) -> dict[str, str]:
    token = token if token is not None else os.environ.get(ADMIN_TOKEN_VARIABLE)
    return {ADMIN_TOKEN_HEADER: token} if token else {}


def read_health(
    origin: str, *, transport: httpx.BaseTransport | None = None, timeout: float = 10.0
) -> ServerInfo | None:
    """The server's self-description, or None when ``origin`` does not answer as a wanmock."""
    try:
        with httpx.Client(transport=transport, timeout=timeout, headers=admin_headers()) as http:
            answer = http.get(f"{origin}{HEALTH_PATH}")
        health = answer.json() if answer.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    if not isinstance(health, dict) or not isinstance(health.get("providers"), list):
        return None
    providers = tuple(str(p) for p in health["providers"])
    return ServerInfo(origin, providers, str(health.get("clock", "system")), health)


def identify(
    url: str,
    provider: str | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
    timeout: float = 10.0,
) -> ServerInfo:
    """The wanmock server at ``url`` (its origin, or a provider base URL under it). Raises
    :class:`NotAWanmock` with a message for the user when it is not one, when the URL's path
    names another provider than ``provider``, or when the server does not serve ``provider``."""
    origin, path = split_target(url)
    info = read_health(origin, transport=transport, timeout=timeout)
    if info is None:
        raise NotAWanmock(
            f"{url} is not a wanmock server (GET {origin}{HEALTH_PATH} did not answer as one); "
            "give the origin or a provider base URL that `wanmock serve` printed"
        )
    if path:
        named = path.strip("/").split("/")[0]
        if named not in info.providers:
            raise NotAWanmock(
                f"{url}: the server at {origin} serves {', '.join(info.providers)} but not {path!r}; "
                f"give {origin} or one of its provider base URLs"
            )
        if provider is not None and named != provider:
            raise NotAWanmock(f"{url} is the base URL of {named}, not of {provider}")
    if provider is not None:
        info.base_url(provider)  # raises when the server does not serve it
    return info


def find_wanmock(url: str, *, transport: httpx.BaseTransport | None = None) -> ServerInfo | None:
    """The wanmock server at ``url`` when it is one, else None (``url`` is then someone else's,
    e.g. a provider's own base URL)."""
    try:
        origin, _ = split_target(url)
    except NotAWanmock:
        return None
    return read_health(origin, transport=transport)


class Control:
    """Calls to a wanmock control plane at ``origin`` (through ``transport``, e.g. in-process).
    With ``test_id``, fault rules, the journal, tasks and reset are scoped to that test."""

    def __init__(
        self,
        origin: str,
        *,
        transport: httpx.BaseTransport | None = None,
        token: str | None = None,
        test_id: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.origin = origin.rstrip("/")
        self.test_id = test_id
        headers = admin_headers(token)
        if test_id is not None:
            headers[TEST_HEADER] = test_id
        self.http = httpx.Client(base_url=self.origin, transport=transport, timeout=timeout, headers=headers)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Control:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(
        self, method: str, path: str, *, body: Any = None, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """One control-plane call; its JSON answer. Raises ControlPlaneError on a 4xx/5xx."""
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        answer = self.http.request(method, f"{ADMIN_PREFIX}{path}", json=body, params=clean)
        if answer.status_code >= 400:
            raise ControlPlaneError(
                f"{method} {ADMIN_PREFIX}{path}: {answer.status_code} {answer.text}", answer.status_code
            )
        if not answer.content:
            return {}
        found: dict[str, Any] = answer.json()
        return found

    # -- the server --------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self.call("GET", "/health")

    def now(self) -> float:
        return float(self.call("GET", "/clock")["now"])

    def advance(self, seconds: float) -> float:
        """Advance the manual clock; the new time."""
        return float(self.call("POST", "/clock/advance", body={"seconds": seconds})["now"])

    # -- faults ------------------------------------------------------------------------------

    def fault(self, **rule: Any) -> dict[str, Any]:
        """Add a fault rule (scoped to this test when there is one); the stored rule."""
        if self.test_id is not None:
            rule = {**rule, "test_id": self.test_id}
        return self.call("POST", "/faults", body=rule)

    def faults(self) -> list[dict[str, Any]]:
        rules: list[dict[str, Any]] = self.call("GET", "/faults")["rules"]
        return rules

    def delete_fault(self, rule_id: str) -> None:
        self.call("DELETE", f"/faults/{rule_id}")

    def clear_faults(self) -> None:
        self.call("DELETE", "/faults")

    # -- tasks and the journal ---------------------------------------------------------------

    def journal(self, **filters: Any) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.call("GET", "/journal", params={"test": self.test_id, **filters})[
            "entries"
        ]
        return entries

    def tasks(self, **filters: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.call("GET", "/tasks", params={"test": self.test_id, **filters})["tasks"]
        return found

    def task(self, provider: str, task_id: str) -> dict[str, Any]:
        return self.call("GET", f"/tasks/{provider}/{task_id}")

    def transition(
        self, provider: str, task_id: str, action: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Force a task: ``advance``, ``succeed``, ``fail`` (body ``{"code", "message"}``), ``cancel``, ``expire``."""
        return self.call("POST", f"/tasks/{provider}/{task_id}/{action}", body=dict(body or {}))

    def reset(self) -> None:
        """Forget tasks, journal and rules (of this test, or of everyone without a test id)."""
        self.call("POST", "/reset", params={"test": self.test_id})
