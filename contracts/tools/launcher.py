"""One way to start a real ``wanmock serve`` (or ``wanmock proxy``) process and stop it again.

:class:`ServeProcess` runs ``python -m wanmock.mockserver serve --port 0 ARGS`` in its own process
group (so a Ctrl-C in the terminal reaches only its starter, which then stops it, workers
included). It reads the address the server really listens on from the first line of its banner
(``wanmock serving ... on http://127.0.0.1:PORT``) and returns once ``/__admin/health`` answers
200, sending the admin token when there is one (polled, never a blind sleep). A server that does
not start raises :class:`LaunchError` with the command, what it printed and the end of its
standard error. :meth:`ServeProcess.stop` sends the group SIGINT (the server's own Ctrl-C: no
traceback), then SIGTERM, then SIGKILL, each after ``timeout`` seconds.

Standard output and error go to files, never pipes: a server that prints a lot never blocks on a
full pipe, and there is no reader thread to stop. The files are temporary ones (or
``serve.out``/``serve.err`` in ``log_dir``); :meth:`output` and :meth:`errors` read them while
the server runs and keep their text after it stopped. Every file is closed, and the process
group stopped, on every path: a failed start, :meth:`stop` (safe to call twice), and, as a last
resort, when the object is garbage-collected or the interpreter exits without a stop.

Used by the pytest plugin's ``wanmock_server``, the tests' ``Server`` and the benchmarks'
``WanmockServer``::

    with ServeProcess("--clock", "manual", "--timing", "fast") as server:
        httpx.get(server.base_url("dashscope") + "/api/v1/tasks/x")
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import httpx
from wanmock.contracts.tools.control import HEALTH_PATH, admin_headers

READY_SECONDS = 30.0
STOP_SECONDS = 10.0
POLL_SECONDS = 0.02
ERRORS_SHOWN = 4000  # characters of standard error in a LaunchError


class LaunchError(RuntimeError):
    """The server did not start: it exited, printed no address, or never became healthy. The
    message holds the command, what it printed and the end of its standard error."""


def serve_command(*args: str, python: str | None = None) -> list[str]:
    """``python -m wanmock.mockserver serve --port 0 *args`` (a later ``--port`` wins)."""
    return [python or sys.executable, "-m", "wanmock.mockserver", "serve", "--port", "0", *args]


def stop_group(process: subprocess.Popen[Any], timeout: float = STOP_SECONDS, first: int = signal.SIGINT) -> None:
    """Stop a process started in its own process group, and the group: ``first`` (SIGINT by
    default), then SIGTERM, then SIGKILL, each after ``timeout`` seconds; then SIGKILL for any
    member the process left behind (a worker). Reaps the process."""
    signals = list(dict.fromkeys((first, signal.SIGTERM, signal.SIGKILL)))
    for sig in signals:
        if process.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
    if process.poll() is None:  # not even SIGKILL to the group ended it (it left the group)
        process.kill()
        process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


class _Held:
    """What a started server holds: the process and its two output files. Kept apart from
    ServeProcess so a finalizer can release it without keeping the ServeProcess alive."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.files: list[IO[bytes]] = []

    def release(self, timeout: float = STOP_SECONDS, first: int = signal.SIGINT) -> None:
        """Stop the process group and close the files, whatever fails on the way."""
        try:
            if self.process is not None:
                stop_group(self.process, timeout, first)
        finally:
            files, self.files = self.files, []
            for file in files:
                file.close()


def _read(file: IO[bytes] | None, limit: int | None = None) -> str:
    """What a server wrote to ``file`` so far (its last ``limit`` characters), without moving
    the file's position (``os.pread``)."""
    if file is None or file.closed:
        return ""
    size = os.fstat(file.fileno()).st_size
    start = 0 if limit is None else max(0, size - limit)
    return os.pread(file.fileno(), size - start, start).decode(errors="replace")


