"""`wanmock record`: capture live exchanges with a provider into a cassette, for replay by the mock.

A recording sends the free probes first — a refused key, an invalid body, an unknown task id —
then, within ``budget`` (default 0: nothing is spent), billable submissions of one model kind with
the cheapest parameters (720P, the shortest duration the schema allows), each polled to the end by
the reference client at the provider's documented cadence.

The cassette format (one file, ``DIR/cassette.json``) is described, read and written by
``wanmock.mockserver.cassette``, the module the replay reads it with.

Nothing secret reaches the file: :func:`scrub` runs over every header, query and body before it
is kept, even in memory. ``Authorization``, ``Proxy-Authorization``, ``X-Api-Key``,
``Cookie``, ``Set-Cookie`` and other credential headers and fields become ``<redacted>``; the API
key is replaced by ``<redacted>`` inside any string, in every form (plain, URL-encoded, base64;
see :mod:`wanmock.mockserver.scrub`); in every URL, signed-URL query parameters (``Signature``,
``Expires``, ``X-Amz-*``, ``X-Oss-*``, ``OSSAccessKeyId``, ``security-token``, ``AccessKeyId``,
...) and any query value longer than 40 characters become ``<redacted>``, as does user info
(``user:pass@``). Request ids stay, so a recording can be matched with the provider's logs.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx
from wanmock.contracts.client import errors
from wanmock.contracts.client.engine import WanClient
from wanmock.contracts.tools.control import Control, NotAWanmock, ServerInfo, find_wanmock, identify, token_scoped
from wanmock.contracts.tools.probes import (
    cheapest_request,
    free_probes,
    uses_example_media,
)
from wanmock.mockserver.cassette import CASSETTE_FILE, CASSETTE_VERSION, write_cassette
from wanmock.mockserver.routing import Match, Router
from wanmock.mockserver.scrub import scrub as scrub_all
from wanmock.mockserver.scrub import scrub_url as scrub_url
from wanmock.schemas import catalog, resolve_pointer

# -- scrubbing ------------------------------------------------------------------------------


def scrub(obj: Any, keys: Iterable[str] = ()) -> Any:
    """A copy of ``obj`` safe to write to a cassette: delegates to the one scrubber,
    :func:`wanmock.mockserver.scrub.scrub` (credential fields, every form of each key in
    ``keys``, URL signatures and user info)."""
    return scrub_all(obj, keys)


# -- the recording transport ----------------------------------------------------------------


def _json_or_text(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


class Recorder:
    """Builds a cassette from exchanges, each scrubbed before it is kept (no I/O: a transport or
    the proxy feeds it). ``keys`` are the API keys to redact; :meth:`add_key` adds one seen later."""

    def __init__(self, provider: str, base_url: str, *, keys: Iterable[str], now: Callable[[], float]) -> None:
        self.provider = catalog().provider(provider)
        self.router = Router(self.provider)
        self.base_url = base_url.rstrip("/")
        self.base_path = urlsplit(base_url).path.rstrip("/")
        self.keys = tuple(k for k in keys if k)
        self.now = now
        self.started = now()
        self.probe = "paid"
        self.interactions: list[dict[str, Any]] = []
        self.tasks: dict[str, dict[str, Any]] = {}
        self._submitted: dict[str, float] = {}

    def add_key(self, key: str) -> None:
        if key and key not in self.keys:
            self.keys = (*self.keys, key)

    def relative(self, path: str) -> str:
        """``path`` relative to the base URL's path."""
        if self.base_path and path.startswith(self.base_path):
            return path[len(self.base_path) :] or "/"
        return path

    def classify(self, method: str, path: str, query: Mapping[str, str]) -> tuple[str, str | None, str | None]:
        """(endpoint, task id named by the request, model id named by the request)."""
        found = self.router.match(method, path)
        if not isinstance(found, Match):
            return "other", None, None
        task_id = found.params.get("task_id")
        for param, placeholder in found.endpoint.query.items():
            if placeholder == "{task_id}":
                task_id = query.get(param)
        name = found.endpoint.name
        return (name if name in ("submit", "poll") else "other"), task_id, found.params.get("model")

    def add(
        self,
        *,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: Any,
        status: int,
        response_headers: Mapping[str, str],
        response_body: Any,
        sent: float,
        probe: str | None = None,
    ) -> dict[str, Any]:
        """Keep one exchange (``path`` relative to the base URL, ``sent`` on ``now``'s clock)."""
        endpoint, task_id, model_id = self.classify(method, path, dict(query))
        interaction: dict[str, Any] = {
            "request": {
                "method": method,
                "path": path,
                "query": scrub(dict(query), self.keys),
                "headers": scrub(dict(headers), self.keys),
                "body": scrub(body, self.keys),
            },
            "response": {
                "status": status,
                "headers": scrub(dict(response_headers), self.keys),
                "body": scrub(response_body, self.keys),
            },
            "elapsed": 0.0,
            "task_id": task_id,
            "endpoint": endpoint,
            "probe": probe or self.probe,
        }
        index = len(self.interactions)
        self.interactions.append(interaction)
        if endpoint == "submit" and status == 200:
            created = _pointer(response_body, self.provider.task_fields["id_in_submit"])
            if isinstance(created, str) and created:
                task_id = interaction["task_id"] = created
                if model_id is None and isinstance(body, dict):
                    model_id = body.get("model")
                model = self.provider.model_for_id(model_id) if isinstance(model_id, str) else None
                self.tasks[created] = {"kind": model.kind if model else None, "submit": index, "polls": []}
                self._submitted[created] = sent
        if endpoint == "poll" and task_id in self.tasks:
            self.tasks[task_id]["polls"].append(index)
        interaction["elapsed"] = round(sent - self._submitted.get(task_id or "", self.started), 3)
        return interaction

    def cassette(self) -> dict[str, Any]:
        """The cassette document (see the module docstring), as of now."""
        return {
            "provider": self.provider.name,
            "recorded_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "wanmock_version": _version(),
            "cassette_version": CASSETTE_VERSION,
            "base_url": scrub(self.base_url, self.keys),
            "interactions": self.interactions,
            "tasks": self.tasks,
        }


