"""The contract runner: drive a client through generated examples and scenarios, record every
exchange on the wire, and run every check.

Targets: the in-process app (default; a manual clock makes lifecycles instant), any URL serving
wanmock (``--target``; its control plane drives clock and faults), or the live provider
(``--live``: free probes only, plus at most ``max_paid_tasks`` billable submissions).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from wanmock.contracts.client import errors
from wanmock.contracts.client.engine import WanClient
from wanmock.contracts.client.models import TextToVideo, VideoRequest
from wanmock.contracts.client.transport import ASGIThreadTransport
from wanmock.contracts.testing.checks import Case, ContractFailure, Exchange, run_checks
from wanmock.contracts.tools.control import Control, NotAWanmock, identify
from wanmock.mockserver.cli import check_interrupt as check_interrupt  # also for contracts/cli.py
from wanmock.mockserver.cli import deferred_interrupts as deferred_interrupts
from wanmock.mockserver.routing import Match, Router
from wanmock.schemas import catalog

ClientFactory = Callable[..., WanClient]


def balance_fault(provider: str) -> dict[str, Any] | None:
    """The fault rule fields (status, code) of the provider's documented "insufficient balance"
    answer (its manifest's ``errors``); None when the manifest documents none."""
    answer = catalog().provider(provider).error("insufficient_balance")
    if answer is None:
        return None
    return {"status": answer.status, **({"code": answer.code} if answer.code is not None else {})}


@contextmanager
def hypothesis_home(directory: Path | None) -> Iterator[None]:
    """Hypothesis writes into its home directory (``.hypothesis/`` in the current directory by
    default); a contract run points it at ``directory`` or a temporary one, removed afterwards."""
    from hypothesis.configuration import set_hypothesis_home_dir, storage_directory

    found: Any = storage_directory(intent_to_write=False)
    previous = getattr(found, "home_directory", found)  # older hypothesis answers the path itself
    with tempfile.TemporaryDirectory(prefix="wanmock-hypothesis-") as scratch:
        set_hypothesis_home_dir(directory if directory is not None else scratch)
        try:
            yield
        finally:
            set_hypothesis_home_dir(previous)


class RecordingTransport(httpx.BaseTransport):
    """Records every exchange (with credentials redacted) into ``self.exchanges``."""

    def __init__(self, inner: httpx.BaseTransport, provider: str, base_url: str) -> None:
        self.inner = inner
        self.router = Router(catalog().provider(provider))
        self.base_path = urlsplit(base_url).path.rstrip("/")
        self.exchanges: list[Exchange] = []

    def classify(self, method: str, path: str) -> str:
        if "/__files/" in path:
            return "download"
        if path.startswith(self.base_path):
            path = path[len(self.base_path) :] or "/"
        found = self.router.match(method, path)
        return found.endpoint.name if isinstance(found, Match) else "other"

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body_bytes = request.read()
        try:
            body: Any = json.loads(body_bytes) if body_bytes else None
        except ValueError:
            body = body_bytes.decode("utf-8", "replace")
        headers = {
            k: ("<redacted>" if k.lower() == "authorization" and not v.startswith("Bearer") else v)
            for k, v in request.headers.items()
        }
        exchange = Exchange(
            request.method,
            str(request.url),
            headers,
            body,
            None,
            endpoint=self.classify(request.method, request.url.path),
        )
        self.exchanges.append(exchange)
        response = self.inner.handle_request(request)
        response.read()
        exchange.status = response.status_code
        exchange.response_headers = dict(response.headers)
        if exchange.endpoint != "download":
            try:
                exchange.response_body = response.json()
            except ValueError:
                exchange.response_body = response.text[:1000]
        return response

    def take(self) -> list[Exchange]:
        taken, self.exchanges = self.exchanges, []
        return taken


@dataclass
class Result:
    provider: str
    kind: str
    examples: int = 0
    cases: int = 0
    failures: list[ContractFailure] = field(default_factory=list)
    seconds: float = 0.0
    checks_run: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False  # Ctrl-C while this kind ran: the cases finished before it


@dataclass
class Report:
    """What a contract run found. ``secrets`` (the live keys, the admin token) are removed, in
    every form, from everything the report writes: stdout, the JSON report, the JUnit file."""

    target: str
    seed: int
    results: list[Result] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    strict: bool = False  # warning-level findings fail the run too
    interrupted: bool = False  # Ctrl-C: the results finished before it, and the running one so far

    def counts(self, failure: ContractFailure) -> bool:
        return self.strict or failure.severity == "error"

    def clean(self, value: Any) -> Any:
        from wanmock.mockserver.scrub import Scrubber

        return Scrubber(self.secrets).value(value)

    @property
    def passed(self) -> bool:
        return not self.interrupted and not any(self.counts(f) for r in self.results for f in r.failures)

    def to_dict(self) -> dict[str, Any]:
        return self.clean(self._dict())  # type: ignore[no-any-return]

    def _dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "seed": self.seed,
            "passed": self.passed,
            "interrupted": self.interrupted,
            "results": [
                {
                    "provider": r.provider,
                    "model": r.kind,
                    "examples": r.examples,
                    "cases": r.cases,
                    "seconds": round(r.seconds, 3),
                    "interrupted": r.interrupted,
                    "failures": [f.to_dict() for f in r.failures],
                }
                for r in self.results
            ],
        }

    def junit(self) -> str:
        from xml.sax.saxutils import quoteattr

        from wanmock.contracts.testing.checks import CHECKS

        lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<testsuites>"]
        if self.interrupted:
            lines.append("  <!-- interrupted (Ctrl-C): the results finished before it, and the running one so far -->")
        for r in self.results:
            failed = {f.check for f in r.failures if self.counts(f)}
            lines.append(
                f'  <testsuite name={quoteattr(f"wanmock.{r.provider}.{r.kind}")} tests="{len(CHECKS)}" '
                f'failures="{len(failed)}" time="{r.seconds:.3f}">'
            )
            if r.interrupted:  # the cases finished before Ctrl-C; the kind's other checks never ran
                lines.append('    <properties><property name="interrupted" value="true"/></properties>')
            for name in CHECKS:
                lines.append(f"    <testcase classname={quoteattr(f'{r.provider}.{r.kind}')} name={quoteattr(name)}>")
                for failure in (f for f in r.failures if f.check == name):
                    tag = "failure" if self.counts(failure) else "system-out"
                    message, text = self.clean([failure.message, failure.render()])
                    attribute = f" message={quoteattr(message)}" if tag == "failure" else ""
                    lines.append(f"      <{tag}{attribute}>{_xml(text)}</{tag}>")
                    break
                lines.append("    </testcase>")
            lines.append("  </testsuite>")
        lines.append("</testsuites>")
        return "\n".join(lines) + "\n"


