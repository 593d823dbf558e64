"""Dialects: normalised requests in, provider requests out, provider answers interpreted.

Sans-IO: nothing here touches the network. Paths, headers, model ids, status words and where
the task id, status and result URL live are read from the catalog; a dialect only knows its
provider's field names (``FIELDS``) and error envelope. Every body is validated against the
provider's captured request schema before it is sent, so a request the provider cannot take
fails here, before any network call (and before any cost).
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import fields
from datetime import UTC
from typing import Any, ClassVar

from wanmock.contracts.client import errors
from wanmock.contracts.client.models import (
    ImageToVideo,
    PreparedRequest,
    TaskHandle,
    TaskStatus,
    VideoEdit,
    VideoRequest,
)
from wanmock.schemas import Issue, Provider, catalog, resolve_pointer

MEDIA = ("first_frame", "first_clip", "last_frame", "driving_audio")
MEDIA_FIELDS = (*MEDIA, "video", "reference_images")  # carried in input.media where a body has one
BALANCE_WORDS = re.compile(r"balance|credit|quota|arrear|top up", re.I)


def _set(body: dict[str, Any], pointer: str, value: Any) -> None:
    node = body
    parts = pointer.lstrip("/").split("/")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _get(body: Any, pointer: str) -> Any:
    try:
        return resolve_pointer(body, pointer)
    except (KeyError, IndexError, ValueError, TypeError):
        return None


class Dialect:
    name: ClassVar[str]
    # kind -> normalised field -> JSON pointer in the provider's body
    FIELDS: ClassVar[dict[str, dict[str, str]]] = {}
    # Error codes that mean "rate limited" (by prefix) or "refused key", besides 429 and 401.
    RATE_LIMIT_CODE_PREFIXES: ClassVar[tuple[str, ...]] = ()
    AUTH_CODES: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.provider: Provider = catalog().provider(self.name)
        self.balance = self.provider.error("insufficient_balance")  # its manifest's documented answer

    # -- requests -------------------------------------------------------------------------

    def body(self, request: VideoRequest) -> dict[str, Any]:
        """The provider's JSON body for ``request`` (no validation)."""
        mapping = self.FIELDS[request.kind]
        body: dict[str, Any] = {}
        if not self.provider.model_in_path:
            body["model"] = self.provider.models[request.kind].id
        for f in fields(request):
            value = getattr(request, f.name)
            if f.name == "kind" or value is None or value == ():
                continue
            if f.name in MEDIA_FIELDS and "media" in mapping:
                continue
            if f.name not in mapping:
                raise errors.UnsupportedRequest(
                    f"{self.name} cannot express {f.name}={value!r} for {request.kind}: "
                    f"its {request.kind} body has no such field",
                    provider=self.name,
                )
            _set(body, mapping[f.name], self.convert(f.name, value))
        if "media" in mapping:
            media = self.media(request)
            if media:
                _set(body, mapping["media"], media)
        return body

    def convert(self, name: str, value: Any) -> Any:
        return list(value) if isinstance(value, tuple) else value

    def media(self, request: VideoRequest) -> list[dict[str, str]]:
        if isinstance(request, ImageToVideo):
            return [{"type": m, "url": getattr(request, m)} for m in MEDIA if getattr(request, m) is not None]
        if isinstance(request, VideoEdit):
            return [{"type": "video", "url": request.video}] + [
                {"type": "reference_image", "url": url} for url in request.reference_images
            ]
        return []

    def prepare_submit(self, request: VideoRequest, *, validate: bool = True) -> PreparedRequest:
        if request.kind not in self.provider.models:
            offered = ", ".join(self.provider.models)
            raise errors.UnsupportedRequest(
                f"{self.name} does not offer {request.kind} (it offers {offered})", provider=self.name
            )
        body = self.body(request)
        if validate:
            issues = catalog().validate(self.name, "submit", body, kind=request.kind)
            if issues:
                raise unsupported(self.name, issues)
        return self.prepare_body(request.kind, body)

    def prepare_body(self, kind: str, body: dict[str, Any]) -> PreparedRequest:
        endpoint = self.provider.endpoints["submit"]
        path = endpoint.paths[0].replace("{model}", self.provider.models[kind].id)
        headers = {"Content-Type": endpoint.content_type or "application/json", **endpoint.headers}
        return PreparedRequest("POST", path, headers, body)

    def prepare_poll(self, task_id: str) -> PreparedRequest:
        endpoint = self.provider.endpoints["poll"]
        path = endpoint.paths[0].replace("{task_id}", task_id)
        params = {k: v.replace("{task_id}", task_id) for k, v in endpoint.query.items()}
        return PreparedRequest("GET", path, {}, None, params)

    # -- answers --------------------------------------------------------------------------

    def parse_submit(self, request_kind: str, status: int, headers: Mapping[str, str], body: Any) -> TaskHandle:
        if status != 200:
            raise self.error_from(status, headers, body)
        task_id = _get(body, self.provider.task_fields["id_in_submit"])
        if not isinstance(task_id, str) or not task_id:
            raise errors.TransportError(
                f"{self.name} answered 200 without a task id at {self.provider.task_fields['id_in_submit']}: "
                "the outcome is unknown",
                provider=self.name,
                outcome_unknown=True,
            )
        return TaskHandle(self.name, task_id, request_kind)

    def parse_poll(self, task_id: str, status: int, headers: Mapping[str, str], body: Any) -> TaskStatus:
        if status != 200:
            error = self.error_from(status, headers, body)
            if isinstance(error, errors.NotFoundError):
                raise errors.TaskExpiredError(
                    f"{self.name} task {task_id} is unknown or expired ({error})", provider=self.name, task_id=task_id
                )
            raise error
        word = _get(body, self.provider.task_fields["status_in_poll"])
        state = self.provider.state_for_word(word) if isinstance(word, str) else None
        if state is None:
            raise errors.ApiError(
                f"{self.name} answered an undocumented status {word!r}", provider=self.name, status=status, body=body
            )
        code, message = self.failure(body) if state.canonical == "failed" else (None, None)
        url = _get(body, self.provider.task_fields["result_url_in_poll"]) if state.canonical == "succeeded" else None
        return TaskStatus(
            self.name,
            task_id,
            state.canonical,
            state.word,
            result_url=url if isinstance(url, str) else None,
            error_code=code,
            error_message=message,
            raw=body if isinstance(body, dict) else {},
        )

    def failure(self, body: Any) -> tuple[str | None, str | None]:
        """The provider's error code and message of a failed task."""
        return None, None

    def envelope(self, body: Any) -> tuple[str | None, str]:
        """(code, message) of an error envelope."""
        if isinstance(body, dict):
            return (str(body["code"]) if "code" in body else None), str(body.get("message", body))
        return None, str(body)[:500]

    def error_from(self, status: int, headers: Mapping[str, str], body: Any) -> errors.ApiError:
        code, message = self.envelope(body)
        text = f"{self.name} answered {status}" + (f" {code}" if code else "") + f": {message}"
        kwargs: dict[str, Any] = {"provider": self.name, "status": status, "code": code, "body": body}
        if self.is_balance(status, code, message):
            return errors.InsufficientBalanceError(text, **kwargs)
        if status == 429 or (code is not None and code.startswith(self.RATE_LIMIT_CODE_PREFIXES)):
            return errors.RateLimitedError(text, retry_after=retry_after(headers), **kwargs)
        if status == 401 or (code is not None and code in self.AUTH_CODES):
            return errors.AuthenticationError(text, **kwargs)
        if status == 404:
            return errors.NotFoundError(text, **kwargs)
        if status >= 500:
            return errors.ServerError(text, **kwargs)
        return errors.InvalidRequestError(text, **kwargs)

    def is_balance(self, status: int, code: str | None, message: str) -> bool:
        """The manifest's ``errors.insufficient_balance``: its code where it has one, else its status."""
        return self.balance is not None and self.balance.matches(status, code)


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: a finite non-negative number, or an HTTP
    date (seconds from ``now``, a POSIX time, default the system clock). Anything else — ``inf``,
    ``nan``, a negative number, garbage — is no advice (None); the caller caps what it waits."""
    value = headers.get("retry-after") or headers.get("Retry-After")
    if value is None or len(value) > 64:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        reference = time.time() if now is None else now
        return max(0.0, when.timestamp() - reference)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def unsupported(provider: str, issues: list[Issue]) -> errors.UnsupportedRequest:
    detail = "; ".join(f"{i.path}: {i.message}" for i in issues)
    error = errors.UnsupportedRequest(f"{provider} would reject this request: {detail}", provider=provider)
    error.issues = issues  # type: ignore[attr-defined]
    return error


class Modellix(Dialect):
    name = "modellix"
    COMMON: ClassVar[dict[str, str]] = {
        k: f"/{k}" for k in ("prompt", "negative_prompt", "resolution", "duration", "prompt_extend", "seed")
    }
    FIELDS: ClassVar[dict[str, dict[str, str]]] = {
        "t2v": {**COMMON, "audio_url": "/audio_url", "ratio": "/ratio"},
        "i2v": {**COMMON, **{m: f"/{m}" for m in MEDIA}},
        "videoedit": {
            **COMMON,
            "video": "/video_url",
            "reference_images": "/reference_images",
            "ratio": "/ratio",
            "audio_setting": "/audio_setting",
        },
    }


class AimlApi(Dialect):
    name = "aimlapi"
    FIELDS: ClassVar[dict[str, dict[str, str]]] = {
        "t2v": {
            **{k: f"/{k}" for k in ("prompt", "negative_prompt", "audio_url", "resolution", "duration", "seed")},
            "ratio": "/aspect_ratio",
            "prompt_extend": "/enhance_prompt",
        },
        "i2v": {
            **{k: f"/{k}" for k in ("prompt", "negative_prompt", "resolution", "duration", "seed", "watermark")},
            "first_frame": "/image_url",
            "driving_audio": "/audio_url",
            "prompt_extend": "/enhance_prompt",
        },
    }

    def convert(self, name: str, value: Any) -> Any:
        return value.lower() if name == "resolution" and isinstance(value, str) else super().convert(name, value)

    def envelope(self, body: Any) -> tuple[str | None, str]:
        if isinstance(body, dict):
            return None, str(body.get("message", body))
        return None, str(body)[:500]

    def failure(self, body: Any) -> tuple[str | None, str | None]:
        return _get(body, "/error/name"), _get(body, "/error/message")


class DashScope(Dialect):
    name = "dashscope"
    RATE_LIMIT_CODE_PREFIXES = ("Throttling",)  # Throttling.RateQuota, Throttling.AllocationQuota [D4]
    AUTH_CODES = ("InvalidApiKey",)  # [D1][D4]
    COMMON: ClassVar[dict[str, str]] = {
        "prompt": "/input/prompt",
        "negative_prompt": "/input/negative_prompt",
        **{k: f"/parameters/{k}" for k in ("resolution", "duration", "prompt_extend", "watermark", "seed")},
    }
    FIELDS: ClassVar[dict[str, dict[str, str]]] = {
        "t2v": {**COMMON, "audio_url": "/input/audio_url", "ratio": "/parameters/ratio"},
        "i2v": {**COMMON, "media": "/input/media"},
        "videoedit": {
            **COMMON,
            "media": "/input/media",
            "ratio": "/parameters/ratio",
            "audio_setting": "/parameters/audio_setting",
        },
    }

    def failure(self, body: Any) -> tuple[str | None, str | None]:
        return _get(body, "/output/code"), _get(body, "/output/message")


class Apiyi(DashScope):
    name = "apiyi"
    FIELDS: ClassVar[dict[str, dict[str, str]]] = {
        "t2v": {k: v for k, v in DashScope.FIELDS["t2v"].items() if k != "audio_url"},
        "i2v": DashScope.FIELDS["i2v"],
        "videoedit": {k: v for k, v in DashScope.FIELDS["videoedit"].items() if k not in ("ratio", "audio_setting")},
    }

    def envelope(self, body: Any) -> tuple[str | None, str]:
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            inner = body["error"]
            code = inner.get("code")
            return (str(code) if code is not None else inner.get("type")), str(inner.get("message", inner))
        return super().envelope(body)

    def failure(self, body: Any) -> tuple[str | None, str | None]:
        message = _get(body, "/error/message") or _get(body, "/fail_reason")
        found = re.match(r"^\[([^\]]+)\]", message) if isinstance(message, str) else None
        return (found.group(1) if found else None), message

    def is_balance(self, status: int, code: str | None, message: str) -> bool:
        # APIYI answers the same status (429) for rate limits and for an empty balance [Y2][Y3][Y4]
        # and documents no code for the latter: its manifest's code, else words of the message.
        if super().is_balance(status, code, message):
            return True
        return self.balance is not None and status == self.balance.status and bool(BALANCE_WORDS.search(message))


DIALECTS: dict[str, type[Dialect]] = {d.name: d for d in (Modellix, AimlApi, Apiyi, DashScope)}


def dialect_for(provider: str) -> Dialect:
    """The dialect of ``provider``: a shipped one, or the one its manifest's ``implementation`` names."""
    found: type[Dialect] | None = DIALECTS.get(provider)
    if found is None and provider in catalog().providers:
        found = catalog().provider(provider).implementation("dialect")
    if found is None:
        raise errors.WanError(f"unknown provider {provider!r}; known: {', '.join(catalog().providers)}")
    return found()


def describe_body(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False)[:2000]
