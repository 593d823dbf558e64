"""DashScope (Model Studio native API): nested bodies, UPPER-case states, string error codes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

from wanmock.mockserver.errors import ApiError
from wanmock.mockserver.profiles.base import Answer, Context, Profile
from wanmock.mockserver.tasks import Task, VideoParams
from wanmock.schemas import Model

UTC8 = timezone(timedelta(hours=8))

# Canonical error kind -> DashScope code. Documented codes [D4][D5d] where one exists; the
# rest are wanmock's choice (README: "Where the documentation is silent").
CODES = {
    "invalid_request": "InvalidParameter",
    "invalid_json": "InvalidParameter",
    "unsupported_media_type": "InvalidParameter",
    "payload_too_large": "InvalidParameter",
    "missing_async_header": "InvalidParameter",
    "unauthorized": "InvalidApiKey",
    "insufficient_balance": "Arrearage",
    "rate_limited": "Throttling",
    "unknown_model": "InvalidParameter",
    "not_found": "NotFound",
    "method_not_allowed": "MethodNotAllowed",
    "forbidden": "AccessDenied",
    "conflict": "InvalidParameter",
    "server_error": "InternalError",
    "bad_gateway": "InternalError",
    "unavailable": "ServiceUnavailable",
    "timeout": "RequestTimeOut",
}
EMPTY_CODES = {"input": "BadRequest.EmptyInput", "model": "BadRequest.EmptyModel"}


def timestamp(seconds: float) -> str:
    """DashScope's UTC+8 ``YYYY-MM-DD HH:mm:ss.SSS``."""
    moment = datetime.fromtimestamp(seconds, tz=UTC8)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def nested_video_params(profile: Profile, model: Model, body: Mapping[str, Any]) -> VideoParams:
    """VideoParams of a DashScope-shaped body ({model, input, parameters}); APIYI shares it."""
    options = profile.options
    resolution = str(profile.field(model, body, "/parameters/resolution") or "1080P")
    ratio = profile.field(model, body, "/parameters/ratio") if model.kind != "i2v" else None
    duration = profile.field(model, body, "/parameters/duration")
    if model.kind == "videoedit" and (not duration or profile.name == "apiyi"):
        duration = options.videoedit_source_seconds  # 0 (or APIYI, where it has no effect): follow the input
    prompt = body.get("input", {}).get("prompt")
    return VideoParams(
        resolution=resolution,
        ratio=str(ratio or options.i2v_ratio),
        duration=float(duration or 5),
        audio=True,  # t2v and i2v add music/effects without audio input; edit keeps or makes sound
        prompt=prompt if isinstance(prompt, str) else None,
    )


class DashScope(Profile):
    name = "dashscope"
    STATUS: ClassVar[dict[str, int]] = {
        "insufficient_balance": 400,
        "unsupported_media_type": 400,
        "payload_too_large": 400,
        "unknown_model": 400,
        "conflict": 400,
    }

    def video_params(self, model: Model, body: Mapping[str, Any]) -> VideoParams:
        return nested_video_params(self, model, body)

    def submit_body(self, task: Task, ctx: Context) -> dict[str, Any]:
        return {
            "request_id": ctx.request_id,
            "output": {"task_id": task.id, "task_status": self.submit_word},
        }

    def poll_body(self, task: Task, state: str, ctx: Context) -> Answer:
        output: dict[str, Any] = {
            "task_id": task.id,
            "task_status": self.word(state),
            "submit_time": timestamp(task.created_at),
        }
        if state != "queued" and task.started_at <= task.finished_at:
            output["scheduled_time"] = timestamp(min(task.started_at, task.finished_at))
        body: dict[str, Any] = {"request_id": ctx.request_id, "output": output}
        if state in ("succeeded", "failed"):
            output["end_time"] = timestamp(task.finished_at)
        if state == "succeeded":
            if task.params.prompt is not None:
                output["orig_prompt"] = task.params.prompt
            output["video_url"] = ctx.result_url(task)
            body["usage"] = self.usage(task)
        elif state == "failed":
            output["code"] = task.error_code or "InvalidParameter"
            output["message"] = task.error_message or "The task failed."
        return 200, body

    def usage(self, task: Task) -> dict[str, Any]:
        seconds = task.params.duration
        out = int(seconds) if seconds.is_integer() else seconds
        usage: dict[str, Any] = {"video_count": 1, "SR": int(task.params.resolution[:-1])}
        if task.kind == "videoedit":
            source = self.options.videoedit_source_seconds
            usage |= {"input_video_duration": source, "output_video_duration": seconds}
            usage["duration"] = source + seconds
        else:
            usage |= {"duration": out, "input_video_duration": 0, "output_video_duration": out}
        if task.kind == "t2v":
            usage["ratio"] = task.params.ratio
        return usage

    def missing_task(self, task_id: str, ctx: Context) -> Answer:
        output = {"task_id": task_id, "task_status": self.word("unknown")}
        return 200, {"request_id": ctx.request_id, "output": output}

    def error_body(self, error: ApiError, ctx: Context) -> Answer:
        code = error.code or self.code_for(error)
        status = error.status
        message = error.detail
        if error.kind == "missing_async_header" and error.code is None:
            code, status = self.options.dashscope_sync_code, self.options.dashscope_sync_status
            message = self.documented_message("missing_async_header") or message
        documented = self.documented_message(code)
        if documented and error.kind == "invalid_request":
            message = f"{documented} {error.detail}"
        elif documented and not message:
            message = documented
        return status, {"request_id": ctx.request_id, "code": code, "message": message}

    @staticmethod
    def code_for(error: ApiError) -> str:
        if error.kind == "invalid_request" and error.issues:
            missing = {i.path for i in error.issues if i.keyword == "required"}
            for field, code in EMPTY_CODES.items():
                if f"$.{field}" in missing:
                    return code
            if all(i.keyword == "pattern" and i.path.endswith("url") for i in error.issues):
                return "InvalidURL"
        return CODES[error.kind]
