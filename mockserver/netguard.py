"""Slow and many clients: the connection-level limits of ``wanmock serve``.

uvicorn closes an idle keep-alive connection, but it waits forever for a request's headers
(or its body) once a byte of it has arrived, and it accepts connections until the process runs
out of file descriptors. The protocol classes here (uvicorn's own, subclassed; named in
``uvicorn.Config(http=...)``) add:

* a **header timeout**: a connection that has not completed a request's headers within
  ``header_timeout`` seconds of opening (or of its previous answer) is answered 408 and closed
  (slowloris);
* a **body timeout**: a request body must arrive within ``body_timeout`` seconds of its
  headers, and with no pause longer than ``body_idle_timeout`` seconds;
* a **connection cap**: past ``max_connections`` open connections, a new one is answered 503
  and closed at once, so descriptors are never exhausted (and the accept loop never spins on
  ``EMFILE``). ``serve`` keeps the cap below the descriptor limit.

The same tick closes an idle keep-alive connection (httptools stack) after uvicorn's
``timeout_keep_alive`` (to within a tick), in place of the timer uvicorn arms after every answer
and cancels at the next request: at full load that timer's heap churn cost ~4% of the CPU.

**Requests run without a task each** (httptools stack, when the config's ``wanmock_taskless``
is set: ``serve`` sets it for the mock's own app on the memory store). uvicorn creates an
asyncio task for every request. Here the requests whose headers arrived in one turn of the event
loop are run by one callback at the next turn, one after the other, each in a context of its own
as a task's. Most provider requests finish without ever suspending, so they cost no task, no
callback of their own and no done-callbacks; the batch keeps the order of work a task per request
has (all the turn's reads, then all its answers), which measured faster than answering each
request inside its own read. A request that does suspend (a body still on its way, a latency
rule) goes on in a task from where it stopped. Code that needs a task (anyio and sniffio ask for
the current one) calls :func:`enter_task` first; the app does so for everything but the
providers' paths.

Each kind of closing is logged at most once per LOG_EVERY seconds, with a count.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib.util
import logging
import resource
import time
import types
import weakref
from collections.abc import Coroutine, Generator
from dataclasses import dataclass
from typing import Any, cast

from wanmock.mockserver.http import ONE_WRITE

log = logging.getLogger("wanmock")
TICK_SECONDS = 0.5
LOG_EVERY = 10.0
FD_RESERVE = 64  # descriptors kept for the store, media files, logs and the listening sockets
TIMEOUT_408 = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
BUSY_503 = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\nretry-after: 1\r\n\r\n"


@dataclass(frozen=True)
class NetLimits:
    header_timeout: float = 10.0
    body_timeout: float = 120.0
    body_idle_timeout: float = 30.0
    max_connections: int = 1000


class _RateLimitedLog:
    """One warning per LOG_EVERY seconds per kind, with how many happened since the last."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.last: dict[str, float] = {}

    def note(self, kind: str, message: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        now = time.monotonic()
        if now - self.last.get(kind, -LOG_EVERY) >= LOG_EVERY:
            log.warning("wanmock: %s (%d in the last %g s)", message, self.counts[kind], LOG_EVERY)
            self.counts[kind] = 0
            self.last[kind] = now


NOTES = _RateLimitedLog()
QUIETED: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
BATCHES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[Any]] = weakref.WeakKeyDictionary()


@types.coroutine
def _yield_once() -> Generator[None, None, None]:
    yield


async def enter_task() -> None:
    """Go on inside an asyncio task. A request run without a task (GuardedHttpToolsProtocol)
    starts outside any; code that needs one (anyio and sniffio ask for the current task) awaits
    this first. Inside a task already, it returns at once."""
    if asyncio.current_task() is None:
        await _yield_once()  # the run stops here; a task takes the request over


