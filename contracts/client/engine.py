"""The reference client: WanClient (sync) and AsyncWanClient, one normalised API over all
four providers, on httpx.

The logic lives once, as generators that yield steps — ``Send`` a request, ``Sleep`` a while —
and receive replies; the two clients only drive them with blocking or awaiting I/O. Sleeping
and time are injectable, so tests run lifecycles on the mock's manual clock.

Retry policy: a submit is never retried (it costs money; a transport error on submit raises
``TransportError(outcome_unknown=True)``, a 5xx answer a ``ServerError`` with
``outcome_unknown=True``). Polls are retried on transport errors, 429 and 500/502/503/504,
honouring ``Retry-After`` (a finite number of seconds or an HTTP date; capped by
``max_retry_after`` and by the ``wait()`` deadline), up to ``poll_retries`` times.

Against a hostile or broken server: ``timeout`` bounds each whole call (connect, send, every
read: a server dripping a byte a second cannot stretch it), an answer larger than
``max_response_bytes`` is refused while it streams, and ``download()`` writes to a temporary
file next to the target, checks its length, and only then renames it over the target.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from wanmock.contracts.client import errors
from wanmock.contracts.client.dialects import Dialect, dialect_for, retry_after
from wanmock.contracts.client.models import PreparedRequest, TaskHandle, TaskStatus, VideoRequest

T = TypeVar("T")
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024  # a poll answer is a few kB
DEFAULT_MAX_RETRY_AFTER = 300.0
ERROR_BODY_BYTES = 64 * 1024  # what is kept of a failed download's answer


@dataclass(frozen=True)
class Send:
    request: PreparedRequest
    idempotent: bool


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: Any


Step = Send | Sleep
Steps = Generator[Step, Reply | None, T]


def api_key_variable(provider: str) -> str:
    """The environment variable holding ``provider``'s key: MODELLIX_API_KEY, DASHSCOPE_API_KEY, ..."""
    return f"{provider.upper()}_API_KEY"


def api_key_from_env(provider: str) -> str | None:
    return os.environ.get(api_key_variable(provider)) or None


