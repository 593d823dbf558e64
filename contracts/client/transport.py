"""A synchronous httpx transport for an in-process ASGI app (httpx ships only an async one).

The app runs on an event loop in a daemon thread; each request is handed over, awaited there,
and its response read in full. Several clients may share one transport: ``close()`` (which a
client calls) leaves it running; ``shutdown()`` stops it. Good for tests and the in-process
contract runner; use a real server (``wanmock serve``) where streaming matters.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx


class SocketLikeASGITransport(httpx.ASGITransport):
    """httpx's ASGI transport, but an app that breaks off a response (wanmock's "drop" fault
    rule) surfaces as the protocol error a real socket would give, not as the app's exception."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except Exception as exc:
            raise httpx.RemoteProtocolError(f"peer closed connection ({type(exc).__name__})", request=request) from exc


class ASGIThreadTransport(httpx.BaseTransport):
    def __init__(self, app: Any) -> None:
        self._inner = SocketLikeASGITransport(app=app)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="wanmock-asgi", daemon=True)
        self._thread.start()

    async def _call(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        content = await response.aread()
        return httpx.Response(response.status_code, headers=response.headers, content=content)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        forwarded = httpx.Request(request.method, request.url, headers=request.headers, content=body)
        future = asyncio.run_coroutine_threadsafe(self._call(forwarded), self._loop)
        response = future.result()
        return httpx.Response(response.status_code, headers=response.headers, content=response.content, request=request)

    def close(self) -> None:
        """Clients close their transport; this one may be shared, so only shutdown() stops it."""

    def shutdown(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if not self._loop.is_running() and not self._loop.is_closed():
            self._loop.close()