class _Resumed:
    """Awaited by the task that takes over a coroutine run outside a task until it suspended:
    yields what the coroutine yielded then (the future it waits on, or None), and passes every
    value or exception the task sends on to it, as ``await`` would have."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, None], first: Any) -> None:
        self.coro, self.first = coro, first

    def __await__(self) -> Generator[Any, Any, None]:
        coro, waiting = self.coro, self.first
        while True:
            try:
                sent = yield waiting
            except BaseException as exc:  # a cancellation too: the coroutine decides what it does
                try:
                    waiting = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    waiting = coro.send(sent)
                except StopIteration:
                    return


async def _resume(coro: Coroutine[Any, Any, None], first: Any) -> None:
    await _Resumed(coro, first)


def limits_of(config: Any) -> NetLimits:
    found = getattr(config, "wanmock_limits", None)
    return found if isinstance(found, NetLimits) else NetLimits()


class _Guarded:
    """The header and body timeouts and the connection cap, mixed into uvicorn's protocols
    (which provide loop, connections, transport, cycle and the asyncio.Protocol methods)."""

    loop: asyncio.AbstractEventLoop
    connections: set[Any]
    transport: asyncio.Transport
    cycle: Any
    timeout_keep_alive: int  # uvicorn's (seconds)

    def __init__(self, config: Any, server_state: Any, app_state: Any, _loop: Any = None) -> None:
        super().__init__(config, server_state, app_state, _loop)  # type: ignore[call-arg]
        self.limits = limits_of(config)
        if self.loop not in QUIETED:
            QUIETED.add(self.loop)
            quiet_accept_errors(self.loop)
        self._timer: asyncio.TimerHandle | None = None
        self._phase = "headers"
        self._since = self._last = 0.0
        self._idle_since: float | None = None  # the last answer's end, where the tick keeps alive

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        super().connection_made(transport)  # type: ignore[misc]
        if len(self.connections) > self.limits.max_connections:
            NOTES.note("busy", f"more than {self.limits.max_connections} connections: new ones answered 503")
            transport.write(BUSY_503)
            transport.close()
            return
        self._since = self._last = self.loop.time()
        self._timer = self.loop.call_later(TICK_SECONDS, self._tick)

    def data_received(self, data: bytes) -> None:
        self._last = self.loop.time()
        super().data_received(data)  # type: ignore[misc]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)  # type: ignore[misc]

    def _current_phase(self) -> str:
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return "headers"
        return "body" if cycle.more_body else "app"

    def _tick(self) -> None:
        self._timer = None
        if self.transport is None or self.transport.is_closing():
            return
        now = self.loop.time()
        phase = self._current_phase()
        if phase != self._phase:
            self._phase, self._since = phase, now
        limits = self.limits
        idle = self._idle_since
        if phase == "headers" and idle is not None and self._last <= idle and now - idle >= self.timeout_keep_alive:
            self.transport.close()  # nothing since the last answer: closed quietly, as uvicorn does
            return
        if phase == "headers" and now - self._since > limits.header_timeout:
            NOTES.note("headers", f"closed connections that sent no complete headers in {limits.header_timeout:g} s")
            self.transport.write(TIMEOUT_408)
            self.transport.close()
            return
        if phase == "body" and (now - self._since > limits.body_timeout or now - self._last > limits.body_idle_timeout):
            NOTES.note("body", "closed connections whose request body stalled")
            self.transport.close()
            return
        self._timer = self.loop.call_later(TICK_SECONDS, self._tick)


def __getattr__(name: str) -> Any:
    """``GuardedH11Protocol``, defined when first asked for: uvicorn looks it up by name, and
    only when it serves with h11 (importing h11 costs start-up time the httptools stack saves)."""
    if name != "GuardedH11Protocol":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(_Guarded, H11Protocol):
        """uvicorn's h11 protocol, guarded."""

    GuardedH11Protocol.__qualname__ = name
    globals()[name] = GuardedH11Protocol
    return GuardedH11Protocol


