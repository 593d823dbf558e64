"""APIYI: DashScope bodies on create, its own flat shape on GET /v1/tasks/{id}."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from wanmock.mockserver.errors import ApiError
from wanmock.mockserver.profiles.base import Answer, Context, Profile
from wanmock.mockserver.profiles.dashscope import CODES, nested_video_params
from wanmock.mockserver.tasks import Task, VideoParams
from wanmock.schemas import Model

# Coarse progress: the upstream reports only 0 / 10 / 30 / 100 [Y1][Y5].
PROGRESS = {"queued": 0, "running": 30, "succeeded": 100, "failed": 100, "canceled": 100}


class Apiyi(Profile):
    name = "apiyi"
    STATUS: ClassVar[dict[str, int]] = {"insufficient_balance": 429}

    def video_params(self, model: Model, body: Mapping[str, Any]) -> VideoParams:
        return nested_video_params(self, model, body)

    def submit_body(self, task: Task, ctx: Context) -> dict[str, Any]:
        return {
            "output": {"task_id": task.id, "task_status": self.submit_word},
            "request_id": ctx.request_id,
        }

    def poll_body(self, task: Task, state: str, ctx: Context) -> Answer:
        error_code, error_message = task.error_code, task.error_message
        if state == "canceled":  # APIYI documents no canceled word: a canceled task shows as failed
            state, error_code, error_message = "failed", "Canceled", "The task was canceled."
        body: dict[str, Any] = {
            "status": self.word(state),
            "progress": PROGRESS[state],
            "task_id": task.id,
        }
        if state == "succeeded":
            body["result_url"] = ctx.result_url(task)
        elif state == "failed":
            code = error_code or "InvalidParameter"
            reason = f"[{code}] {error_message or 'The task failed.'}"
            body["error"] = {"message": reason}
            body["fail_reason"] = reason
        return 200, body

    def missing_task(self, task_id: str, ctx: Context) -> Answer:
        return 200, {"status": self.word("unknown"), "task_id": task_id}

    def error_body(self, error: ApiError, ctx: Context) -> Answer:
        code = error.code or CODES[error.kind]
        message = error.detail
        if error.kind == "missing_async_header":
            message = self.documented_message("missing_async_header") or message
        if self.options.apiyi_error_shape == "upstream":
            return error.status, {"request_id": ctx.request_id, "code": code, "message": message}
        kind = "parse_request_failed" if error.kind in ("invalid_json", "unsupported_media_type") else "task_error"
        return error.status, {"error": {"message": message, "type": kind, "code": code}}
