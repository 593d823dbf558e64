"""Store calls from the event loop: off the loop, with a deadline, failures answered politely.

The server never calls a shared store (SQLite, Redis) on its event loop. ``StoreIO.run`` queues
the call for a few threads of its own and waits at most the store's ``timeout`` plus a margin
for a free thread; the store's own timeouts (Redis socket and connect timeouts, SQLite's busy
timeout) end a blocked call soon after. A thread takes every call queued (up to ``BATCH``) at
once and wakes the event loop once for all their answers, so under load a store call costs a
few microseconds of hand-over, not a thread switch each. A call whose caller has given up is
never run late. A failure (a timeout, a lost connection, a
locked, missing or unreadable file) raises ``StoreUnavailable``, which the provider pipeline
answers with the provider's own 503 and the control plane with ``{"error": ...}`` and 503.

After a failure, calls fail at once for ``RETRY_EVERY`` seconds (no request waits for a store
known to be down; the health check still tries, and a success ends the outage). Failures are
logged one line per kind of error per ``LOG_EVERY`` seconds, with the count of the ones not
logged in between, never with a traceback: an outage writes a few lines a minute, not
megabytes. The memory store does no I/O and is called directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from wanmock.mockserver.store import JournalEntry, MemoryStore, TaskStore, outcome

log = logging.getLogger("wanmock")
T = TypeVar("T")
LOG_EVERY = 10.0  # seconds between two log lines about the same kind of store failure
THREADS = 4  # concurrent store calls per process (each SQLite thread keeps its connection)
BATCH = 64  # calls a thread takes from the queue at once
QUEUE_MARGIN = 1.0  # seconds a call may wait for a free thread on top of the store's timeout
RETRY_EVERY = 1.0  # seconds calls fail at once after a failure, before the store is tried again


class StoreUnavailable(Exception):
    """The store did not answer in time or failed; the request is answered with a 503."""

    def __init__(self, operation: str, reason: str) -> None:
        super().__init__(f"the task store is unavailable ({operation}: {reason})")
        self.operation = operation
        self.reason = reason


Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


class _Expired(Exception):
    """A store call's deadline passed (set on its future, so the thread never runs it late)."""


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(_Expired())


def _settle(done: list[tuple[asyncio.Future[Any], BaseException | None, Any]]) -> None:
    """On the event loop: answer every caller of a batch (one wake-up for all of them)."""
    for future, error, value in done:
        if future.done():  # the caller gave up (its deadline passed)
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)


def _serve(jobs: queue.SimpleQueue[Job | None], store: TaskStore) -> None:
    """A store thread: take every queued call (up to BATCH), run them in order, answer them.
    A store with ``batched()`` (SQLite) commits the batch's writes at once."""
    while True:
        job = jobs.get()
        if job is None:
            return
        batch = [job]
        while len(batch) < BATCH:
            try:
                more = jobs.get_nowait()
            except queue.Empty:
                break
            if more is None:
                jobs.put(None)  # for the next thread: every thread stops
                break
            batch.append(more)
        batched = getattr(store, "batched", None)
        if batched is None:
            answers = _run(batch, store)
        else:  # one commit for the batch's writes (SQLite): answered once committed, or all failed
            try:
                with batched():
                    answers = _run(batch, store)
            except BaseException as exc:
                answers = {}
                for loop, future, _ in batch:
                    answers.setdefault(loop, []).append((future, exc, None))
        for loop, done in answers.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_settle, done)


Answers = dict[asyncio.AbstractEventLoop, list[tuple["asyncio.Future[Any]", BaseException | None, Any]]]


def _run(batch: list[Job], store: TaskStore) -> Answers:
    """Run a batch's calls in order (its journal entries at once) and collect the answers."""
    answers: Answers = {}
    writes = [job for job in batch if isinstance(job[2], JournalWrite) and not job[1].done()]
    # given up: never write late what a 503 answered; journal entries are written below, at once
    live = [job for job in batch if not job[1].done() and not isinstance(job[2], JournalWrite)]
    together = getattr(store, "run_calls", None)  # Redis: one pipeline for the batch
    outcomes = together([call for _, _, call in live]) if together is not None else [outcome(c) for _, _, c in live]
    for (loop, future, _), (failure, value) in zip(live, outcomes, strict=True):
        answers.setdefault(loop, []).append((future, failure, value))
    if writes:  # the batch's journal entries: one transaction (SQLite), one round trip (Redis)
        first = writes[0][2]
        assert isinstance(first, JournalWrite)
        error: BaseException | None = None
        try:
            first.store.append_many([call.entry for _, _, call in writes if isinstance(call, JournalWrite)])
        except BaseException as exc:
            error = exc
        for loop, future, _ in writes:
            answers.setdefault(loop, []).append((future, error, None))
    return answers


