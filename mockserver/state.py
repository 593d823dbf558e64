"""What one mock server holds while it runs: its configuration, store, rules and served providers.

An ``AppState`` is built once by ``create_app`` (or ``create_replay_app``) and shared by the
request pipeline, the result-file host and the control plane (``app.state.wanmock``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from wanmock.mockserver.clock import StoredManualClock
from wanmock.mockserver.config import ServerConfig
from wanmock.mockserver.drift import Drift
from wanmock.mockserver.faults import FaultRuleSet
from wanmock.mockserver.media import MediaCache
from wanmock.mockserver.profiles import Profile
from wanmock.mockserver.profiles.base import uuid4_text
from wanmock.mockserver.ratelimit import RateLimiter
from wanmock.mockserver.results import ResultLinks
from wanmock.mockserver.routing import Router
from wanmock.mockserver.scrub import Fingerprint
from wanmock.mockserver.store import TaskStore
from wanmock.mockserver.storeio import StoreIO, StoreUnavailable


@dataclass
class Served:
    """One provider as served: its profile (shapes, words) and its router (paths)."""

    profile: Profile
    router: Router


@dataclass
class AppState:
    config: ServerConfig
    store: TaskStore
    faults: FaultRuleSet
    limiter: RateLimiter
    links: ResultLinks
    media: MediaCache
    rng: random.Random
    served: dict[str, Served] = field(default_factory=dict)
    drift: Drift = field(default_factory=Drift)
    about: dict[str, Any] = field(default_factory=dict)  # extra health fields (a replay's mode, cassette)
    # salted key fingerprints (the salt derived from the store's secret, so every worker agrees)
    fingerprint: Fingerprint = field(default_factory=Fingerprint)
    io: StoreIO = field(init=False)  # store calls off the event loop, with a deadline
    local_clock: bool = field(init=False)  # the clock is read here, not from a shared store

    def __post_init__(self) -> None:
        self.io = StoreIO(self.store)
        self.local_clock = not isinstance(self.config.clock, StoredManualClock)

    def owner_of(self, token: str) -> str:
        """Who owns the tasks a key creates: its account (a --keys file that groups keys) or the
        key's salted fingerprint."""
        account = self.config.accounts.get(token)
        return f"account:{account}" if account is not None else self.fingerprint(token)

    def now(self) -> float:
        return self.config.clock.now()

    async def anow(self) -> float:
        """The clock's now, read off the event loop when it lives in a shared store."""
        clock = self.config.clock
        if isinstance(clock, StoredManualClock):
            try:
                return await self.io.run(clock.now)
            except StoreUnavailable:  # the next store call fails too, and answers the 503
                return clock.last_known()
        return clock.now()

    def request_id(self) -> str:
        """A random version-4 UUID from the server's generator (as ``Profile.new_task_id`` draws)."""
        return uuid4_text(self.rng)
