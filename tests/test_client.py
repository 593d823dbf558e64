"""The reference client against the in-process mock: every provider, sync and async."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from wanmock.contracts.client import errors
from wanmock.contracts.client.engine import AsyncWanClient, WanClient
from wanmock.contracts.client.models import ImageToVideo, TextToVideo, VideoEdit
from wanmock.contracts.client.transport import ASGIThreadTransport, SocketLikeASGITransport
from wanmock.mockserver.media import probe

from tests.conftest import PROVIDERS, Mock


@pytest.fixture
def transport(mock: Mock) -> Iterator[ASGIThreadTransport]:
    t = ASGIThreadTransport(mock.app)
    yield t
    t.shutdown()


def client(mock: Mock, transport: httpx.BaseTransport, provider: str, key: str = "test-key") -> WanClient:
    return WanClient(
        provider,
        key,
        base_url=f"http://mock/{provider}",
        transport=transport,
        sleep=mock.clock.advance,
        clock=mock.clock.now,
    )


class Refuse(httpx.BaseTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"no network call expected, got {request.method} {request.url}")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_submit_wait_download_every_provider(
    mock: Mock, transport: ASGIThreadTransport, provider: str, tmp_path: Path
) -> None:
    with client(mock, transport, provider) as c:
        handle = c.submit(TextToVideo("a cat in the moonlight", resolution="720P", ratio="9:16", duration=5))
        status = c.wait(handle, timeout=60)
        assert status.state == "succeeded"
        video = c.download(status, tmp_path / "out.mp4")
    info = probe(video)
    assert (info["width"], info["height"]) == (720, 1280)
    assert abs(info["duration"] - 5.0) < 0.2


@pytest.mark.parametrize("provider", PROVIDERS)
def test_async_client_does_the_same(mock: Mock, provider: str, tmp_path: Path) -> None:
    async def run() -> dict[str, Any]:
        async with AsyncWanClient(
            provider,
            "test-key",
            base_url=f"http://mock/{provider}",
            transport=SocketLikeASGITransport(app=mock.app),
            sleep=mock.clock.advance,
            clock=mock.clock.now,
        ) as c:
            handle = await c.submit(ImageToVideo(first_frame="https://example.com/a.png", prompt="wave", duration=5))
            status = await c.wait(handle, timeout=60)
            path = await c.download(status, tmp_path / "out.mp4")
            return dict(probe(path))

    info = asyncio.run(run())
    assert info["video_codec"] == "h264"


@pytest.mark.parametrize(
    ("provider", "request_", "says"),
    [
        ("aimlapi", VideoEdit("https://example.com/v.mp4", prompt="clay"), "does not offer videoedit"),
        (
            "aimlapi",
            ImageToVideo(first_frame="https://e.com/a.png", last_frame="https://e.com/b.png", prompt="p"),
            "cannot express last_frame",
        ),
        ("aimlapi", TextToVideo("a cat", duration=7), "$.duration"),
        ("modellix", TextToVideo("a cat", watermark=True), "cannot express watermark"),
        ("apiyi", ImageToVideo(first_frame="https://e.com/a.png"), "$.input.prompt"),
        ("dashscope", ImageToVideo(last_frame="https://e.com/b.png"), "exactly one of first_frame or first_clip"),
        ("modellix", TextToVideo("x" * 5001), "$.prompt"),
    ],
)
def test_unexpressible_requests_fail_before_any_network_call(provider: str, request_: Any, says: str) -> None:
    c = WanClient(provider, "test-key", transport=Refuse())
    with pytest.raises(errors.UnsupportedRequest) as raised:
        c.submit(request_)
    assert says in str(raised.value)


BALANCE = {
    "modellix": {"status": 402},
    "aimlapi": {"status": 403},
    "apiyi": {"status": 429, "code": "Arrearage"},
    "dashscope": {"status": 400, "code": "Arrearage"},
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_provider_errors_surface_as_typed_exceptions(mock: Mock, transport: ASGIThreadTransport, provider: str) -> None:
    request = TextToVideo("a cat", duration=5)
    with pytest.raises(errors.AuthenticationError):
        client(mock, transport, provider, key="invalid").submit(request)
    c = client(mock, transport, provider)
    rule = {"action": "error", "provider": provider, "endpoint": "submit", "count": 1, **BALANCE[provider]}
    assert mock.post("/__admin/faults", json=rule).status_code == 201
    with pytest.raises(errors.InsufficientBalanceError):
        c.submit(request)
    limited = {
        "action": "error",
        "provider": provider,
        "endpoint": "submit",
        "status": 429,
        "retry_after": 9,
        "count": 1,
    }
    if provider != "apiyi":  # APIYI's 429 without a balance word is a rate limit too
        mock.post("/__admin/faults", json=limited)
        with pytest.raises(errors.RateLimitedError) as raised:
            c.submit(request)
        assert raised.value.retry_after == 9
    handle = c.submit(request)
    mock.post(
        f"/__admin/tasks/{provider}/{handle.task_id}/fail", json={"code": "DataInspectionFailed", "message": "no"}
    )
    with pytest.raises(errors.TaskFailedError) as failed:
        c.wait(handle, timeout=60)
    if provider != "modellix":  # Modellix documents no failure detail
        assert failed.value.code == "DataInspectionFailed"
    other = c.submit(request)
    mock.post(f"/__admin/tasks/{provider}/{other.task_id}/expire")
    with pytest.raises(errors.TaskExpiredError):
        c.wait(other, timeout=60)


def test_polls_are_retried_and_honour_retry_after(mock: Mock, transport: ASGIThreadTransport) -> None:
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        mock.clock.advance(seconds)

    c = WanClient(
        "dashscope",
        "test-key",
        base_url="http://mock/dashscope",
        transport=transport,
        sleep=sleep,
        clock=mock.clock.now,
    )
    handle = c.submit(TextToVideo("a cat"))
    mock.post(
        "/__admin/faults",
        json={"action": "error", "endpoint": "poll", "status": 503, "retry_after": 4, "count": 2},
    )
    status = c.wait(handle, timeout=120)
    assert status.state == "succeeded"
    assert slept[:2] == [4.0, 4.0]


def test_a_submit_is_never_retried_after_a_dropped_connection(mock: Mock, transport: ASGIThreadTransport) -> None:
    c = client(mock, transport, "modellix")
    mock.post("/__admin/faults", json={"action": "drop", "endpoint": "submit", "count": 1})
    with pytest.raises(errors.TransportError) as raised:
        c.submit(TextToVideo("a cat"))
    assert raised.value.outcome_unknown
    submits = mock.get("/__admin/journal", params={"endpoint": "submit"}).json()["entries"]
    assert len(submits) == 1


def test_wait_times_out_on_the_injected_clock(make_mock: Any) -> None:
    m = make_mock(timing="realistic")
    t = ASGIThreadTransport(m.app)
    try:
        c = WanClient(
            "dashscope",
            "test-key",
            base_url="http://mock/dashscope",
            transport=t,
            sleep=m.clock.advance,
            clock=m.clock.now,
        )
        handle = c.submit(TextToVideo("a cat"))
        with pytest.raises(errors.WaitTimeout) as raised:
            c.wait(handle, timeout=30)
        assert raised.value.last_state in ("queued", "running")
    finally:
        t.shutdown()


def test_keys_come_from_the_environment_and_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APIYI_API_KEY", "sk-secret-value")
    c = WanClient("apiyi")
    assert "sk-secret-value" not in repr(c)
    monkeypatch.delenv("APIYI_API_KEY")
    with pytest.raises(errors.AuthenticationError, match="APIYI_API_KEY"):
        WanClient("apiyi")


def test_wait_polls_at_the_given_interval(make_mock: Any) -> None:
    m = make_mock(timing="fast")
    t = ASGIThreadTransport(m.app)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        m.clock.advance(seconds)

    try:
        c = WanClient(
            "dashscope", "test-key", base_url="http://mock/dashscope", transport=t, sleep=sleep, clock=m.clock.now
        )
        status = c.wait(c.submit(TextToVideo("a cat")), timeout=60, poll_interval=0.5)
        assert status.state == "succeeded"
        assert set(slept) == {0.5}  # not the provider's 15 s
        with pytest.raises(ValueError, match="poll_interval"):
            c.wait(c.submit(TextToVideo("a cat")), poll_interval=0)
    finally:
        t.shutdown()
