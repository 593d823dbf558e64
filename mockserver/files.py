"""The result-file host: ``GET /__files/<provider>/<task_id>.mp4?Expires=…&Signature=…``.

It answers like the object storage the providers' result URLs point at: the MP4, or an XML
error (NoSuchKey, AccessDenied, SignatureDoesNotMatch, MethodNotAllowed), never a provider's
JSON envelope. Fault rules with ``endpoint: download`` apply here too.
"""

from __future__ import annotations

import asyncio

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from wanmock.mockserver.http import TEST_HEADER, DroppedResponse
from wanmock.mockserver.media import VideoSpec, file_response
from wanmock.mockserver.results import FILES_PREFIX, output_size, storage_error
from wanmock.mockserver.state import AppState
from wanmock.mockserver.storeio import StoreUnavailable
from wanmock.schemas import Provider

NO_SUCH_KEY = "The specified key does not exist."


def is_files_path(path: str) -> bool:
    return path == FILES_PREFIX or path.startswith(FILES_PREFIX + "/")


def storage_request_id(state: AppState) -> str:
    """A request id as object storage spells it (24 upper-case hex digits)."""
    return state.request_id().upper().replace("-", "")[:24]


def storage_refusal(request_id: str, status: int, code: str, message: str) -> Response:
    return Response(storage_error(code, message, request_id), status, media_type="application/xml")


def no_such_file(state: AppState, request: Request) -> Response:
    """Anything but GET/HEAD /__files/<provider>/<name>: a nested or traversing name is no key,
    another method is not allowed."""
    request_id = storage_request_id(state)
    if request.method in ("GET", "HEAD"):
        return storage_refusal(request_id, 404, "NoSuchKey", NO_SUCH_KEY)
    refused = storage_refusal(
        request_id, 405, "MethodNotAllowed", "The specified method is not allowed against this resource."
    )
    refused.headers["Allow"] = "GET, HEAD"
    return refused


def signature_refused(request_id: str, provider: Provider, request: Request) -> Response | None:
    """A pre-signed URL's host refuses a request that carries Authorization (manifest
    ``task.result_auth: forbidden``)."""
    if provider.task_fields.get("result_auth") == "forbidden" and "authorization" in request.headers:
        message = "The request signature we calculated does not match the signature you provided."
        return storage_refusal(request_id, 403, "SignatureDoesNotMatch", message)
    return None


async def send_video(state: AppState, request: Request, spec: VideoSpec) -> Response:
    path = await run_in_threadpool(state.media.path_for, spec)
    return file_response(path, request)


async def download_faults(
    state: AppState, request: Request, request_id: str, provider: str, task_id: str
) -> Response | None:
    scope = {
        "provider": provider,
        "endpoint": "download",
        "task_id": task_id,
        "test_id": request.headers.get(TEST_HEADER),
    }
    rules = await state.io.run(state.faults.take, scope)
    for rule in rules:
        if rule.action == "latency":
            await asyncio.sleep(rule.latency_seconds)
        elif rule.action == "drop":
            return DroppedResponse()
        elif rule.action == "error" and rule.status:
            message = rule.message or "wanmock fault rule"
            refused = storage_refusal(request_id, rule.status, rule.code or "InternalError", message)
            if rule.retry_after is not None:
                refused.headers["Retry-After"] = str(max(1, round(rule.retry_after)))
            return refused
    return None


async def download(request: Request) -> Response:
    """The live mock's result files: a signed, unexpired link to a succeeded task's MP4."""
    state: AppState = request.app.state.wanmock
    provider = request.path_params["provider"]
    name = request.path_params["name"]
    request_id = storage_request_id(state)
    try:
        return await serve_download(state, request, request_id, provider, name)
    except StoreUnavailable:
        return storage_refusal(request_id, 503, "ServiceUnavailable", "The service is temporarily unavailable.")


async def serve_download(state: AppState, request: Request, request_id: str, provider: str, name: str) -> Response:
    now = await state.anow()
    served = state.served.get(provider)
    if served is None or not name.endswith(".mp4"):
        return storage_refusal(request_id, 404, "NoSuchKey", NO_SUCH_KEY)
    task_id = name[: -len(".mp4")]
    faulted = await download_faults(state, request, request_id, provider, task_id)
    if faulted is not None:
        return faulted
    refused = signature_refused(request_id, served.profile.provider, request)
    if refused is not None:
        return refused
    expires = request.query_params.get("Expires")
    signature = request.query_params.get("Signature")
    if not (expires or "").isascii() or len(expires or "") > 20 or not (signature or "").isascii():
        expires = signature = None  # not what a signed link carries (int() and hmac would raise)
    check = state.links.check(provider, task_id, expires, signature, now)
    if not check.ok:
        if check.reason == "expired":
            return storage_refusal(request_id, 403, "AccessDenied", "Request has expired.")
        return storage_refusal(request_id, 403, "SignatureDoesNotMatch", "The request signature does not match.")
    task = await state.io.run(state.store.get, provider, task_id)
    if task is None or task.state_at(now) != "succeeded":
        return storage_refusal(request_id, 404, "NoSuchKey", NO_SUCH_KEY)
    width, height = output_size(task.params.resolution, task.params.ratio)
    spec = VideoSpec(width=width, height=height, duration=task.params.duration, audio=task.params.audio)
    return await send_video(state, request, spec)