class CassetteTransport(httpx.BaseTransport):
    """Wraps a transport and keeps each exchange, scrubbed, as a cassette interaction."""

    def __init__(
        self,
        inner: httpx.BaseTransport,
        provider: str,
        base_url: str,
        *,
        keys: Iterable[str],
        now: Callable[[], float],
    ) -> None:
        self.inner = inner
        self.recorder = Recorder(provider, base_url, keys=keys, now=now)
        self.now = now
        self.on_interaction: Callable[[], None] | None = None  # called after each exchange is kept

    @property
    def interactions(self) -> list[dict[str, Any]]:
        return self.recorder.interactions

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        return self.recorder.tasks

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        sent = self.now()
        body = _json_or_text(request.read())
        response = self.inner.handle_request(request)  # no answer (a transport error): nothing kept
        response.read()
        self.recorder.add(
            method=request.method,
            path=self.recorder.relative(request.url.path),
            query=request.url.params.multi_items(),
            headers=request.headers,
            body=body,
            status=response.status_code,
            response_headers=response.headers,
            response_body=_json_or_text(response.content),
            sent=sent,
        )
        if self.on_interaction is not None:
            self.on_interaction()
        return response

    @contextmanager
    def labelled(self, probe: str) -> Iterator[None]:
        previous, self.recorder.probe = self.recorder.probe, probe
        try:
            yield
        finally:
            self.recorder.probe = previous


def _pointer(body: Any, pointer: str) -> Any:
    try:
        return resolve_pointer(body, pointer)
    except (KeyError, IndexError, ValueError, TypeError):
        return None


# -- what to send ---------------------------------------------------------------------------


# -- a recording ----------------------------------------------------------------------------


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wanmock")
    except PackageNotFoundError:
        return "unknown"