PROTOCOLS = {"h11": "wanmock.mockserver.netguard:GuardedH11Protocol"}
if importlib.util.find_spec("httptools") is not None:
    from uvicorn.protocols.http.httptools_impl import (
        HEADER_RE,
        HEADER_VALUE_RE,
        STATUS_LINE,
        HttpToolsProtocol,
        RequestResponseCycle,
    )

    UVICORN_DECIDES = (b"connection", b"transfer-encoding")  # headers only uvicorn's send handles

    class _HeldWrites:
        """Where a coalescing cycle's writes wait between its head and its first body message."""

        __slots__ = ("parts", "real")

        def __init__(self, real: asyncio.Transport) -> None:
            self.real = real
            self.parts: list[bytes] = []

        def write(self, data: bytes) -> None:
            self.parts.append(data)

        def is_closing(self) -> bool:
            return self.real.is_closing()

        def flush(self) -> asyncio.Transport:
            if self.parts:
                self.real.write(b"".join(self.parts))
                self.parts = []
            return self.real

        def close(self) -> None:  # the app failed after its head: the head goes out, then the close
            self.flush().close()

    class CoalescingCycle(RequestResponseCycle):
        """uvicorn's request-response cycle, except that a response whose start message says its
        body follows at once (``ONE_WRITE``) is written in one write, head and body: one
        system call and one TCP segment for a provider's answer instead of two."""

        async def send(self, message: Any) -> None:
            if message["type"] == "http.response.start" and message.get(ONE_WRITE):
                self.transport = _HeldWrites(self.transport)  # type: ignore[assignment]
                await super().send(message)
                return
            await super().send(message)
            held: Any = self.transport
            if type(held) is _HeldWrites:  # the first body message: written with the head
                self.transport = held.flush()

        def take_body(self) -> bytes | None:
            """``http.TAKE_BODY``: the whole request body when it has all arrived and nothing
            has read it yet, taken as ``receive()`` takes it, without a message or an await;
            None in any other case (a body still arriving, reading paused, a 100-continue owed,
            a disconnect), where the app reads ``receive`` as usual."""
            if (
                self.more_body
                or self.disconnected
                or self.response_complete
                or self.waiting_for_100_continue
                or self.flow.read_paused
                or not self.message_event.is_set()
            ):
                return None
            body = bytes(self.body)
            self.body = type(self.body)()  # uvicorn's own type for it (bytes or bytearray)
            self.message_event.clear()
            return body

        def write_answer(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
            """``http.WRITE_ANSWER``: what ``send`` does with a start message whose headers give
            the body's length and one body message that ends the answer (for HEAD, the body is
            not written), done in one call and one write. False, with nothing done, where
            uvicorn's ``send`` has more to decide (an answer already started, writing paused, an
            access log, a connection or transfer-encoding header, a content-length that is not
            the body's): the app then sends the messages."""
            if self.response_started or self.disconnected or self.flow.write_paused or self.access_log:
                return False
            content = [STATUS_LINE[status]]
            for name, value in self.default_headers:  # the server's own (date, server)
                content += (name, b": ", value, b"\r\n")
            length = None
            for name, value in headers:
                lowered = name.lower()
                if lowered in UVICORN_DECIDES or HEADER_RE.search(name) or HEADER_VALUE_RE.search(value):
                    return False
                if lowered == b"content-length":
                    if length is not None:  # twice: uvicorn's send reads the first
                        return False
                    length = value
                content += (lowered, b": ", value, b"\r\n")
            if length is None or not length.isdigit() or int(length) != len(body):
                return False
            if not self.keep_alive:
                content.append(b"connection: close\r\n")
            content.append(b"\r\n")
            if self.scope["method"] != "HEAD":
                content.append(body)
            self.response_started, self.waiting_for_100_continue = True, False
            self.chunked_encoding, self.expected_content_length = False, 0
            self.transport.write(b"".join(content))
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()
            return True

    def _run_batch(batch: list[tuple[RequestResponseCycle, Any, GuardedHttpToolsProtocol]]) -> None:
        """Run the requests started in the last turn of the loop (see the module's notes)."""
        ready = batch[:]
        batch.clear()  # requests started from now on (pipelined ones) wait for the next turn
        for cycle, app, protocol in ready:
            protocol._run(cycle, app)

    class GuardedHttpToolsProtocol(_Guarded, HttpToolsProtocol):
        """uvicorn's httptools protocol, guarded; its cycles coalesce (CoalescingCycle), and with
        ``config.wanmock_taskless`` its requests run without a task each (see the module's notes)."""

        _batch: list[tuple[RequestResponseCycle, Any, GuardedHttpToolsProtocol]] | None = None

        def __init__(self, config: Any, server_state: Any, app_state: Any, _loop: Any = None) -> None:
            super().__init__(config, server_state, app_state, _loop)
            if getattr(config, "wanmock_taskless", False):  # one batch per event loop
                self._batch = BATCHES.setdefault(self.loop, [])
            self._empty_context = bool(getattr(config, "reset_contextvars", False))  # uvicorn's option

        def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
            cycle.__class__ = CoalescingCycle  # the same object, with the coalescing send
            batch = self._batch
            if batch is None:
                super()._start_asgi_task(cycle, app)
                return
            if not batch:
                self.loop.call_soon(_run_batch, batch)
            batch.append((cycle, app, self))

        def _run(self, cycle: RequestResponseCycle, app: Any) -> None:
            """Run a request now, in a context of its own as a task would; if it suspends, a
            task takes it over from there (tracked, as uvicorn tracks its tasks)."""
            coro = cycle.run_asgi(app)
            context = contextvars.Context() if self._empty_context else contextvars.copy_context()
            try:
                waiting = context.run(coro.send, None)
            except StopIteration:
                return  # answered without suspending
            except Exception as exc:  # uvicorn's cycle failed (not the app: it catches those); the batch goes on
                self.loop.call_exception_handler({"message": "request failed", "exception": exc, "protocol": self})
                return
            task = self.loop.create_task(_resume(coro, waiting), context=context)
            task.add_done_callback(self.tasks.discard)
            self.tasks.add(task)

        def on_response_complete(self) -> None:
            """What uvicorn does once an answer is sent (count it, read again, start a pipelined
            request), except arming a keep-alive timer: the tick closes an idle connection."""
            self.server_state.total_requests += 1
            if self.transport.is_closing():
                return
            self.flow.resume_reading()
            if self.pipeline:
                self._start_asgi_task(*self.pipeline.pop())
            else:
                self._idle_since = self.loop.time()

    PROTOCOLS["httptools"] = "wanmock.mockserver.netguard:GuardedHttpToolsProtocol"


PROTOCOL = PROTOCOLS["h11"]


def descriptor_budget(wanted: int) -> int:
    """Raise the soft descriptor limit towards the hard one, and return the connection cap that
    fits under it (``wanted`` at most, FD_RESERVE descriptors kept for everything else)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    target = min(target, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - FD_RESERVE))


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """asyncio pauses accepting for a second on EMFILE and logs each time; log once per
    LOG_EVERY seconds instead (other exceptions go to the default handler)."""
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if "out of system resource" in str(context.get("message", "")):
            NOTES.note("emfile", "out of file descriptors: accepting paused for a second")
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