class JournalWrite:
    """A queued journal entry: the entries a store thread finds queued together are written at once."""

    __name__ = "append"

    def __init__(self, store: TaskStore, entry: JournalEntry) -> None:
        self.store = store
        self.entry = entry

    def __call__(self) -> None:
        self.store.append(self.entry)


class StoreIO:
    """Runs one store's calls for the server and remembers how the last one went."""

    def __init__(self, store: TaskStore, threads: int | None = None) -> None:
        self.store = store
        # a store may say how many threads serve it best (SQLite: its writes take turns anyway)
        threads = threads if threads is not None else int(getattr(store, "threads", THREADS))
        self.direct = not store.shared  # calls may be made directly, on the loop (the memory store)
        # the memory store itself, for the calls only it has (flat journal records, peeked tasks)
        self.memory = store if self.direct and isinstance(store, MemoryStore) else None
        self._threads = threads
        self._jobs: queue.SimpleQueue[Job | None] | None = None
        self._lock = threading.Lock()
        self._failure: tuple[float, str] | None = None  # (since, reason) while failing
        self._retry_at = 0.0  # monotonic instant before which calls fail at once
        self._logged: dict[str, tuple[float, int]] = {}  # kind -> (last logged at, not logged since)

    @property
    def deadline(self) -> float:
        return float(self.store.timeout) + QUEUE_MARGIN

    def _queue(self) -> queue.SimpleQueue[Job | None]:
        with self._lock:
            if self._jobs is None:
                self._jobs = queue.SimpleQueue()
                for n in range(self._threads):
                    name = f"wanmock-store-{n}"
                    threading.Thread(target=_serve, args=(self._jobs, self.store), name=name, daemon=True).start()
            return self._jobs

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        """``call(*args)``: directly for the memory store, else on the store's threads within
        the deadline. Exceptions that are not store failures (a refused transition) pass through."""
        if not self.store.shared:
            return call(*args)
        return await self._attempt(call, *args)

    async def append(self, entry: JournalEntry) -> None:
        """Record a journal entry; entries queued together are written in one go."""
        if not self.store.shared:
            self.store.append(entry)
            return
        await self._attempt(JournalWrite(self.store, entry))

    async def _attempt(self, call: Callable[..., T], *args: Any, probe: bool = False) -> T:
        operation = getattr(call, "__name__", "call")
        failure = self._failure
        if failure is not None and not probe and time.monotonic() < self._retry_at:
            raise self.failed(operation, failure[1], tried=False)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        timer = loop.call_later(self.deadline, _expire, future)  # cheaper than wait_for, same effect
        self._queue().put((loop, future, functools.partial(call, *args)))
        try:
            result = await future
        except _Expired:
            raise self.failed(operation, f"no answer within {self.deadline:g} s") from None
        except self.store.failures as exc:
            raise self.failed(operation, f"{type(exc).__name__}: {exc}") from exc
        finally:
            timer.cancel()
        self._failure = None
        return result

    def failed(self, operation: str, reason: str, tried: bool = True) -> StoreUnavailable:
        """Record a failure, log it (rate-limited) and return the exception to raise."""
        now = time.monotonic()
        if tried:
            self._retry_at = now + RETRY_EVERY
            if self._failure is None:
                self._failure = (time.time(), reason)
        kind = reason.partition(":")[0]  # the kind of error, whatever the operation
        with self._lock:
            last, skipped = self._logged.get(kind, (-LOG_EVERY, 0))
            if tried and now - last >= LOG_EVERY:
                self._logged[kind] = (now, 0)
                more = f" ({skipped} more like it in the last {now - last:.0f} s)" if skipped and last >= 0 else ""
                log.error("wanmock: the task store is unavailable: %s: %s%s", operation, reason, more)
            else:
                self._logged[kind] = (last, skipped + 1)
        return StoreUnavailable(operation, reason)

    async def check(self) -> dict[str, Any]:
        """The store's state for /__admin/health: ping it (within the deadline)."""
        if not self.store.shared:
            count = getattr(self.store, "count", None)
            return {"state": "ok", "error": None, "since": None, **({"tasks": count()} if count else {})}
        try:
            await self._attempt(self.store.ping, probe=True)
        except StoreUnavailable as exc:
            return {"state": "unavailable", "error": exc.reason, "since": self._failure and self._failure[0]}
        return {"state": "ok", "error": None, "since": None}

    def close(self) -> None:
        with self._lock:
            jobs, self._jobs = self._jobs, None
        if jobs is not None:
            jobs.put(None)  # the threads stop once the calls queued before have run