def record(
    provider: str,
    *,
    api_key: str,
    base_url: str,
    transport: httpx.BaseTransport,
    budget: int = 0,
    kind: str = "t2v",
    media: Sequence[str] = (),
    sleep: Callable[[float], Any] = time.sleep,
    now: Callable[[], float] = time.monotonic,
    timeout: float = 1200.0,
    on_change: Callable[[Mapping[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Record the free probes and at most ``budget`` billable tasks of ``kind``; the cassette.

    ``transport`` and ``base_url`` say where requests go (the live provider, a wanmock server,
    an in-process app); ``sleep`` and ``now`` are the time the polls wait on (a manual clock's
    advance and now, against a mock). ``on_change`` gets the cassette so far after every exchange
    (``wanmock record`` writes it down each time, so an interrupted recording keeps what it paid for)."""
    if budget < 0:
        raise errors.WanError("the budget must be 0 or more billable tasks")
    offered = catalog().provider(provider).models
    if kind not in offered:
        raise errors.UnsupportedRequest(f"{provider} does not offer {kind} (it offers {', '.join(offered)})")
    base_url = base_url.rstrip("/")
    recorder = CassetteTransport(transport, provider, base_url, keys=[api_key], now=now)
    if on_change is not None:
        recorder.on_interaction = lambda: on_change(recorder.recorder.cassette())

    def client(key: str) -> WanClient:
        return WanClient(provider, key, base_url=base_url, transport=recorder, sleep=sleep, clock=now, timeout=60)

    # A provider's refusal or a failed task is part of what is recorded, not an error here.
    with client(api_key) as wan, httpx.Client(transport=recorder, timeout=60) as raw:
        for probe in free_probes(provider, api_key, names=("refused-key", "invalid-body", "unknown-task")):
            headers = dict(probe.headers)
            if probe.key is not None:
                headers["Authorization"] = f"Bearer {probe.key}"
            with recorder.labelled(probe.name):
                raw.request(probe.method, base_url + probe.path, headers=headers, json=probe.body, params=probe.params)
        request = cheapest_request(provider, kind, media)
        for _ in range(budget):
            with recorder.labelled("paid"), suppress(errors.WanError):
                wan.wait(wan.submit(request), timeout=timeout)
    return recorder.recorder.cassette()


# -- where to record from -------------------------------------------------------------------


class Pace:
    """Time for the polls: real sleeping, or a wanmock server's manual clock advanced through
    its control plane (``now`` is then the seconds advanced: the only time that server sees)."""

    def __init__(self, admin: Control | None = None) -> None:
        self.admin = admin
        self.offset = 0.0

    def sleep(self, seconds: float) -> None:
        if self.admin is None:
            time.sleep(seconds)
            return
        self.admin.advance(seconds)
        self.offset += seconds

    def now(self) -> float:
        return self.offset if self.admin is not None else time.monotonic()


def target_base(provider: str, url: str) -> tuple[str, ServerInfo | None]:
    """(the provider's base URL at ``url``, the wanmock server there or None). A wanmock server is
    recognised by its health endpoint, at its origin or at a provider base URL under it;
    anything else is taken as the provider's base URL."""
    server = find_wanmock(url)
    if server is None:
        return url.rstrip("/"), None
    try:
        server = identify(url, provider)
    except NotAWanmock as exc:
        raise errors.WanError(str(exc)) from exc
    return server.base_url(provider), server


# -- the command ----------------------------------------------------------------------------


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "record",
        help="record exchanges with a provider into a cassette (for `wanmock serve --cassette`)",
        description="Free probes (a refused key, an invalid body, an unknown task id), then at most "
        "--budget billable submissions with the cheapest parameters, each polled to the end. Keys, "
        "cookies and URL signatures are redacted before anything is written.",
        epilog="""examples:
  wanmock record --provider dashscope --live --out recordings/dashscope              free probes only
  wanmock record --provider dashscope --live --out recordings/dashscope --budget 1 --force
  wanmock record --provider apiyi --target http://127.0.0.1:8000/apiyi --out rec/apiyi --budget 1
  wanmock record --provider modellix --live --out rec/m --budget 1 --model i2v --media https://x/frame.png
  wanmock record --provider aimlapi --live --out rec/a --budget 1 --timeout 600
  wanmock record --provider apiyi --target http://127.0.0.1:8000 --out rec/apiyi --admin-token T

Each exchange is written to DIR/cassette.json as it happens: Ctrl-C (exit 130) keeps what was
recorded. Documentation: docs/DRIFT_AND_RECORDING.md.
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--provider", required=True, choices=sorted(catalog().providers), help="the provider")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--live", action="store_true", help="the live provider (key from <PROVIDER>_API_KEY)")
    where.add_argument(
        "--target",
        help="a wanmock server (its origin or a provider base URL under it) or another base URL "
        "(key: <PROVIDER>_API_KEY or test-key)",
    )
    parser.add_argument("--out", required=True, type=Path, help="the cassette directory (DIR/cassette.json)")
    parser.add_argument("--budget", type=int, default=0, help="at most this many billable submissions (default 0)")
    parser.add_argument("--model", default="t2v", choices=("t2v", "i2v", "videoedit"), help="kind to submit")
    parser.add_argument(
        "--media", nargs="+", default=[], help="i2v: the first frame URL; videoedit: the video, then reference images"
    )
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds to wait for each task (1200)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing cassette")
    parser.add_argument(
        "--admin-token", help="the --target server's control-plane token (default: $WANMOCK_ADMIN_TOKEN)"
    )
    parser.set_defaults(handler=run)


@token_scoped
def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if getattr(args, "admin_token", None):  # the control-plane client reads it (tools.control)
        os.environ["WANMOCK_ADMIN_TOKEN"] = args.admin_token
    if args.budget < 0:
        err.write("wanmock record: --budget must be 0 or more\n")
        return 2
    if args.model not in catalog().provider(args.provider).models:
        err.write(f"wanmock record: {args.provider} does not offer {args.model}\n")
        return 2
    try:
        example = uses_example_media(cheapest_request(args.provider, args.model, args.media))
    except errors.WanError as exc:
        err.write(f"wanmock record: {exc}\n")
        return 2
    if args.live and args.budget and example:
        needed = "the input video and a reference image" if args.model == "videoedit" else "the first frame"
        err.write(f"wanmock record: a live {args.model} recording needs --media URL... ({needed}, fetchable)\n")
        return 2
    if (args.out / CASSETTE_FILE).exists() and not args.force:
        err.write(f"wanmock record: {args.out / CASSETTE_FILE} exists (a paid recording?); --force overwrites it\n")
        return 2
    variable = f"{args.provider.upper()}_API_KEY"
    key = os.environ.get(variable)
    if args.live and not key:
        err.write(f"wanmock record: --live needs {variable} in the environment\n")
        return 2

    def keep(cassette: Mapping[str, Any]) -> None:  # each exchange is written down as it happens
        write_cassette(args.out, cassette)

    try:
        with httpx.HTTPTransport() as transport:
            if args.live:
                base, pace = catalog().provider(args.provider).base_url, Pace()
                cassette = _record(args, key or "", base, transport, pace, keep)
            else:
                base, server = target_base(args.provider, args.target)
                with Control(server.origin if server else base) as admin:
                    pace = Pace(admin if server is not None and server.manual_clock else None)
                    cassette = _record(args, key or "test-key", base, transport, pace, keep)
    except KeyboardInterrupt:
        if (args.out / CASSETTE_FILE).exists():
            err.write(f"wanmock record: interrupted; what was recorded so far is in {args.out / CASSETTE_FILE}\n")
        raise
    except errors.WanError as exc:
        err.write(f"wanmock record: {exc}\n")
        return 2
    except httpx.HTTPError as exc:
        err.write(f"wanmock record: cannot reach {args.target or 'the provider'}: {exc}\n")
        return 2
    path = write_cassette(args.out, cassette)
    tasks = cassette["tasks"]
    out.write(f"recorded {len(cassette['interactions'])} exchanges and {len(tasks)} task(s) into {path}\n")
    for task_id, task in tasks.items():
        words = [_status_word(args.provider, cassette["interactions"][i]) for i in task["polls"]]
        out.write(f"  {task['kind']:<9} {task_id}: {' -> '.join(words) or 'no poll'}\n")
    return 0


def _record(
    args: argparse.Namespace,
    key: str,
    base: str,
    transport: httpx.BaseTransport,
    pace: Pace,
    on_change: Callable[[Mapping[str, Any]], None],
) -> dict[str, Any]:
    return record(
        args.provider,
        api_key=key,
        base_url=base,
        transport=transport,
        budget=args.budget,
        kind=args.model,
        media=args.media,
        sleep=pace.sleep,
        now=pace.now,
        timeout=args.timeout,
        on_change=on_change,
    )


def _status_word(provider: str, interaction: Mapping[str, Any]) -> str:
    response = interaction.get("response")
    if not response:
        return "error"
    word = _pointer(response["body"], catalog().provider(provider).task_fields["status_in_poll"])
    return str(word) if response["status"] == 200 and word is not None else str(response["status"])
