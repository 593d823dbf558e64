"""Modellix: flat bodies, the model in the path, a {code, message, data} envelope."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from wanmock.mockserver.errors import ApiError
from wanmock.mockserver.profiles.base import Answer, Ask, Context, Profile, describe, uuid4_hex
from wanmock.mockserver.results import output_size
from wanmock.mockserver.tasks import Task, VideoParams
from wanmock.schemas import Issue, Model

# Canonical error kind -> the "<Category>" of Modellix's "<Category>: <detail>" messages.
# Documented categories [M6] where one exists; the rest follow the same pattern.
CATEGORIES = {
    "invalid_request": "Invalid parameters",
    "invalid_json": "Invalid format",
    "unsupported_media_type": "Invalid format",
    "payload_too_large": "Invalid format",
    "missing_async_header": "Invalid parameters",
    "unauthorized": "Authentication failed",
    "forbidden": "Authentication failed",
    "insufficient_balance": "Insufficient balance",
    "not_found": "Not found",
    "unknown_model": "Not found",
    "method_not_allowed": "Method not allowed",
    "conflict": "Invalid parameters",
    "rate_limited": "Rate limit exceeded",
    "server_error": "Internal error",
    "bad_gateway": "Internal error",
    "unavailable": "Service unavailable",
    "timeout": "Service unavailable",
}


MODEL_TYPES = {"t2v": "text-to-video", "i2v": "image-to-video", "videoedit": "video-to-video"}


def issue_text(issue: Issue) -> str:
    """An issue in Modellix's words: ``parameter 'prompt' is required`` for a missing field, the
    documented example [M6]; ``<path>: <reason>`` otherwise."""
    if issue.keyword == "required":
        return f"parameter '{issue.path.removeprefix('$.')}' is required"
    return str(issue)


@functools.lru_cache(maxsize=4096)  # a task's instants are formatted on every poll: once is enough
def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Modellix(Profile):
    name = "modellix"

    def new_task_id(self, rng: Any) -> str:
        return "task-" + uuid4_hex(rng)[:20]  # the first 20 hex digits of a UUID, as Modellix shows

    def video_params(self, model: Model, body: Mapping[str, Any]) -> VideoParams:
        duration = self.field(model, body, "/duration")
        if model.kind == "videoedit" and not duration:
            duration = self.options.videoedit_source_seconds  # 0 keeps the input's length
        ratio = self.field(model, body, "/ratio") if model.kind != "i2v" else None
        prompt = body.get("prompt")
        return VideoParams(
            resolution=str(self.field(model, body, "/resolution") or "1080P"),
            ratio=str(ratio or self.options.i2v_ratio),
            duration=float(duration or 5),
            audio=True,
            prompt=prompt if isinstance(prompt, str) else None,
        )

    @staticmethod
    def model_name(task: Task) -> str:
        return task.model_id.rsplit("/", 1)[-1]

    def envelope(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"code": 0, "message": "success", "data": data}

    def submit_body(self, task: Task, ctx: Context) -> dict[str, Any]:
        poll_path = self.provider.endpoints["poll"].paths[0].replace("{task_id}", task.id)
        return self.envelope(
            {
                "status": self.submit_word,
                "task_id": task.id,
                "model_id": self.model_name(task),
                "get_result": {"method": "GET", "url": f"{ctx.base_url}{ctx.prefix}{poll_path}"},
            }
        )

    def poll_body(self, task: Task, state: str, ctx: Context) -> Answer:
        if state == "canceled":  # Modellix documents no canceled state; the control plane's
            state = "failed"  # cancel shows as failed, the nearest documented word
        data: dict[str, Any] = {
            "status": self.word(state),
            "task_id": task.id,
            "model_id": self.model_name(task),
        }
        if state == "succeeded":
            width, height = ctx_size(task)
            data["duration"] = round((task.finished_at - task.created_at) * 1000)
            data["result"] = {
                "resources": [
                    {
                        "url": ctx.result_url(task),
                        "type": "video",
                        "format": "mp4",
                        "width": width,
                        "height": height,
                        "role": "primary",
                    }
                ],
                "metadata": {"video_count": 1, "request_id": ctx.request_id},
                "extensions": {
                    "submit_time": iso(task.created_at),
                    "end_time": iso(task.finished_at),
                },
            }
            data["result_expires_at"] = round((task.created_at + self.retention_seconds) * 1000)
        return 200, self.envelope(data)

    def missing_task(self, task_id: str, ctx: Context) -> Answer:
        return self.error_body(ApiError("not_found", "Task ID not found"), ctx)

    def serve(self, ask: Ask) -> Answer:
        """The account endpoints the official CLI calls (shared/providers.md 7.2)."""
        if ask.endpoint == "apikey_validate":
            return 200, self.envelope({"is_valid": ask.key_valid})
        if ask.endpoint == "team_balance":
            return 200, self.envelope({"balance": self.options.modellix_balance})
        if ask.endpoint == "models":
            models = [
                {
                    "slug": model_id,
                    "type": MODEL_TYPES[model.kind],
                    "provider": model_id.partition("/")[0],
                    "description": self.provider.documents[model.schema_file]["title"],
                }
                for model in self.provider.models.values()
                for model_id in model.ids
            ]
            return 200, {**self.envelope({"models": models}), "models": models}
        return super().serve(ask)

    def error_body(self, error: ApiError, ctx: Context) -> Answer:
        detail = error.detail
        if error.kind == "invalid_json":
            detail = "invalid JSON format"  # the documented text [M6]
        elif error.kind == "invalid_request" and error.issues:
            detail = describe(error.issues, issue_text)
        return error.status, {
            "code": error.status,
            "message": f"{CATEGORIES[error.kind]}: {detail}",
        }


def ctx_size(task: Task) -> tuple[int, int]:
    return output_size(task.params.resolution, task.params.ratio)
