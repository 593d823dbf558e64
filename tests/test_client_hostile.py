"""The reference client against a hostile provider (issue 11): Retry-After, a dripping server,
huge answers, broken downloads, 5xx on submit — and `contract --live` against a provider that
echoes the key in its error bodies."""

from __future__ import annotations

import base64
import email.utils
import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from wanmock.contracts.client import TaskHandle, TaskStatus, TextToVideo, WanClient, errors
from wanmock.contracts.client.dialects import retry_after

SECRET = "sk-echo-9f8e7d6c5b4a39281706"


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def client_for(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> tuple[WanClient, FakeClock]:
    clock = FakeClock()
    client = WanClient(
        "dashscope",
        "test-key",
        base_url="http://provider",
        transport=httpx.MockTransport(handler),
        sleep=clock.sleep,
        clock=clock.now,
        **kwargs,
    )
    return client, clock


HANDLE = TaskHandle("dashscope", "task-1", "t2v")
RUNNING = {"request_id": "r", "output": {"task_id": "task-1", "task_status": "RUNNING"}}


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e308", "-5", "soon", "9" * 400, "Thu, 99 Foo 2100"])
def test_a_hostile_retry_after_never_escapes_as_anything_but_a_wan_error(value: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": value}, json={"code": "Throttling", "message": "slow"})

    client, clock = client_for(handler, poll_retries=3)
    with client, pytest.raises(errors.WanError):
        client.poll(HANDLE)
    assert all(0 <= s <= 300 for s in clock.sleeps), clock.sleeps


def test_retry_after_parses_numbers_and_http_dates() -> None:
    now = 1_800_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after({"retry-after": date}, now) == pytest.approx(30)
    assert retry_after({"retry-after": email.utils.formatdate(now - 30, usegmt=True)}, now) == 0
    assert retry_after({"retry-after": " 2.5 "}) == 2.5
    for bad in ("inf", "nan", "-1", "", "x"):
        assert retry_after({"retry-after": bad}) is None


def test_retry_after_is_capped_by_the_wait_deadline() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": "86400"}, json={"code": "Busy", "message": "later"})

    client, clock = client_for(handler, poll_retries=5)
    with client, pytest.raises(errors.WaitTimeout):
        client.wait(HANDLE, timeout=5)
    assert sum(clock.sleeps) <= 5
    assert clock.t <= 5


def test_a_huge_poll_answer_is_refused_while_it_streams() -> None:
    sent: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        def body() -> Iterator[bytes]:
            for _ in range(200):  # 200 MB if read whole
                sent.append(1)
                yield b" " * (1024 * 1024)

        return httpx.Response(200, content=body(), headers={"Content-Type": "application/json"})

    client, _ = client_for(handler, poll_retries=0, max_response_bytes=2 * 1024 * 1024)
    with client, pytest.raises(errors.TransportError, match="exceeds"):
        client.poll(HANDLE)
    assert len(sent) <= 4


def test_a_5xx_on_submit_is_an_unknown_outcome() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        return httpx.Response(500, json={"request_id": "r", "code": "InternalError", "message": "oops"})

    client, _ = client_for(handler)
    with client, pytest.raises(errors.ServerError) as raised:
        client.submit(TextToVideo("a cat"))
    assert raised.value.outcome_unknown is True
    assert "outcome is unknown" in str(raised.value)
    assert calls == ["POST"]  # never re-sent


def test_a_failed_download_leaves_the_previous_file_alone(tmp_path: Path) -> None:
    target = tmp_path / "video.mp4"
    target.write_bytes(b"the good previous video")
    status = TaskStatus("dashscope", "task-1", "succeeded", "SUCCEEDED", result_url="http://files/x.mp4")

    def truncated(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"x" * 10, headers={"Content-Length": "1000"})

    def broken(request: httpx.Request) -> httpx.Response:
        def body() -> Iterator[bytes]:
            yield b"y" * 100
            raise httpx.ReadError("connection reset", request=request)

        return httpx.Response(200, content=body())

    for handler, match in ((truncated, "truncated"), (broken, "download failed")):
        client, _ = client_for(handler)
        with client, pytest.raises(errors.TransportError, match=match):
            client.download(status, target)
        assert target.read_bytes() == b"the good previous video"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["video.mp4"]  # no .part left

    client, _ = client_for(lambda request: httpx.Response(200, content=b"new video"))
    with client:
        client.download(status, target)
    assert target.read_bytes() == b"new video"


class Dripper:
    """A socket server that answers one byte at a time, every ``every`` seconds."""

    def __init__(self, every: float, headers_too: bool) -> None:
        self.every = every
        self.headers_too = headers_too
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                data = (head if self.headers_too else b"") + b" " * 1000
                if not self.headers_too:
                    conn.sendall(head)
                for byte in data:
                    if self.stop.wait(self.every):
                        break
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        break

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.listener.close()


def test_a_dripping_server_cannot_stretch_a_call_past_its_timeout() -> None:
    dripper = Dripper(every=0.2, headers_too=False)  # headers at once, then a byte every 0.2 s
    client = WanClient("dashscope", "k", base_url=f"http://127.0.0.1:{dripper.port}", timeout=1.0, poll_retries=0)
    started = time.monotonic()
    try:
        with client, pytest.raises(errors.TransportError):
            client.poll(HANDLE)
    finally:
        dripper.close()
    assert time.monotonic() - started < 2.0


# -- contract --live against a provider that echoes the key ------------------------------------


def every_form(secret: str) -> list[str]:
    raw = secret.encode()
    b64 = base64.b64encode(raw).decode()
    url = base64.urlsafe_b64encode(raw).decode()
    return [secret, quote(secret, safe=""), quote_plus(secret), b64, b64.rstrip("="), url, url.rstrip("=")]


class Echo(BaseHTTPRequestHandler):
    """Answers every request 401 with the presented key in every form, in body and headers."""

    def answer(self) -> None:
        key = self.headers.get("Authorization", "").partition(" ")[2]
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = json.dumps({"code": "InvalidApiKey", "message": f"bad key {' / '.join(every_form(key))}"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Echo", key)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_contract_live_writes_the_key_nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wanmock.mockserver.cli import main

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("MODELLIX_API_KEY", SECRET)
    out, err = io.StringIO(), io.StringIO()
    report, junit = tmp_path / "report.json", tmp_path / "junit.xml"
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        args = ["contract", "--provider", "modellix", "--live", "--target", url]
        code = main([*args, "--report", str(report), "--junit", str(junit)], out, err)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert code == 1, out.getvalue() + err.getvalue()  # the echoing provider breaks the contract
    outputs = {"stdout": out.getvalue(), "stderr": err.getvalue()}
    outputs |= {"report": report.read_text(), "junit": junit.read_text()}
    assert "<redacted>" in outputs["stdout"] + outputs["report"]  # the echo was there, and was removed
    for name, text in outputs.items():
        for form in every_form(SECRET):
            assert form not in text, f"{name} holds {form}"
