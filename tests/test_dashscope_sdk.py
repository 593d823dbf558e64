"""The official DashScope Python SDK, unmodified, against `wanmock serve` over a socket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dashscope
import httpx
import pytest
from dashscope import VideoSynthesis
from wanmock.mockserver.media import probe

from tests.test_serve_cli import Server

pytestmark = pytest.mark.slow
KEY = "test-key"


@pytest.fixture(scope="module")
def base() -> Iterator[Server]:
    server = Server("--provider", "dashscope", "--timing", "fast", "--clock", "manual", "--seed", "5")
    previous = dashscope.base_http_api_url
    dashscope.base_http_api_url = f"{server.origin}/api/v1"
    yield server
    dashscope.base_http_api_url = previous
    server.stop()


def test_sdk_creates_waits_and_downloads(base: Server) -> None:
    created = VideoSynthesis.async_call(
        model="wan2.7-i2v",
        api_key=KEY,
        media=[{"type": "first_frame", "url": "https://example.com/a.png"}],
        resolution="720P",
        duration=3,
    )
    assert created.status_code == 200, created
    assert created.output.task_status == "PENDING"
    assert base.client.post("/__admin/clock/advance", json={"seconds": 10}).status_code == 200
    done = VideoSynthesis.wait(created, api_key=KEY)
    assert done.output.task_status == "SUCCEEDED"
    assert done.usage.output_video_duration == 3
    info = probe(httpx.get(done.output.video_url, timeout=30).content)
    assert (info["width"], info["height"], info["duration"]) == (1280, 720, 3.0)


def test_sdk_surfaces_validation_errors_with_the_providers_code(base: Server) -> None:
    bad = VideoSynthesis.async_call(model="wan2.7-t2v", api_key=KEY, prompt="a cat", duration=16)
    assert bad.status_code == 400
    assert bad.code == "InvalidParameter"
    assert "$.parameters.duration" in bad.message


def test_sdk_rejected_key_is_invalid_api_key(base: Server) -> None:
    refused = VideoSynthesis.async_call(model="wan2.7-t2v", api_key="invalid", prompt="a cat")
    assert (refused.status_code, refused.code) == (401, "InvalidApiKey")


def test_sdk_fetches_unknown_and_cancels_pending(base: Server) -> None:
    unknown = VideoSynthesis.fetch("no-such-task", api_key=KEY)
    assert unknown.output.task_status == "UNKNOWN"
    created = VideoSynthesis.async_call(model="wan2.7-t2v", api_key=KEY, prompt="a cat")
    canceled = VideoSynthesis.cancel(created.output.task_id, api_key=KEY)
    assert canceled.status_code == 200
    assert VideoSynthesis.fetch(created.output.task_id, api_key=KEY).output.task_status == "CANCELED"


PNG = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def last_entry(base: Server, endpoint: str) -> dict[str, object]:
    entries = base.client.get("/__admin/journal").json()["entries"]
    return [e for e in entries if e["endpoint"] == endpoint][-1]  # type: ignore[no-any-return]


def test_sdk_sends_data_uri_frames_accepted_with_a_warning(base: Server) -> None:
    created = VideoSynthesis.async_call(
        model="wan2.7-i2v",
        api_key=KEY,
        media=[{"type": "first_frame", "url": PNG}, {"type": "last_frame", "url": PNG}],
    )
    assert created.status_code == 200, created
    warnings = last_entry(base, "submit")["warnings"]
    assert isinstance(warnings, list)
    assert len(warnings) == 2
    assert all("base64 data URI" in w for w in warnings)


def test_sdk_shot_type_is_accepted_with_a_warning(base: Server) -> None:
    created = VideoSynthesis.async_call(model="wan2.7-t2v", api_key=KEY, prompt="a cat", shot_type="multi")
    assert created.status_code == 200, created
    entry = last_entry(base, "submit")
    assert entry["request_body"]["parameters"]["shot_type"] == "multi"  # type: ignore[index]
    assert entry["warnings"] == [
        "parameters.shot_type (the dashscope SDK's shot_type argument) is not a wan2.7-t2v parameter: "
        "DashScope accepts it at submit and ignores it."
    ]


def test_sdk_lists_tasks(base: Server) -> None:
    created = VideoSynthesis.async_call(model="wan2.7-t2v", api_key=KEY, prompt="listed")
    listed = VideoSynthesis.list(api_key=KEY, model_name="wan2.7-t2v", status="PENDING", page_size=100)
    assert listed.status_code == 200, listed
    assert {"total", "total_page", "page_no", "page_size"} <= set(listed.output)
    rows = listed.output["data"]
    assert created.output.task_id in [row["task_id"] for row in rows]
    assert all(row["status"] == "PENDING" for row in rows)


def test_sdk_cancel_of_a_finished_task_is_unsupported_operation(base: Server) -> None:
    created = VideoSynthesis.async_call(model="wan2.7-t2v", api_key=KEY, prompt="a cat", duration=2)
    assert base.client.post("/__admin/clock/advance", json={"seconds": 600}).status_code == 200
    assert VideoSynthesis.fetch(created.output.task_id, api_key=KEY).output.task_status == "SUCCEEDED"
    refused = VideoSynthesis.cancel(created.output.task_id, api_key=KEY)
    assert (refused.status_code, refused.code) == (400, "UnsupportedOperation")
    assert refused.message == "Failed to cancel the task, please confirm if the task is in PENDING status."


def test_sdk_uploads_a_local_file_and_sends_its_oss_url(base: Server, tmp_path: Path) -> None:
    image = tmp_path / "first.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    created = VideoSynthesis.async_call(
        model="wan2.7-i2v", api_key=KEY, media=[{"type": "first_frame", "url": image.as_uri()}]
    )
    assert created.status_code == 200, created
    entry = last_entry(base, "submit")
    url = entry["request_body"]["input"]["media"][0]["url"]  # type: ignore[index]
    assert url.startswith("oss://dashscope-instant/")
    assert url.endswith("/first.png")
    assert entry["request_headers"]["x-dashscope-ossresourceresolve"] == "enable"  # type: ignore[index]
    policy = [e for e in base.client.get("/__admin/journal").json()["entries"] if e["endpoint"] == "upload_policy"]
    assert policy
    assert policy[-1]["query"].startswith("action=getPolicy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.png"]  # nothing left beside the user's file
