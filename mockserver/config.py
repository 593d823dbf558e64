"""Server configuration: which providers, which timing, which keys, and the knobs for
behaviour the providers do not document (each default is stated in the README)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from wanmock.mockserver.clock import Clock, SystemClock
from wanmock.schemas import catalog

TIMINGS = ("instant", "fast", "realistic")
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024  # a 20 MB image as base64 is about 27 MB


def all_providers() -> tuple[str, ...]:
    return tuple(sorted(catalog().providers))


@dataclass(frozen=True)
class RateLimit:
    """Per API key: at most ``rpm`` requests a minute and ``concurrency`` unfinished tasks."""

    rpm: int | None = None
    concurrency: int | None = None


@dataclass
class Options:
    """Behaviour where the providers' documentation is silent (NOT FOUND), made configurable."""

    # APIYI's creation-error envelope is not documented: "gateway" answers
    # {"error": {"message", "type", "code"}}, "upstream" the DashScope {request_id, code, message}.
    apiyi_error_shape: str = "gateway"
    # AI/ML API shows statusCode as the string "429" in its only example.
    aimlapi_status_code_as_string: bool = True
    # HTTP status for an unknown or expired AI/ML API generation_id (not documented).
    aimlapi_unknown_status: int = 404
    # Status and code DashScope answers when X-DashScope-Async is missing; None: error.json's
    # (403 AccessDenied, a live probe: shared/providers.md 7.1).
    dashscope_sync_status: int | None = None
    dashscope_sync_code: str | None = None
    # A wan2.7-i2v body without input.media: "refuse" answers 400 at submit (DashScope's page says
    # media is required); "fail_task" accepts it and the task fails (a live probe): x-conflicts.
    i2v_missing_media: str = "refuse"
    # APIYI's video-edit reference_image count: "1-5" (APIYI's page) or "0-4" (upstream): x-conflicts.
    apiyi_reference_images: str = "1-5"
    # Modellix team balance answered by GET /api/v1/team/balance (data.balance).
    modellix_balance: float = 100.0
    # Modellix task ids readable only with the key that created them (third-party source only).
    modellix_tasks_per_key: bool = False
    # How long a task stays queryable where the provider does not say (AI/ML API).
    default_retention_seconds: float = 86_400.0
    # Retention overrides by provider name (seconds), e.g. {"modellix": 604800}.
    retention_seconds: dict[str, float] = field(default_factory=dict)
    # Length of the output of a video edit with duration 0 (the input's length is unknown).
    videoedit_source_seconds: float = 5.0
    # Refuse what a provider accepts although its pages do not document it (schemas'
    # x-accepted-undocumented): by default the mock accepts it, as the provider does, and warns.
    refuse_undocumented: bool = False
    # Ratio of an image-to-video output (it follows the input image, which the mock cannot see).
    i2v_ratio: str = "16:9"

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"option {name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")


CHOICES = {
    "apiyi_error_shape": ("gateway", "upstream"),
    "i2v_missing_media": ("refuse", "fail_task"),
    "apiyi_reference_images": ("1-5", "0-4"),
}


@dataclass
class ServerConfig:
    """Every field can be set by ``wanmock serve --config FILE.toml`` or ``--set name=value``
    (settings.py); the comment above a field is its description in ``--list-settings`` and the docs."""

    # The providers served (all: each under /<provider>/, some also at the root).
    providers: tuple[str, ...] = field(default_factory=all_providers)
    # instant (done at the first poll), fast (1 s queued, 3 s running) or realistic (documented durations).
    timing: str = "fast"
    # Reproducible task ids, timings and result signatures.
    seed: int | None = None
    # The accepted API keys; none: any non-empty Bearer token except "invalid".
    keys: frozenset[str] | None = None
    # The request size cap in bytes (a 20 MB image as base64 fits the default).
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # system, or manual: time moves only through POST /__admin/clock/advance.
    clock: Clock = field(default_factory=SystemClock)
    rate_limits: dict[str, RateLimit] = field(default_factory=dict)
    options: Options = field(default_factory=Options)
    # Where rendered MP4s are cached; none: a temporary directory, made at the first render and
    # removed at shutdown (or when the app is collected, or Python exits, if its lifespan never ran).
    media_dir: Path | None = None
    # The size of the MP4 cache (least recently used renders are dropped).
    media_max_bytes: int = 512 * 1024 * 1024
    # A token every /__admin data or action call must send in X-Wanmock-Admin-Token (docs/SECURITY.md).
    admin_token: str | None = None
    # The origins this server answers as; /__admin checks Host against them (None in-process: no check).
    origins: tuple[str, ...] | None = None
    # Where clients reach the server (--public-url): result URLs point there.
    public_url: str | None = None
    # A separate port that alone serves /__admin (--admin-port).
    admin_port: int | None = None
    # Key -> account (a --keys file that groups keys): tasks are then seen only by their account.
    accounts: dict[str, str] = field(default_factory=dict)
    # Tasks readable, cancelable and listed only with a key of the account that created them.
    tasks_per_key: bool = False

    def __post_init__(self) -> None:
        known = all_providers()
        unknown = [p for p in self.providers if p not in known]
        if unknown or not self.providers:
            raise ValueError(f"unknown provider(s) {unknown}; known: {', '.join(known)}")
        if self.timing not in TIMINGS:
            raise ValueError(f"unknown timing {self.timing!r}; known: {', '.join(TIMINGS)}")
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes must be at least 1024")

    def key_accepted(self, token: str) -> bool:
        if self.keys is not None:
            return token in self.keys
        return bool(token) and token != "invalid"