def _xml(text: str) -> str:
    from xml.sax.saxutils import escape

    return escape(text)


class Target:
    """Where requests go and how the control plane is reached (None for live providers)."""

    def __init__(self, provider: str, base_url: str, transport: httpx.BaseTransport, admin: Control | None) -> None:
        self.provider = provider
        self.base_url = base_url
        self.transport = transport
        self.admin = admin

    def advance(self, seconds: float) -> None:
        check_interrupt()  # the client's wait loop: a step boundary
        if self.admin is None:  # a live provider: time passes for real
            time.sleep(seconds)
            return
        self.admin.advance(seconds)

    def fault(self, rule: dict[str, Any]) -> None:
        assert self.admin is not None
        self.admin.fault(**rule)

    def transition(self, task_id: str, action: str, body: dict[str, Any] | None = None) -> None:
        assert self.admin is not None
        self.admin.transition(self.provider, task_id, action, body)

    def clear_faults(self) -> None:
        if self.admin is not None:
            self.admin.clear_faults()


@contextmanager
def in_process_target(provider: str, seed: int, timing: str = "fast") -> Iterator[Target]:
    import tempfile

    from wanmock.mockserver.app import create_app
    from wanmock.mockserver.clock import ManualClock
    from wanmock.mockserver.config import ServerConfig

    with tempfile.TemporaryDirectory(prefix="wanmock-contract-") as media:
        from pathlib import Path

        app = create_app(ServerConfig(clock=ManualClock(), timing=timing, seed=seed, media_dir=Path(media)))
        transport = ASGIThreadTransport(app)
        admin = Control("http://wanmock", transport=transport)
        try:
            yield Target(provider, f"http://wanmock/{provider}", transport, admin)
        finally:
            admin.close()
            transport.shutdown()


