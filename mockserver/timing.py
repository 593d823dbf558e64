"""How long a task queues and runs, by timing profile (instant, fast, realistic)."""

from __future__ import annotations

import random

from wanmock.mockserver.tasks import VideoParams
from wanmock.schemas import Provider

FAST = (1.0, 3.0)  # queued, running: a few seconds end to end


def plan(timing: str, provider: Provider, kind: str, params: VideoParams, rng: random.Random) -> tuple[float, float]:
    """(queue seconds, run seconds) for a new task.

    realistic reads the provider's documented range for the kind from its manifest: the low
    end for 720P and 5 s or less, the high end for 1080P at 15 s, linear in between, with
    +/-5 % jitter from the seeded generator.
    """
    if timing == "instant":
        return 0.0, 0.0
    if timing == "fast":
        return FAST
    facts = provider.manifest["timing"]
    low, high = facts["run_seconds"][kind]
    by_length = min(max((params.duration - 5.0) / 10.0, 0.0), 1.0)
    by_resolution = 1.0 if params.resolution == "1080P" else 0.0
    share = 0.5 * by_length + 0.5 * by_resolution
    jitter = 1.0 + rng.uniform(-0.05, 0.05)
    return float(facts["queue_seconds"]), (low + share * (high - low)) * jitter
