"""The official DashScope Python SDK, unmodified, against `wanmock serve` over a socket."""

from __future__ import annotations

from collections.abc import Iterator

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