class Engine:
    """The shared, I/O-free behaviour of both clients."""

    def __init__(
        self,
        dialect: Dialect,
        *,
        poll_retries: int,
        now: Callable[[], float],
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
    ) -> None:
        self.dialect = dialect
        self.poll_retries = poll_retries
        self.now = now
        self.max_retry_after = max_retry_after
        polling = dialect.provider.manifest["polling"]
        self.initial = float(polling["initial_seconds"])
        self.longest = float(polling["max_seconds"])
        self.backoff = float(polling.get("backoff", 1.0))

    def submit(self, request: VideoRequest) -> Steps[TaskHandle]:
        prepared = self.dialect.prepare_submit(request)
        reply = yield Send(prepared, idempotent=False)
        assert reply is not None
        try:
            handle = self.dialect.parse_submit(request.kind, reply.status, reply.headers, reply.body)
        except errors.ApiError as exc:
            if exc.status is not None and exc.status >= 500:  # the provider may have created the task
                exc.outcome_unknown = True
                exc.args = (f"{exc} — the submit's outcome is unknown; it is not retried (check before resubmitting)",)
            raise
        return TaskHandle(handle.provider, handle.task_id, handle.kind, request)

    def _pause(self, handle: TaskHandle, seconds: float, deadline: float | None) -> float:
        """``seconds`` capped by max_retry_after and by what is left before ``deadline``."""
        seconds = min(seconds, self.max_retry_after)
        if deadline is None:
            return seconds
        left = deadline - self.now()
        if left <= 0:
            raise errors.WaitTimeout(
                f"{handle.provider} task {handle.task_id}: the wait() deadline passed while the provider "
                "asked to retry later",
                provider=handle.provider,
                task_id=handle.task_id,
                last_state=None,
            )
        return min(seconds, left)

    def poll(self, handle: TaskHandle, deadline: float | None = None) -> Steps[TaskStatus]:
        attempt = 0
        while True:
            try:
                reply = yield Send(self.dialect.prepare_poll(handle.task_id), idempotent=True)
            except errors.TransportError:
                attempt += 1
                if attempt > self.poll_retries:
                    raise
                yield Sleep(self._pause(handle, min(self.initial * 2**attempt, self.longest), deadline))
                continue
            assert reply is not None
            if reply.status in RETRYABLE_STATUS and attempt < self.poll_retries:
                attempt += 1
                wait = retry_after(reply.headers)
                backoff = min(self.initial * 2**attempt, self.longest)
                yield Sleep(self._pause(handle, wait if wait is not None else backoff, deadline))
                continue
            return self.dialect.parse_poll(handle.task_id, reply.status, reply.headers, reply.body)

    def wait(self, handle: TaskHandle, timeout: float, poll_interval: float | None = None) -> Steps[TaskStatus]:
        """Poll until the task ends. By default at the provider's documented cadence (the manifest's
        ``polling``: its first interval, backing off to its longest); ``poll_interval`` polls every
        that many seconds instead (a fast mock needs no 15 s pauses)."""
        if poll_interval is not None and poll_interval <= 0:
            raise ValueError("poll_interval must be more than 0 seconds")
        started = self.now()
        interval = self.initial if poll_interval is None else poll_interval
        while True:
            status = yield from self.poll(handle, started + timeout)
            if status.state == "succeeded":
                return status
            if status.state in ("failed", "canceled"):
                detail = f"{status.error_code}: {status.error_message}" if status.error_code else status.word
                raise errors.TaskFailedError(
                    f"{handle.provider} task {handle.task_id} ended {status.word} ({detail})",
                    provider=handle.provider,
                    task_id=handle.task_id,
                    code=status.error_code,
                )
            if status.state == "unknown":
                raise errors.TaskExpiredError(
                    f"{handle.provider} task {handle.task_id} is unknown or expired",
                    provider=handle.provider,
                    task_id=handle.task_id,
                )
            if self.now() - started + interval > timeout:
                raise errors.WaitTimeout(
                    f"{handle.provider} task {handle.task_id} still {status.word} after {timeout:g} s",
                    provider=handle.provider,
                    task_id=handle.task_id,
                    last_state=status.state,
                )
            yield Sleep(interval)
            if poll_interval is None:
                interval = min(interval * self.backoff, self.longest)


def _reply(response: httpx.Response, raw: bytes) -> Reply:
    try:
        body: Any = json.loads(raw)
    except (ValueError, RecursionError):
        body = raw.decode(response.encoding or "utf-8", "replace")
    return Reply(response.status_code, response.headers, body)


class _Deadline(dict[str, float | None]):
    """The timeouts httpcore reads before each connect, write and read: each one no longer than
    what is left before the call's deadline, so the whole call is bounded, not each read."""

    def __init__(self, base: Mapping[str, float | None], deadline: float) -> None:
        super().__init__(base)
        self.deadline = deadline

    def get(self, key: str, default: Any = None) -> Any:
        value = super().get(key, default)
        left = max(self.deadline - time.monotonic(), 0.001)
        return left if value is None else min(value, left)


class _Limits:
    """A call's deadline and size cap, checked as the answer streams in."""

    def __init__(self, request: httpx.Request, seconds: float, max_bytes: int) -> None:
        self.request = request
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.max_bytes = max_bytes
        self.size = 0
        request.extensions["timeout"] = _Deadline(request.extensions.get("timeout", {}), self.deadline)

    def check(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise httpx.DecodingError(f"the answer exceeds {self.max_bytes} bytes", request=self.request)
        if time.monotonic() > self.deadline:
            raise httpx.ReadTimeout(f"the call took longer than {self.seconds:g} s", request=self.request)


def _temporary_next_to(target: Path) -> tuple[Any, Path]:
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed by the caller
        dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False
    )
    return handle, Path(handle.name)


def _check_length(response: httpx.Response, written: int, provider: str) -> None:
    declared = response.headers.get("content-length")
    encoded = response.headers.get("content-encoding", "identity").lower() not in ("", "identity")
    if declared is not None and declared.isdigit() and not encoded and int(declared) != written:
        raise errors.TransportError(
            f"result download truncated: {written} of {declared} bytes arrived", provider=provider
        )


