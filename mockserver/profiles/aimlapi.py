"""AI/ML API: one flat endpoint, the model in the body, lower-case resolutions."""

from __future__ import annotations

import random
import string
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from wanmock.mockserver.errors import ApiError
from wanmock.mockserver.profiles.base import Answer, Context, Profile
from wanmock.mockserver.tasks import Task, VideoParams
from wanmock.schemas import Model

ID_ALPHABET = string.ascii_letters + string.digits + "_-"  # ids look like "QC4qjlUKt8ZedNi7r09LM"


class AimlApi(Profile):
    name = "aimlapi"
    STATUS: ClassVar[dict[str, int]] = {"insufficient_balance": 403}

    def new_task_id(self, rng: random.Random) -> str:
        return "".join(rng.choice(ID_ALPHABET) for _ in range(21))

    def video_params(self, model: Model, body: Mapping[str, Any]) -> VideoParams:
        duration = self.field(model, body, "/duration")
        ratio = self.field(model, body, "/aspect_ratio") if model.kind == "t2v" else None
        audio = bool(body.get("audio_url")) or model.kind == "i2v" or bool(self.field(model, body, "/generate_audio"))
        prompt = body.get("prompt")
        return VideoParams(
            resolution=str(self.field(model, body, "/resolution") or "1080p").upper(),
            ratio=str(ratio or self.options.i2v_ratio),
            duration=float(duration or 10),
            audio=audio,
            prompt=prompt if isinstance(prompt, str) else None,
        )

    def submit_body(self, task: Task, ctx: Context) -> dict[str, Any]:
        return {"id": task.id, "status": self.submit_word, "meta": {"usage": self.usage(task)}}

    def usage(self, task: Task) -> dict[str, Any]:
        """meta.usage: the price of the video at the rate of submit-response.json's ``x-usage``."""
        rate = self.provider.documents["submit-response.json"]["x-usage"]
        usd = round(task.params.duration * rate["usd_per_second"], 4)
        return {"credits_used": round(usd * rate["credits_per_usd"]), "usd_spent": usd}

    def poll_body(self, task: Task, state: str, ctx: Context) -> Answer:
        if state == "canceled":  # AI/ML API documents no canceled state: shown as error
            state = "failed"
        body: dict[str, Any] = {"id": task.id, "status": self.word(state)}
        body["meta"] = {"usage": {"credits_used": self.usage(task)["credits_used"]}}
        if state == "succeeded":
            body["video"] = {"url": ctx.result_url(task)}
        elif state == "failed":
            body["error"] = {
                "name": task.error_code or "GenerationError",
                "message": task.error_message or "The generation failed.",
            }
        return 200, body

    def missing_task(self, task_id: str, ctx: Context) -> Answer:
        error = ApiError("not_found", "Resource not found", status=self.options.aimlapi_unknown_status)
        return self.error_body(error, ctx)

    def error_body(self, error: ApiError, ctx: Context) -> Answer:
        documented = self.documented_message(error.status)
        if error.verbatim:
            message = error.detail
        elif error.kind in ("invalid_request", "invalid_json"):
            message = f"{documented or 'Body validation error!'} {error.detail}"
        else:
            message = documented or error.detail
        status: int | str = str(error.status) if self.options.aimlapi_status_code_as_string else error.status
        now = datetime.fromtimestamp(ctx.now, tz=UTC)
        return error.status, {
            "message": message,
            "path": ctx.path[len(ctx.prefix) :],  # the provider's path, whatever the mount [A7]
            "requestId": ctx.request_id,
            "statusCode": status,
            "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        }
