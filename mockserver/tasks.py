"""Tasks and their lifecycle: pure data and arithmetic on an injected clock, no I/O.

A task's state is never stored; it is computed from three instants and a final state:

    created_at ── queued ──> started_at ── running ──> finished_at ── final state (sticky)

Forced transitions (the control plane) move those instants to "now"; they never rewrite the
past, so a state a client has seen stays seen, and terminal states are sticky. A task expires
(the provider then answers as it does for an unknown id) ``retention_seconds`` after it was
created, or when the control plane expires it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from wanmock.schemas import TERMINAL_STATES

EXPIRED = "expired"


class TransitionError(ValueError):
    """A forced transition that the lifecycle does not allow (e.g. failing a finished task)."""


@dataclass(slots=True)
class VideoParams:
    """What the result must look like, normalised from any provider's request. Never changed
    once made (``dataclasses.replace`` makes another); not frozen, as a frozen dataclass costs
    every submit and every task read twice the time to build."""

    resolution: str  # "720P" | "1080P"
    ratio: str  # "16:9" | "9:16" | "1:1" | "4:3" | "3:4"
    duration: float  # seconds of output video
    audio: bool  # the provider would produce a sound track
    prompt: str | None = None


@dataclass(slots=True, eq=False)
class Task:
    id: str
    provider: str
    kind: str
    model_id: str
    params: VideoParams
    created_at: float
    started_at: float
    finished_at: float
    final_state: str = "succeeded"  # succeeded | failed | canceled
    error_code: str | None = None
    error_message: str | None = None
    expired_at: float | None = None
    retention_seconds: float | None = None
    test_id: str | None = None
    owner: str = ""  # fingerprint of the API key that created the task
    request: dict[str, Any] = field(default_factory=dict)  # read it with request_body()
    seq: int = 0  # creation order, for listing
    # The request as JSON text, when a store read the task back (decoded only when asked for:
    # a poll never needs it). Set, it stands for ``request``.
    request_text: str = ""
    # Or the raw request body and the credentials its request presented (NUL-joined, as
    # bodies.join_flat keeps strings), kept by the memory store (never written anywhere) and
    # made into the record only when asked for.
    request_raw: tuple[bytes, str | tuple[str, ...]] | None = None

    def __eq__(self, other: object) -> bool:  # the request compared as read, however it is held
        return isinstance(other, Task) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def request_body(self) -> dict[str, Any]:
        """The request the task was created from (bounded and scrubbed when it was recorded)."""
        if self.request:
            return self.request
        if self.request_text:
            decoded: dict[str, Any] = json.loads(self.request_text)
            return decoded
        if self.request_raw is not None:
            from wanmock.mockserver.bodies import request_record

            record: dict[str, Any] = request_record(*self.request_raw)
            return record
        return {}

    # -- reading --------------------------------------------------------------------------

    def state_at(self, now: float) -> str:
        """The canonical state at ``now``, or ``"expired"``."""
        if self.is_expired(now):
            return EXPIRED
        if now >= self.finished_at:
            return self.final_state
        if now >= self.started_at:
            return "running"
        return "queued"

    def is_expired(self, now: float) -> bool:
        if self.expired_at is not None and now >= self.expired_at:
            return True
        return self.retention_seconds is not None and now >= self.created_at + self.retention_seconds

    def is_terminal(self, now: float) -> bool:
        return self.state_at(now) in TERMINAL_STATES | {EXPIRED}

    # -- forced transitions ---------------------------------------------------------------

    def advance(self, now: float) -> str:
        """Move to the next state now: queued -> running, running -> its final state."""
        state = self.state_at(now)
        if state == "queued":
            run = self.finished_at - self.started_at
            self.started_at, self.finished_at = now, now + run
        elif state == "running":
            self.finished_at = now
        else:
            raise TransitionError(f"task {self.id} is {state}; only queued or running tasks advance")
        return self.state_at(now)

    def finish(self, now: float, state: str, code: str | None = None, message: str | None = None) -> None:
        """End the task now in ``state`` (succeeded, failed or canceled)."""
        if state not in ("succeeded", "failed", "canceled"):
            raise TransitionError(f"cannot finish a task as {state!r}")
        current = self.state_at(now)
        if current in TERMINAL_STATES | {EXPIRED}:
            raise TransitionError(f"task {self.id} is already {current}; terminal states are sticky")
        self.started_at = min(self.started_at, now)
        self.finished_at = now
        self.final_state = state
        self.error_code, self.error_message = (code, message) if state == "failed" else (None, None)

    def expire(self, now: float) -> None:
        self.expired_at = now if self.expired_at is None else min(self.expired_at, now)

    # -- persistence ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (it shares the request object: serialize it or copy it)."""
        p = self.params
        return {
            "id": self.id,
            "provider": self.provider,
            "kind": self.kind,
            "model_id": self.model_id,
            "params": {
                "resolution": p.resolution,
                "ratio": p.ratio,
                "duration": p.duration,
                "audio": p.audio,
                "prompt": p.prompt,
            },
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "final_state": self.final_state,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "expired_at": self.expired_at,
            "retention_seconds": self.retention_seconds,
            "test_id": self.test_id,
            "owner": self.owner,
            "request": self.request_body(),
            "seq": self.seq,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        values = dict(data)
        values["params"] = VideoParams(**values["params"])
        return cls(**values)