class ServeProcess:
    """A ``wanmock serve`` process on a free port (see the module docstring).

    ``args`` go after ``serve --port 0``; ``command`` replaces the whole command line instead
    (``wanmock proxy ...``). ``token`` is the admin token the readiness probe sends (default: the
    ``--admin-token`` among the arguments, else ``$WANMOCK_ADMIN_TOKEN``); ``ready_path`` what it
    polls until a 200. ``env``, ``cwd`` are the child's; ``log_dir`` keeps its output in
    ``serve.out`` and ``serve.err`` there instead of temporary files."""

    def __init__(
        self,
        *args: str,
        command: Sequence[str] | None = None,
        python: str | None = None,
        token: str | None = None,
        ready_path: str = HEALTH_PATH,
        ready_timeout: float = READY_SECONDS,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.command = list(command) if command is not None else serve_command(*args, python=python)
        given = self.command[:-1]
        if token is None and "--admin-token" in given:
            token = self.command[given.index("--admin-token") + 1]
        self.token = token
        self.ready_path = ready_path
        self.ready_timeout = ready_timeout
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.log_dir = log_dir
        self.origin = ""
        self.health: dict[str, Any] = {}
        self.providers: tuple[str, ...] = ()
        self.returncode: int | None = None
        self._held = _Held()
        self._finalizer = weakref.finalize(self, self._held.release, 5.0, signal.SIGKILL)
        self._printed: tuple[str, str] | None = None  # (stdout, stderr) once stopped

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self._held.process

    @property
    def pid(self) -> int:
        if self._held.process is None:
            raise LaunchError("the server was not started")
        return self._held.process.pid

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        pid = self._held.process.pid if self._held.process is not None else None
        return f"<wanmock server {self.origin or '(not started)'} pid={pid}>"

    # -- starting ----------------------------------------------------------------------------

    def start(self) -> ServeProcess:
        """Start the server and return once it is healthy; on any failure (Ctrl-C included) stop
        it, close its files and raise (a LaunchError when the server is at fault)."""
        if self._held.process is not None:
            raise LaunchError(f"{self!r} was already started")
        try:
            self._launch()
            deadline = time.monotonic() + self.ready_timeout
            self.origin = self._origin(deadline)
            self._wait_until_ready(deadline)
        except BaseException:
            self.stop(timeout=2.0)
            raise
        return self

    def _open(self, name: str) -> IO[bytes]:
        if self.log_dir is None:
            return tempfile.TemporaryFile(prefix=f"wanmock-{name}-")  # closed by _Held.release
        return (self.log_dir / f"serve.{name}").open("w+b")

    def _launch(self) -> None:
        held = self._held
        held.files.append(self._open("out"))
        held.files.append(self._open("err"))
        held.process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=held.files[0],
            stderr=held.files[1],
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,  # its own process group: a terminal's Ctrl-C reaches only us
        )

    def _origin(self, deadline: float) -> str:
        """The address at the end of the banner's first line."""
        while True:
            first, newline, _ = self.output().partition("\n")
            if newline:
                origin = first.rsplit(" on ", 1)[-1].strip()
                if " on " not in first or not origin.startswith(("http://", "https://")):
                    raise self._failed(f"printed an unexpected banner: {first!r}")
                return origin
            self._check_alive(deadline, "printing its address")

    def _wait_until_ready(self, deadline: float) -> None:
        with httpx.Client(base_url=self.origin, timeout=5.0, headers=admin_headers(self.token)) as http:
            while True:
                try:
                    answer = http.get(self.ready_path)
                    if answer.status_code == 200:
                        found = answer.json()
                        self.health = found if isinstance(found, dict) else {}
                        self.providers = tuple(str(p) for p in self.health.get("providers", ()))
                        return
                except (httpx.TransportError, ValueError):
                    pass
                self._check_alive(deadline, f"answering 200 on {self.ready_path}")

    def _check_alive(self, deadline: float, doing: str) -> None:
        """Raise when the process exited or the deadline passed; else wait a moment."""
        process = self._held.process
        assert process is not None
        if process.poll() is not None:
            raise self._failed(f"exited with status {process.returncode} before {doing}")
        if time.monotonic() > deadline:
            raise self._failed(f"was not {doing} within {self.ready_timeout:g} s")
        time.sleep(POLL_SECONDS)

    def _failed(self, why: str) -> LaunchError:
        printed = self.output().strip()
        errors = self.errors(ERRORS_SHOWN).strip()
        words = [w for w in self.command[1:] if not w.startswith("-") and "." not in w and "/" not in w]
        name = f"wanmock {words[0]}" if words else self.command[0]  # "wanmock serve", "wanmock proxy"
        return LaunchError(
            f"{name} {why}\n$ {' '.join(self.command)}\n"
            f"standard output:\n{printed or '(nothing)'}\nstandard error (end):\n{errors or '(nothing)'}"
        )

    # -- what it printed ---------------------------------------------------------------------

    def output(self) -> str:
        """Its standard output so far (the banner, an access log)."""
        if self._printed is not None:
            return self._printed[0]
        return _read(self._held.files[0] if self._held.files else None)

    def errors(self, limit: int | None = None) -> str:
        """Its standard error so far (its last ``limit`` characters)."""
        if self._printed is not None:
            text = self._printed[1]
            return text if limit is None else text[-limit:]
        return _read(self._held.files[1] if len(self._held.files) > 1 else None, limit)

    def wait_for_output(self, text: str, timeout: float = READY_SECONDS) -> str:
        """Standard output once it contains ``text`` (polled); LaunchError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while text not in (printed := self.output()):
            process = self._held.process
            if process is None or process.poll() is not None or time.monotonic() > deadline:
                raise self._failed(f"did not print {text!r}")
            time.sleep(POLL_SECONDS)
        return printed

    # -- using it ----------------------------------------------------------------------------

    def base_url(self, provider: str) -> str:
        """Where ``provider`` is served: at the root when it is the only one, else under ``/<provider>``."""
        if provider not in self.providers:
            raise ValueError(f"the server does not serve {provider!r}; it serves {', '.join(self.providers)}")
        return self.origin if len(self.providers) == 1 else f"{self.origin}/{provider}"

    # -- stopping ----------------------------------------------------------------------------

    def stop(self, timeout: float = STOP_SECONDS, first: int = signal.SIGINT) -> int | None:
        """Stop the process group (``first``, SIGINT by default, then SIGTERM, then SIGKILL, each
        after ``timeout`` s) and close the output files, keeping their text for :meth:`output`
        and :meth:`errors`. The exit status (None when it never started). Safe to call twice."""
        held = self._held
        try:
            if self._printed is None and held.files:
                try:
                    if held.process is not None:
                        stop_group(held.process, timeout, first)
                finally:
                    self._printed = (self.output(), self.errors())
        finally:
            self._finalizer()  # closes the files (and stops the process when the above was cut short)
        if held.process is not None:
            self.returncode = held.process.returncode
        return self.returncode