@contextmanager
def url_target(provider: str, url: str) -> Iterator[Target]:
    """A running wanmock at ``url``: its origin or the provider's base URL the banner printed."""
    try:
        server = identify(url, provider)
    except NotAWanmock as exc:
        raise errors.WanError(str(exc)) from exc
    if not server.manual_clock:
        raise errors.WanError(
            f"{server.origin} runs on the system clock; start it with `wanmock serve --clock manual` so the "
            "contract run can drive task lifecycles through its control plane"
        )
    admin = Control(server.origin)
    transport = httpx.HTTPTransport()
    try:
        yield Target(provider, server.base_url(provider), transport, admin)
    finally:
        transport.close()
        admin.close()


class Runner:
    def __init__(
        self,
        target: Target,
        *,
        seed: int,
        client_factory: ClientFactory | None = None,
        api_key: str = "test-key",
        download_every: int = 50,
    ) -> None:
        self.target = target
        self.provider = target.provider
        self.seed = seed
        self.api_key = api_key
        self.download_every = download_every
        self.recorder = RecordingTransport(target.transport, target.provider, target.base_url)
        self.client_factory = client_factory or WanClient
        self.client = self.client_factory(
            self.provider,
            api_key,
            base_url=target.base_url,
            transport=self.recorder,
            sleep=target.advance,
            clock=self._now,
            poll_retries=3,
        )
        self._elapsed = 0.0

    def _now(self) -> float:
        return time.monotonic()

    # -- one example ------------------------------------------------------------------------

    def run_valid(self, request: VideoRequest, index: int) -> Case:
        case = Case(self.provider, request.kind, "valid", description=repr(request), seed=self.seed)
        try:
            handle = self.client.submit(request)
            case.read(self.client.poll(handle), len(self.recorder.exchanges))
            self.target.advance(1.5)
            case.read(self.client.poll(handle), len(self.recorder.exchanges))
            self.target.advance(5)
            final = self.client.poll(handle)
            case.read(final, len(self.recorder.exchanges))
            if final.state == "succeeded" and index % self.download_every == 0:
                case.video, case.expected_video = self._download(final, request)
        except errors.WanError as exc:
            case.error = exc
        case.exchanges = self.recorder.take()
        return case

    def _download(self, status: Any, request: VideoRequest) -> tuple[dict[str, Any], tuple[int, int, float]]:
        import tempfile
        from pathlib import Path

        from wanmock.mockserver.media import probe

        with tempfile.TemporaryDirectory() as tmp:
            path = self.client.download(status, Path(tmp) / "result.mp4")
            info = dict(probe(path))
        resolution = (getattr(request, "resolution", None) or self._default(request.kind, "resolution")).upper()
        ratio = getattr(request, "ratio", None) or "16:9"
        duration = getattr(request, "duration", None) or self._default(request.kind, "duration")
        if request.kind == "videoedit" and (not duration or _duration_has_no_effect(self.provider)):
            # 0 keeps the input's length [D5c][M3]; where duration has no effect (APIYI [Y1][Y4])
            # the output follows the input too. The mock cannot see the input video and uses
            # Options.videoedit_source_seconds for it.
            from wanmock.mockserver.config import Options

            duration = Options().videoedit_source_seconds
        return info, (*expected_size(self.provider, resolution, ratio), float(duration))

    def _default(self, kind: str, name: str) -> Any:
        provider = catalog().provider(self.provider)
        pointer = self.client.dialect.FIELDS[kind][name]
        return provider.field_schema(provider.models[kind].schema_file, pointer).get("default")

    def run_invalid(self, kind: str, body: dict[str, Any], description: str) -> Case:
        case = Case(self.provider, kind, "invalid", description=description, seed=self.seed)
        prepared = self.client.dialect.prepare_body(kind, body)
        headers = {**prepared.headers, "Authorization": f"Bearer {self.api_key}"}
        with httpx.Client(transport=self.recorder) as raw:
            raw.post(self.target.base_url + prepared.path, json=body, headers=headers)
        case.exchanges = self.recorder.take()
        return case

    # -- scenarios through the control plane --------------------------------------------------

    def attempt(self, case: Case, action: Callable[[], Any]) -> Case:
        """Run one scenario's client action, keeping what it raised and what went over the wire."""
        check_interrupt()
        try:
            action()
        except errors.WanError as exc:
            case.error = exc
        case.exchanges = self.recorder.take()
        return case

    def scenarios(self, kind: str, request: VideoRequest) -> Iterator[Case]:
        if self.target.admin is None:
            return
        provider, client, target = self.provider, self.client, self.target

        def scenario(description: str, expected: type[BaseException] | None, **extra: Any) -> Case:
            intent = "valid" if expected is None else "scenario"
            return Case(provider, kind, intent, description=description, expected_error=expected, **extra)

        def submit_then(action: str, body: dict[str, Any] | None = None) -> None:
            handle = client.submit(request)
            target.transition(handle.task_id, action, body)
            client.wait(handle, timeout=60)

        def submit_with_poll_faults(case: Case) -> None:
            handle = client.submit(request)
            target.fault({"action": "error", "provider": provider, "endpoint": "poll", "status": 503, "count": 2})
            case.read(client.wait(handle, timeout=120), len(self.recorder.exchanges))

        for description, fault, expected in [
            ("rate limited on submit", {"status": 429, "retry_after": 3}, errors.RateLimitedError),
            ("insufficient balance", balance_fault(provider), errors.InsufficientBalanceError),
        ]:
            if fault is None:  # no documented balance error for this provider: nothing to stage
                continue
            target.fault({"action": "error", "provider": provider, "endpoint": "submit", "count": 1, **fault})
            yield self.attempt(scenario(description, expected), lambda: client.submit(request))
        # A task the provider fails: TaskFailedError with the provider's code (Modellix documents none).
        failed = scenario("task failed", errors.TaskFailedError)
        failed.expected_error_code = "DataInspectionFailed"  # checked where the provider's answer carries it
        yield self.attempt(failed, lambda: submit_then("fail", {"code": "DataInspectionFailed", "message": "blocked"}))
        yield self.attempt(scenario("task expired", errors.TaskExpiredError), lambda: submit_then("expire"))
        # A dropped connection on submit: the outcome is unknown and the submit is not repeated.
        target.fault({"action": "drop", "provider": provider, "endpoint": "submit", "count": 1})
        dropped = scenario("connection dropped on submit", errors.TransportError, max_submits=1)
        yield self.attempt(dropped, lambda: client.submit(request))
        # Polls answered 503 twice: retried, then the task completes.
        recovers = scenario("poll answered 503 twice, then recovers", None)
        yield self.attempt(recovers, lambda: submit_with_poll_faults(recovers))
        target.clear_faults()
        bad = self.client_factory(
            provider, "invalid", base_url=target.base_url, transport=self.recorder, sleep=target.advance
        )
        yield self.attempt(scenario("invalid key", errors.AuthenticationError), lambda: bad.submit(request))

    # -- a whole run ------------------------------------------------------------------------

    def run(
        self,
        kind: str,
        examples: int,
        progress: Callable[[int], None] | None = None,
        result: Result | None = None,
    ) -> Result:
        """Run ``examples`` generated cases and the control-plane scenarios of ``kind`` into
        ``result`` (a new one by default). The caller may put ``result`` in its report before the
        run: on Ctrl-C it then holds the cases finished so far, marked ``interrupted``."""
        result = result if result is not None else Result(self.provider, kind)
        started = time.perf_counter()
        try:
            self._run(kind, examples, progress, result)
        except KeyboardInterrupt:
            result.interrupted = True
            raise
        finally:
            result.seconds = time.perf_counter() - started
        return result

    def _run(self, kind: str, examples: int, progress: Callable[[int], None] | None, result: Result) -> None:
        from wanmock.contracts.testing import strategies

        valid = strategies.video_requests(self.provider, kind)
        invalid = strategies.invalid_requests(self.provider, kind)
        counter = {"n": 0}
        seen_checks: set[str] = set()

        def record(case: Case) -> None:
            check_interrupt()  # a Ctrl-C that Python could not raise (in a collector callback)
            case.seed = self.seed
            result.cases += 1
            for failure in run_checks(case):
                if failure.check not in seen_checks:  # the first failure of each check is reported
                    seen_checks.add(failure.check)
                    result.failures.append(failure)

        @hypothesis_seed(self.seed)
        @settings(
            max_examples=examples,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(data=st.data())
        def example(data: st.DataObject) -> None:
            index = counter["n"]
            if data.draw(st.integers(0, 3), label="valid (1-3) or invalid (0)") > 0:
                request = data.draw(valid)
                record(self.run_valid(request, index))
            else:
                mutation = data.draw(invalid)
                description = f"{mutation.mutation} at {mutation.path}: {mutation.description}"
                record(self.run_invalid(kind, mutation.body, description))
            counter["n"] += 1  # finished (an example Ctrl-C stops half-way is not counted)
            if progress:
                progress(counter["n"])

        try:
            example()
        finally:
            result.examples = counter["n"]
        first = TextToVideo("a cat") if kind == "t2v" else None
        request = first or next(iter(_one(valid, self.seed)))
        for case in self.scenarios(kind, request):
            record(case)


def expected_size(provider: str, resolution: str, ratio: str) -> tuple[int, int]:
    """Width x height of a video at ``resolution`` and ``ratio``, read from the captured schema data
    (the ``x-output-sizes`` table of the provider's files, else of the upstream that documents it),
    never from the mock's code: the checker must not trust what it checks."""
    table = catalog().output_sizes(provider)
    if resolution.upper() not in table or ratio not in table[resolution.upper()]:
        raise KeyError(f"no captured output size for {resolution} {ratio}")
    return table[resolution.upper()][ratio]


def _duration_has_no_effect(provider: str) -> bool:
    """Whether the provider's video-edit schema records that ``duration`` has no effect."""
    document = catalog().provider(provider).documents.get("submit.videoedit.json", {})
    notes = [str(c.get("values", "")) for c in document.get("x-conflicts", []) if "duration" in str(c.get("about"))]
    return any("no effect" in note for note in notes)


def _one(strategy: st.SearchStrategy[Any], seed: int) -> Iterator[Any]:
    found: list[Any] = []

    @hypothesis_seed(seed)
    @settings(max_examples=1, database=None, deadline=None, phases=[Phase.generate])
    @given(strategy)
    def draw(value: Any) -> None:
        found.append(value)

    draw()
    yield from found


def progress_printer(stream: TextIO, label: str, total: int) -> Callable[[int], None]:
    if not stream.isatty():
        return lambda done: None
    width = 30

    def show(done: int) -> None:
        filled = int(width * done / max(total, 1))
        stream.write(f"\r  {label:<22} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done >= total:
            stream.write("\n")
        stream.flush()

    return show


def live_probes(provider: str, api_key: str, base_url: str | None, max_paid_tasks: int) -> Result:
    """Against the live provider: free probes first, then at most ``max_paid_tasks`` billable
    submissions with the cheapest parameters (720P, the shortest duration the schema allows)."""
    result = Result(provider, "live")
    started = time.perf_counter()
    dialect_base = base_url or catalog().provider(provider).base_url
    recorder = RecordingTransport(httpx.HTTPTransport(), provider, dialect_base)

    def make(key: str) -> WanClient:
        return WanClient(provider, key, base_url=dialect_base, transport=recorder, timeout=60)

    def record(case: Case) -> None:
        check_interrupt()
        case.exchanges = recorder.take()
        result.cases += 1
        result.failures.extend(run_checks(case))

    probe = TextToVideo("wanmock contract probe") if "t2v" in catalog().provider(provider).models else None
    if probe is not None:
        case = Case(
            provider,
            "t2v",
            "scenario",
            description="free probe: invalid key",
            expected_error=errors.AuthenticationError,
        )
        try:
            make("invalid").submit(probe)  # refused by every provider, and by wanmock by default
        except errors.WanError as exc:
            case.error = exc
        record(case)
        runner_client = make(api_key)
        kind = "t2v"
        body = runner_client.dialect.body(probe)
        body_bad = json.loads(json.dumps(body))
        _break_duration(body_bad)
        case = Case(provider, kind, "invalid", description="free probe: invalid body (duration 99)")
        prepared = runner_client.dialect.prepare_body(kind, body_bad)
        with httpx.Client(transport=recorder, timeout=60) as raw:
            raw.post(
                dialect_base + prepared.path,
                json=body_bad,
                headers={**prepared.headers, "Authorization": f"Bearer {api_key}"},
            )
        record(case)
        from wanmock.contracts.client.models import TaskHandle

        case = Case(
            provider,
            kind,
            "scenario",
            description="free probe: unknown task id",
            expected_error=errors.TaskExpiredError,
        )
        try:
            status = runner_client.poll(TaskHandle(provider, "wanmock-no-such-task", kind))
            if status.state == "unknown":
                raise errors.TaskExpiredError("unknown", provider=provider, task_id="wanmock-no-such-task")
        except errors.WanError as exc:
            case.error = exc
        record(case)
        for _ in range(max_paid_tasks):
            cheapest = TextToVideo(
                "wanmock contract probe: a red ball on a table", resolution="720P", duration=_cheapest(provider)
            )
            case = Case(provider, kind, "valid", description="paid probe: cheapest t2v")
            try:
                handle = runner_client.submit(cheapest)
                case.read(runner_client.wait(handle, timeout=1200), len(recorder.exchanges))
            except errors.WanError as exc:
                case.error = exc
            record(case)
    result.seconds = time.perf_counter() - started
    return result


def _break_duration(body: dict[str, Any]) -> None:
    if isinstance(body.get("parameters"), dict) or "input" in body:
        body.setdefault("parameters", {})["duration"] = 99
    else:
        body["duration"] = 99


def _cheapest(provider: str) -> int:
    """The shortest t2v duration the provider's schema accepts (5 where it sets no range)."""
    from wanmock.contracts.tools.probes import cheapest_duration

    return cheapest_duration(provider, "t2v") or 5


def summary(report: Report, stream: TextIO = sys.stdout) -> None:
    for r in report.results:
        counted = [f for f in r.failures if report.counts(f)]
        mark = "FAIL" if counted else "WARN" if r.failures else "PASS"
        stream.write(
            f"{mark}  {r.provider:<10} {r.kind:<10} {r.examples:>5} examples {r.cases:>5} cases  {r.seconds:6.1f} s"
            + ("  (interrupted)" if r.interrupted else "")
            + "\n"
        )
        for failure in r.failures:
            stream.write("      " + report.clean(failure.render()).replace("\n", "\n      ") + "\n")
    total = sum(1 for r in report.results for f in r.failures if report.counts(f))
    warned = sum(len(r.failures) for r in report.results) - total
    verdict = "all checks passed" if report.passed else f"{total} check(s) failed"
    if warned:
        verdict += f", {warned} warning(s)"
    if report.interrupted:
        finished = sum(not r.interrupted for r in report.results)
        verdict = f"interrupted after {finished} finished result(s), {total} check(s) failed"
    stream.write(f"{verdict} (target {report.target}, seed {report.seed})\n")
