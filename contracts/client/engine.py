"""The reference client: WanClient (sync) and AsyncWanClient, one normalised API over all
four providers, on httpx.

The logic lives once, as generators that yield steps — ``Send`` a request, ``Sleep`` a while —
and receive replies; the two clients only drive them with blocking or awaiting I/O. Sleeping
and time are injectable, so tests run lifecycles on the mock's manual clock.

Retry policy: a submit is never retried (it costs money; a transport error on submit raises
``TransportError(outcome_unknown=True)``). Polls are retried on transport errors, 429 and
500/502/503/504, honouring ``Retry-After``, up to ``poll_retries`` times.
"""

from __future__ import annotations

import os
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

    def __init__(self, dialect: Dialect, *, poll_retries: int, now: Callable[[], float]) -> None:
        self.dialect = dialect
        self.poll_retries = poll_retries
        self.now = now
        polling = dialect.provider.manifest["polling"]
        self.initial = float(polling["initial_seconds"])
        self.longest = float(polling["max_seconds"])
        self.backoff = float(polling.get("backoff", 1.0))

    def submit(self, request: VideoRequest) -> Steps[TaskHandle]:
        prepared = self.dialect.prepare_submit(request)
        reply = yield Send(prepared, idempotent=False)
        assert reply is not None
        handle = self.dialect.parse_submit(request.kind, reply.status, reply.headers, reply.body)
        return TaskHandle(handle.provider, handle.task_id, handle.kind, request)

    def poll(self, handle: TaskHandle) -> Steps[TaskStatus]:
        attempt = 0
        while True:
            try:
                reply = yield Send(self.dialect.prepare_poll(handle.task_id), idempotent=True)
            except errors.TransportError:
                attempt += 1
                if attempt > self.poll_retries:
                    raise
                yield Sleep(min(self.initial * 2**attempt, self.longest))
                continue
            assert reply is not None
            if reply.status in RETRYABLE_STATUS and attempt < self.poll_retries:
                attempt += 1
                wait = retry_after(reply.headers)
                yield Sleep(wait if wait is not None else min(self.initial * 2**attempt, self.longest))
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
            status = yield from self.poll(handle)
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


def _reply(response: httpx.Response) -> Reply:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return Reply(response.status_code, response.headers, body)


class _Base:
    def __init__(
        self,
        provider: str,
        api_key: str | None,
        base_url: str | None,
        poll_retries: int,
        clock: Callable[[], float],
        dialect: Dialect | None,
    ) -> None:
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
        self.engine = Engine(self.dialect, poll_retries=poll_retries, now=clock)

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
    ) -> None:
        super().__init__(provider, api_key, base_url, poll_retries, clock, dialect)
        self._sleep = sleep
        self.http = httpx.Client(transport=transport, timeout=timeout)

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
            url, headers = self._build(step.request)
            try:
                response = self.http.request(
                    step.request.method, url, headers=headers, json=step.request.body, params=step.request.params
                )
                reply = _reply(response)
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
        try:
            with self.http.stream("GET", status.result_url) as response:
                if response.status_code != 200:
                    response.read()
                    raise errors.ApiError(
                        f"result download answered {response.status_code}: {response.text[:200]}",
                        provider=self.provider,
                        status=response.status_code,
                    )
                with target.open("wb") as handle:
                    for chunk in response.iter_bytes():
                        handle.write(chunk)
        except httpx.HTTPError as exc:
            raise errors.TransportError(f"result download failed: {exc}", provider=self.provider) from exc
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
    ) -> None:
        super().__init__(provider, api_key, base_url, poll_retries, clock, dialect)
        self._sleep = sleep
        self.http = httpx.AsyncClient(transport=transport, timeout=timeout)

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
            url, headers = self._build(step.request)
            try:
                response = await self.http.request(
                    step.request.method, url, headers=headers, json=step.request.body, params=step.request.params
                )
                reply = _reply(response)
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
        try:
            async with self.http.stream("GET", status.result_url) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise errors.ApiError(
                        f"result download answered {response.status_code}: {response.text[:200]}",
                        provider=self.provider,
                        status=response.status_code,
                    )
                with target.open("wb") as handle:
                    async for chunk in response.aiter_bytes():
                        handle.write(chunk)
        except httpx.HTTPError as exc:
            raise errors.TransportError(f"result download failed: {exc}", provider=self.provider) from exc
        return target

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncWanClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