class _Base:
    def __init__(
        self,
        provider: str,
        api_key: str | None,
        base_url: str | None,
        poll_retries: int,
        clock: Callable[[], float],
        dialect: Dialect | None,
        timeout: float = 60.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
    ) -> None:
        if not (timeout > 0 and max_response_bytes > 0 and max_retry_after >= 0):
            raise ValueError("timeout and max_response_bytes must be positive, max_retry_after not negative")
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.dialect = dialect or dialect_for(provider)
        self.provider = self.dialect.name
        key = api_key if api_key is not None else api_key_from_env(self.provider)
        if not key:
            raise errors.AuthenticationError(
                f"no API key for {self.provider}: pass api_key= or set {api_key_variable(self.provider)}",
                provider=self.provider,
            )
        self._key = key
        self.base_url = (base_url or self.dialect.provider.base_url).rstrip("/")
        self.engine = Engine(self.dialect, poll_retries=poll_retries, now=clock, max_retry_after=max_retry_after)

    def __repr__(self) -> str:  # never show the key
        return f"{type(self).__name__}(provider={self.provider!r}, base_url={self.base_url!r})"

    def _build(self, prepared: PreparedRequest) -> tuple[str, dict[str, str]]:
        headers = {**prepared.headers, "Authorization": f"Bearer {self._key}"}
        return self.base_url + prepared.path, headers

    def _transport_error(self, step: Send, exc: Exception) -> errors.TransportError:
        unknown = not step.idempotent
        suffix = " — the submit's outcome is unknown; it is not retried (check before resubmitting)" if unknown else ""
        return errors.TransportError(
            f"{self.provider} {step.request.method} {step.request.path}: {type(exc).__name__}: {exc}{suffix}",
            provider=self.provider,
            outcome_unknown=unknown,
        )


