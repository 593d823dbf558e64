"""DashScope (Model Studio native API): nested bodies, UPPER-case states, string error codes."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

from wanmock.mockserver.errors import ApiError
from wanmock.mockserver.profiles.base import Answer, Ask, Context, Profile
from wanmock.mockserver.results import UPLOADS_PREFIX
from wanmock.mockserver.tasks import EXPIRED, Task, VideoParams
from wanmock.schemas import Model

UTC8 = timezone(timedelta(hours=8))
NO_KEY = "missing Authorization header"  # the pipeline's detail when no key was sent
NO_ENDPOINT = "no such endpoint"  # the pipeline's detail when no route matched the path
MAX_PAGE_SIZE = 100
PAGE_DIGITS = 9  # page_no beyond this is refused, not converted (Python caps int() at 4300 digits)
LIST_WINDOW_SECONDS = 24 * 3600  # start_time and end_time at most 24 hours apart [D3]
REGION = "cn-beijing"
TERMINAL = ("succeeded", "failed", "canceled")

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
    "rate_limited": "Throttling.RateQuota",
    "unknown_model": "InvalidParameter",
    "not_found": "NotFound",
    "method_not_allowed": "MethodNotAllowed",
    "forbidden": "AccessDenied",
    "conflict": "UnsupportedOperation",  # cancel of a task that is not PENDING [D3]
    "server_error": "InternalError",
    "bad_gateway": "InternalError",
    "unavailable": "ServiceUnavailable",
    "timeout": "RequestTimeOut",
}
EMPTY_CODES = {"input": "BadRequest.EmptyInput", "model": "BadRequest.EmptyModel"}


def millis(seconds: float) -> int:
    return round(seconds * 1000)


def page_param(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > PAGE_DIGITS or int(raw) < 1:
        raise ApiError("invalid_request", f"{name} must be a positive integer, not {raw!r}")
    return int(raw)


def list_window(start: str | None, end: str | None) -> tuple[float | None, float | None]:
    """The [start, end] creation-time window of a task list, in epoch seconds: both bounds are
    YYYYMMDDhhmmss (UTC+8) at most 24 hours apart; one given, the other is 24 hours away."""
    first, last = list_time(start, "start_time"), list_time(end, "end_time")
    if first is not None and last is None:
        last = first + LIST_WINDOW_SECONDS
    elif last is not None and first is None:
        first = last - LIST_WINDOW_SECONDS
    if first is not None and last is not None and not 0 <= last - first <= LIST_WINDOW_SECONDS:
        raise ApiError("invalid_request", "end_time must be after start_time and at most 24 hours later")
    return first, last


def list_time(value: str | None, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        if len(value) != len("YYYYMMDDhhmmss"):
            raise ValueError(value)
        return datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=UTC8).timestamp()
    except ValueError as exc:
        raise ApiError("invalid_request", f"{name} must be YYYYMMDDhhmmss, not {value!r}") from exc


@functools.lru_cache(maxsize=4096)  # a task's instants are formatted on every poll: once is enough
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
        wrong_path = self.errors_doc.get("x-wrong-path")
        below = ctx.path[len(ctx.prefix) :]
        unrouted = error.kind == "not_found" and error.code is None and error.detail.startswith(NO_ENDPOINT)
        if unrouted and wrong_path and re.match(wrong_path["pattern"], below):
            body = {"request_id": ctx.request_id, "code": wrong_path["code"], "message": wrong_path["message"]}
            return int(wrong_path["status"]), body
        code = error.code or self.code_for(error)
        status = error.status
        message = error.detail
        codes = self.errors_doc.get("x-codes", {})
        if error.kind == "missing_async_header" and error.code is None:
            entry = codes["missing_async_header"]
            code = self.options.dashscope_sync_code or entry["code"]
            status = self.options.dashscope_sync_status or entry["status"]
            message = entry["message"]
        elif error.kind == "unauthorized" and error.code is None:
            entry = codes["InvalidApiKey"]
            message = entry["message_without_key"] if error.detail == NO_KEY else entry["message"]
        elif codes.get(code, {}).get("exact") and not error.verbatim:
            message = codes[code]["message"]  # the documented text, word for word
        else:
            documented = self.documented_message(code)
            if documented and error.kind == "invalid_request":
                message = f"{documented} {error.detail}"
            elif documented and not message:
                message = documented
        return status, {"request_id": ctx.request_id, "code": code, "message": message}

    # -- the task list and the SDK's upload policy [D3][D6] ------------------------------

    def task_list(self, tasks: Sequence[Task], query: Mapping[str, str], ctx: Context) -> Answer:
        page_no, page_size = page_param(query, "page_no", 1), page_param(query, "page_size", 10)
        if page_size > MAX_PAGE_SIZE:
            raise ApiError("invalid_request", f"page_size must be from 1 to {MAX_PAGE_SIZE}")
        start, end = list_window(query.get("start_time"), query.get("end_time"))
        rows = []
        for task in sorted(tasks, key=lambda t: (t.created_at, t.seq), reverse=True):
            state = task.state_at(ctx.now)
            if state == EXPIRED:
                continue
            word = self.word(state)
            wanted = (
                (not query.get("task_id") or query["task_id"] == task.id)
                and (not query.get("status") or query["status"] == word)
                and (not query.get("model_name") or query["model_name"] == task.model_id)
                and (not query.get("api_key_id") or query["api_key_id"] == (task.owner or "0"))
                and (not query.get("region") or query["region"] == REGION)
                and (start is None or start <= task.created_at)
                and (end is None or task.created_at <= end)
            )
            if wanted:
                rows.append(self.list_item(task, state))
        total = len(rows)
        body = {
            "request_id": ctx.request_id,
            "total": total,
            "total_page": math.ceil(total / page_size),
            "page_no": page_no,
            "page_size": page_size,
            "data": rows[(page_no - 1) * page_size : page_no * page_size],
        }
        return 200, body

    def list_item(self, task: Task, state: str) -> dict[str, Any]:
        owner = task.owner or "0"
        digits = str(int(hashlib.sha256(owner.encode()).hexdigest(), 16))[:16]
        started = state not in ("queued",) and task.started_at <= task.finished_at
        return {
            "task_id": task.id,
            "status": self.word(state),
            "model_name": task.model_id,
            "gmt_create": millis(task.created_at),
            "start_time": millis(task.started_at) if started else None,
            "end_time": millis(task.finished_at) if state in TERMINAL else None,
            "region": REGION,
            "api_key_id": owner,
            "caller_uid": digits,
            "caller_parent_id": digits,
            "request_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"wanmock:{task.id}")),
            "user_api_unique_key": f"apikey:v1:{owner}",
        }

    def serve(self, ask: Ask) -> Answer:
        if ask.endpoint != "upload_policy":
            return super().serve(ask)
        if ask.query.get("action") != "getPolicy":
            raise ApiError("invalid_request", "action must be getPolicy")
        model = ask.query.get("model") or "wan2.7"
        digest = hashlib.sha256(f"{ask.ctx.request_id}/{model}".encode()).hexdigest()
        policy = base64.b64encode(json.dumps({"conditions": [["starts-with", "$key", digest[:16]]]}).encode())
        data = {
            "policy": policy.decode(),
            "signature": base64.b64encode(hashlib.sha1(policy).digest()).decode(),
            "upload_dir": f"dashscope-instant/{digest[:32]}",
            "upload_host": f"{ask.ctx.base_url}{UPLOADS_PREFIX}/{self.name}",
            "expire_in_seconds": 300,
            "max_file_size_mb": 100,
            "capacity_limit_mb": 999999999,
            "oss_access_key_id": "wanmock-access-key-id",
            "x_oss_object_acl": "private",
            "x_oss_forbid_overwrite": "true",
        }
        return 200, {"request_id": ask.ctx.request_id, "data": data}

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
