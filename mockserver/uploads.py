"""The upload host of the DashScope SDK's local-file flow: ``POST /__uploads/<provider>``.

The SDK asks ``GET /api/v1/uploads?action=getPolicy`` for a policy (answered by the profile),
posts the file as a form to the policy's ``upload_host`` — this route — and then sends
``oss://<upload_dir>/<file name>`` with ``X-DashScope-OssResourceResolve: enable``. Like the
object storage it stands for, it answers 200 with an empty body (``success_action_status`` 200)
or an XML error. The file is read and dropped: a mock task never looks at its input.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from wanmock.mockserver.results import UPLOADS_PREFIX

if TYPE_CHECKING:
    from wanmock.mockserver.state import AppState

__all__ = ["UPLOADS_PREFIX", "upload"]
KEY_FIELD = re.compile(rb'name="key"\r\n\r\n([^\r\n]+)\r\n')


async def upload(request: Request) -> Response:
    from wanmock.mockserver.files import storage_refusal, storage_request_id

    state: AppState = request.app.state.wanmock
    request_id = storage_request_id(state)
    if request.path_params["provider"] not in state.served:
        return storage_refusal(request_id, 404, "NoSuchBucket", "The specified bucket does not exist.")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return storage_refusal(request_id, 400, "InvalidArgument", "The request must be a multipart form post.")
    size, head = 0, b""
    async for chunk in request.stream():
        size += len(chunk)
        if size > state.config.max_body_bytes:
            return storage_refusal(request_id, 400, "EntityTooLarge", "Your proposed upload exceeds the maximum.")
        if len(head) < 64 * 1024:
            head += chunk[: 64 * 1024 - len(head)]
    if KEY_FIELD.search(head) is None:
        return storage_refusal(request_id, 400, "InvalidArgument", "The form field key is required.")
    return Response(status_code=200)