class WanClient(_Base):
    """Blocking client. ``WanClient("dashscope").wait(client.submit(TextToVideo("a cat")))``."""

    def __init__(
        self,
        provider: str,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 60.0,
        poll_retries: int = 5,
        sleep: Callable[[float], Any] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        dialect: Dialect | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
    ) -> None:
        super().__init__(
            provider, api_key, base_url, poll_retries, clock, dialect, timeout, max_response_bytes, max_retry_after
        )
        self._sleep = sleep
        self.http = httpx.Client(transport=transport, timeout=timeout)

    def _exchange(self, step: Send) -> Reply:
        url, headers = self._build(step.request)
        request = self.http.build_request(
            step.request.method, url, headers=headers, json=step.request.body, params=step.request.params
        )
        limits = _Limits(request, self.timeout, self.max_response_bytes)
        response = self.http.send(request, stream=True)
        try:
            chunks = []
            for chunk in response.iter_bytes():
                limits.check(chunk)
                chunks.append(chunk)
        finally:
            response.close()
        return _reply(response, b"".join(chunks))

    def _drive(self, steps: Steps[T]) -> T:
        reply: Reply | None = None
        error: Exception | None = None
        while True:
            try:
                step = steps.throw(error) if error is not None else steps.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            reply, error = None, None
            if isinstance(step, Sleep):
                self._sleep(step.seconds)
                continue
            try:
                reply = self._exchange(step)
            except httpx.HTTPError as exc:
                error = self._transport_error(step, exc)

    def submit(self, request: VideoRequest) -> TaskHandle:
        return self._drive(self.engine.submit(request))

    def poll(self, handle: TaskHandle) -> TaskStatus:
        return self._drive(self.engine.poll(handle))

    def wait(self, handle: TaskHandle, timeout: float = 1200.0, *, poll_interval: float | None = None) -> TaskStatus:
        """Poll until the task ends (see ``Engine.wait``); ``poll_interval`` overrides the provider's cadence."""
        return self._drive(self.engine.wait(handle, timeout, poll_interval))

    def download(self, status: TaskStatus, path: str | Path) -> Path:
        """Stream the result video to ``path``. Never sends credentials to the result host."""
        if not status.result_url:
            raise errors.WanError(f"task {status.task_id} has no result URL (it is {status.word})")
        target = Path(path)
        handle, part = _temporary_next_to(target)
        try:
            with handle, self.http.stream("GET", status.result_url) as response:
                if response.status_code != 200:
                    head = b""
                    for chunk in response.iter_bytes():
                        head += chunk
                        if len(head) >= ERROR_BODY_BYTES:
                            break
                    text = head.decode("utf-8", "replace")
                    raise errors.ApiError(
                        f"result download answered {response.status_code}: {text[:200]}",
                        provider=self.provider,
                        status=response.status_code,
                    )
                written = 0
                for chunk in response.iter_bytes():
                    handle.write(chunk)
                    written += len(chunk)
            _check_length(response, written, self.provider)
            os.replace(part, target)
        except httpx.HTTPError as exc:
            raise errors.TransportError(f"result download failed: {exc}", provider=self.provider) from exc
        finally:
            part.unlink(missing_ok=True)
        return target

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> WanClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncWanClient(_Base):
    """The same API with ``await``; ``sleep`` may be a coroutine function or a plain one."""

    def __init__(
        self,
        provider: str,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 60.0,
        poll_retries: int = 5,
        sleep: Callable[[float], Awaitable[Any] | Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        dialect: Dialect | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
    ) -> None:
        super().__init__(
            provider, api_key, base_url, poll_retries, clock, dialect, timeout, max_response_bytes, max_retry_after
        )
        self._sleep = sleep
        self.http = httpx.AsyncClient(transport=transport, timeout=timeout)

    async def _exchange(self, step: Send) -> Reply:
        import asyncio

        url, headers = self._build(step.request)
        request = self.http.build_request(
            step.request.method, url, headers=headers, json=step.request.body, params=step.request.params
        )
        limits = _Limits(request, self.timeout, self.max_response_bytes)

        async def call() -> Reply:
            response = await self.http.send(request, stream=True)
            try:
                chunks = []
                async for chunk in response.aiter_bytes():
                    limits.check(chunk)
                    chunks.append(chunk)
            finally:
                await response.aclose()
            return _reply(response, b"".join(chunks))

        try:
            return await asyncio.wait_for(call(), self.timeout)
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"the call took longer than {self.timeout:g} s", request=request) from exc

    async def _pause(self, seconds: float) -> None:
        import asyncio
        import inspect

        if self._sleep is None:
            await asyncio.sleep(seconds)
            return
        result = self._sleep(seconds)
        if inspect.isawaitable(result):
            await result

    async def _drive(self, steps: Steps[T]) -> T:
        reply: Reply | None = None
        error: Exception | None = None
        while True:
            try:
                step = steps.throw(error) if error is not None else steps.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            reply, error = None, None
            if isinstance(step, Sleep):
                await self._pause(step.seconds)
                continue
            try:
                reply = await self._exchange(step)
            except httpx.HTTPError as exc:
                error = self._transport_error(step, exc)

    async def submit(self, request: VideoRequest) -> TaskHandle:
        return await self._drive(self.engine.submit(request))

    async def poll(self, handle: TaskHandle) -> TaskStatus:
        return await self._drive(self.engine.poll(handle))

    async def wait(
        self, handle: TaskHandle, timeout: float = 1200.0, *, poll_interval: float | None = None
    ) -> TaskStatus:
        return await self._drive(self.engine.wait(handle, timeout, poll_interval))

    async def download(self, status: TaskStatus, path: str | Path) -> Path:
        if not status.result_url:
            raise errors.WanError(f"task {status.task_id} has no result URL (it is {status.word})")
        target = Path(path)
        handle, part = _temporary_next_to(target)
        try:
            with handle:
                async with self.http.stream("GET", status.result_url) as response:
                    if response.status_code != 200:
                        head = b""
                        async for chunk in response.aiter_bytes():
                            head += chunk
                            if len(head) >= ERROR_BODY_BYTES:
                                break
                        text = head.decode("utf-8", "replace")
                        raise errors.ApiError(
                            f"result download answered {response.status_code}: {text[:200]}",
                            provider=self.provider,
                            status=response.status_code,
                        )
                    written = 0
                    async for chunk in response.aiter_bytes():
                        handle.write(chunk)
                        written += len(chunk)
            _check_length(response, written, self.provider)
            os.replace(part, target)
        except httpx.HTTPError as exc:
            raise errors.TransportError(f"result download failed: {exc}", provider=self.provider) from exc
        finally:
            part.unlink(missing_ok=True)
        return target

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncWanClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
