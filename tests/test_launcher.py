"""The one server launcher (wanmock.contracts.tools.launcher): it starts `wanmock serve` on a free
port, explains a failed start, stops the process group quietly, and closes every file it opened
on every path — a failed start, a stop, a second stop, an object dropped without a stop."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import warnings
from pathlib import Path

import httpx
import pytest
from wanmock.contracts.tools.launcher import LaunchError, ServeProcess

pytestmark = pytest.mark.slow


def open_files() -> set[str]:
    """What this process's descriptors point at (to see a file or pipe left open)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the directory's own descriptor, gone already
            found.add(f"{fd} {os.readlink(f'/proc/self/fd/{fd}')}")
    return found


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_server_starts_answers_and_stops_quietly_leaving_nothing_open() -> None:
    before = open_files()
    with ServeProcess("--provider", "dashscope", "--clock", "manual") as server:
        assert server.origin.startswith("http://127.0.0.1:")
        assert server.providers == ("dashscope",)
        assert server.base_url("dashscope") == server.origin  # the only provider: at the root
        assert httpx.get(f"{server.origin}/__admin/health").json()["clock"] == "manual"
        assert server.output().startswith("wanmock serving dashscope")
        assert "/__admin/ui/" in server.wait_for_output("dashboard", timeout=5)
        pid = server.pid
        assert os.getpgid(pid) == pid  # its own process group: a terminal's Ctrl-C reaches only us
    assert server.returncode == 130  # SIGINT: the server's own Ctrl-C
    assert "Traceback" not in server.errors()
    assert server.errors().strip().endswith("wanmock serve: interrupted")
    assert server.output().startswith("wanmock serving dashscope")  # kept after the stop
    assert gone(pid)
    assert server.stop() == 130  # a second stop changes nothing
    assert open_files() == before


def test_a_failed_start_says_why_and_leaves_nothing_open() -> None:
    before = open_files()
    server = ServeProcess("--workers", "0")
    with pytest.raises(LaunchError) as raised:
        server.start()
    message = str(raised.value)
    assert "exited with status 2 before printing its address" in message
    assert "--workers must be at least 1" in message  # the server's own standard error
    assert "-m wanmock.mockserver serve --port 0 --workers 0" in message
    assert open_files() == before
    assert server.returncode == 2


def test_a_server_that_never_gets_ready_is_stopped_and_explained() -> None:
    before = open_files()
    server = ServeProcess("--provider", "modellix", ready_path="/__admin/no-such-page", ready_timeout=1.5)
    with pytest.raises(LaunchError, match=r"was not answering 200 on /__admin/no-such-page within 1\.5 s"):
        server.start()
    assert server.process is not None
    assert gone(server.process.pid)
    assert open_files() == before


def test_the_admin_token_is_sent_by_the_readiness_probe() -> None:
    with ServeProcess("--provider", "modellix", "--admin-token", "launcher-token-1") as server:
        assert server.token == "launcher-token-1"  # read from the arguments
        assert httpx.get(f"{server.origin}/__admin/health").status_code == 401
        assert server.health["providers"] == ["modellix"]


def test_logs_go_to_a_directory_when_asked(tmp_path: Path) -> None:
    with ServeProcess("--provider", "apiyi", log_dir=tmp_path) as server:
        pass
    assert (tmp_path / "serve.out").read_text().startswith("wanmock serving apiyi")
    assert (tmp_path / "serve.err").read_text() == server.errors()


def test_another_first_signal_and_another_command() -> None:
    command = ["python3", "-c", "import time; print('ready on http://127.0.0.1:9', flush=True); time.sleep(60)"]
    server = ServeProcess(command=command, ready_path="/", ready_timeout=0.5)
    with pytest.raises(LaunchError) as raised:  # nothing listens on port 9: never ready
        server.start()
    assert str(raised.value).startswith(f"{command[0]} was not answering 200 on / within 0.5 s")
    assert server.returncode == -signal.SIGINT  # a plain script dies of SIGINT
    with ServeProcess("--provider", "modellix") as served:
        assert served.stop(first=signal.SIGTERM) == -signal.SIGTERM  # not 130: no SIGINT was sent


def test_a_server_dropped_without_a_stop_is_stopped_and_its_files_closed() -> None:
    before = open_files()
    server = ServeProcess("--provider", "modellix").start()
    assert server.process is not None
    pid = server.process.pid
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ResourceWarning for a file or a running subprocess
        del server
        gc.collect()
    assert gone(pid)
    assert open_files() == before
