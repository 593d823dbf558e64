"""Normalised requests and task views: one vocabulary over all four providers.

A request says *what* video is wanted; a dialect (``wanmock.contracts.client.dialects``) turns it into one
provider's body. Fields left ``None`` are not sent, so each provider applies its own default.
Resolutions are written ``720P``/``1080P`` here; the AI/ML API dialect lower-cases them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["t2v", "i2v", "videoedit"]


@dataclass(frozen=True)
class TextToVideo:
    prompt: str
    negative_prompt: str | None = None
    audio_url: str | None = None
    resolution: str | None = None
    ratio: str | None = None
    duration: int | None = None
    prompt_extend: bool | None = None
    watermark: bool | None = None
    seed: int | None = None

    kind: Kind = field(default="t2v", init=False)


@dataclass(frozen=True)
class ImageToVideo:
    """One of the six media modes: first_frame [+ last_frame] [+ driving_audio], or
    first_clip [+ last_frame]."""

    first_frame: str | None = None
    first_clip: str | None = None
    last_frame: str | None = None
    driving_audio: str | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    resolution: str | None = None
    duration: int | None = None
    prompt_extend: bool | None = None
    watermark: bool | None = None
    seed: int | None = None

    kind: Kind = field(default="i2v", init=False)

    @property
    def mode(self) -> str:
        parts = [
            name
            for name in ("first_frame", "first_clip", "last_frame", "driving_audio")
            if getattr(self, name) is not None
        ]
        return "+".join(parts)


@dataclass(frozen=True)
class VideoEdit:
    video: str
    reference_images: tuple[str, ...] = ()
    prompt: str | None = None
    negative_prompt: str | None = None
    resolution: str | None = None
    ratio: str | None = None
    duration: int | None = None
    audio_setting: str | None = None
    prompt_extend: bool | None = None
    watermark: bool | None = None
    seed: int | None = None

    kind: Kind = field(default="videoedit", init=False)


VideoRequest = TextToVideo | ImageToVideo | VideoEdit


@dataclass(frozen=True)
class PreparedRequest:
    """What a client will send: method, path (relative to the provider's base URL), headers
    (without credentials) and the JSON body."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None = None
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskHandle:
    provider: str
    task_id: str
    kind: str
    request: VideoRequest | None = None


@dataclass(frozen=True)
class TaskStatus:
    """One poll's answer, normalised: canonical ``state`` plus the provider's own ``word``."""

    provider: str
    task_id: str
    state: str  # queued | running | succeeded | failed | canceled | unknown
    word: str
    result_url: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.state in ("succeeded", "failed", "canceled", "unknown")
