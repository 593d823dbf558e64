"""What one mock server holds while it runs: its configuration, store, rules and served providers.

An ``AppState`` is built once by ``create_app`` (or ``create_replay_app``) and shared by the
request pipeline, the result-file host and the control plane (``app.state.wanmock``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from wanmock.mockserver.config import ServerConfig
from wanmock.mockserver.drift import Drift
from wanmock.mockserver.faults import FaultRuleSet
from wanmock.mockserver.media import MediaCache
from wanmock.mockserver.profiles import Profile
from wanmock.mockserver.ratelimit import RateLimiter
from wanmock.mockserver.results import ResultLinks
from wanmock.mockserver.routing import Router
from wanmock.mockserver.store import TaskStore


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

    def now(self) -> float:
        return self.config.clock.now()

    def request_id(self) -> str:
        return Profile.new_task_id(self.served[next(iter(self.served))].profile, self.rng)
