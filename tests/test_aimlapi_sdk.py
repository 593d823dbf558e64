"""The official AI/ML API Python SDK (PyPI aimlapi-sdk-python), unmodified, against `wanmock serve`
over a socket: generate, poll and download a t2v and an i2v video; a refused body is the SDK's error.

The SDK polls with a real sleep of ``poll_interval``; the mock's time moves only through its manual
clock, which the SDK's own ``status_callback`` advances (never a sleep for provider time)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import aimlapi
import pytest
from wanmock.mockserver.media import probe

from tests.test_serve_cli import Server

pytestmark = pytest.mark.slow
KEY = "test-key"
IMAGE = "https://example.com/first_frame.png"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    server = Server("--provider", "aimlapi", "--timing", "fast", "--clock", "manual", "--seed", "9")
    yield server
    server.stop()


@pytest.fixture
def client(server: Server) -> Iterator[aimlapi.AIMLAPI]:
    with aimlapi.AIMLAPI(api_key=KEY, base_url=f"{server.origin}/v1", max_retries=0) as client:
        yield client


def advancing(server: Server, seen: list[Mapping[str, Any]]) -> Any:
    """A status callback that records each answer and moves the mock's clock a minute on."""

    def callback(payload: Mapping[str, Any]) -> None:
        seen.append(dict(payload))
        assert server.client.post("/__admin/clock/advance", json={"seconds": 60}).status_code == 200

    return callback


def test_sdk_generates_polls_and_downloads_a_t2v_video(server: Server, client: aimlapi.AIMLAPI) -> None:
    seen: list[Mapping[str, Any]] = []
    video = client.videos.generate_with_polling(
        model="alibaba/wan-2-7-t2v",
        prompt="a cat under the moon",
        aspect_ratio="9:16",
        duration=5,
        extra_body={"resolution": "720p"},
        poll_interval=0.01,
        return_bytes=True,
        status_callback=advancing(server, seen),
    )
    assert isinstance(video, bytes)
    info = probe(video)
    assert (info["width"], info["height"], info["duration"]) == (720, 1280, 5.0)
    assert seen[0]["status"] == "queued"
    assert seen[0]["meta"]["usage"]["usd_spent"] > 0
    assert seen[-1]["status"] == "completed"


def test_sdk_generates_an_i2v_video_and_returns_the_generation(server: Server, client: aimlapi.AIMLAPI) -> None:
    seen: list[Mapping[str, Any]] = []
    result = client.videos.generate_with_polling(
        model="alibaba/wan-2-7-i2v",
        prompt="the picture comes alive",
        duration=5,
        extra_body={"image_url": IMAGE, "resolution": "720p"},
        poll_interval=0.01,
        status_callback=advancing(server, seen),
    )
    assert isinstance(result, dict)
    assert result["status"] == "completed"
    assert result["video"]["url"].startswith(server.origin)
    assert {s["status"] for s in seen} >= {"queued", "completed"}


def test_a_refused_body_is_the_sdks_own_error(client: aimlapi.AIMLAPI) -> None:
    with pytest.raises(aimlapi.BadRequestError) as refused:
        client.videos.generate_with_polling(model="alibaba/wan-2-7-t2v", prompt="a cat", duration=7)
    assert refused.value.status_code == 400
    body = refused.value.body
    assert isinstance(body, dict)
    assert body["path"] == "/v2/video/generations"
    assert "$.duration" in body["message"]


def test_a_refused_key_is_the_sdks_authentication_error(server: Server) -> None:
    refused = aimlapi.AIMLAPI(api_key="invalid", base_url=f"{server.origin}/v1", max_retries=0)
    with refused as client, pytest.raises(aimlapi.AuthenticationError):
        client.videos.generate_with_polling(model="alibaba/wan-2-7-t2v", prompt="a cat")
