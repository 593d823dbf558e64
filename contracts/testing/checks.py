"""Contract checks: one signature, one registry, structured failures.

A check is a function of a :class:`Case` — everything observed while one example ran: the
HTTP exchanges on the wire, what the client reported, what it raised — that raises
:class:`ContractFailure` when the contract does not hold, and returns quietly when it holds
or does not apply. Register one with ``@check``; the runner runs them all.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wanmock.contracts.client.models import TaskStatus
from wanmock.schemas import catalog, resolve_pointer

ORDER = {"queued": 0, "running": 1, "succeeded": 2, "failed": 2, "canceled": 2, "unknown": 3}
SECRET_HEADERS = ("authorization", "x-api-key", "cookie")


@dataclass
class Exchange:
    """One HTTP request and its answer, as seen on the wire."""

    method: str
    url: str
    request_headers: dict[str, str]
    request_body: Any
    status: int | None  # None: no answer (transport error)
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: Any = None
    endpoint: str = ""  # submit | poll | download | other

    def curl(self) -> str:
        """A command that repeats the request; credentials become $API_KEY, never the value."""
        parts = ["curl", "-X", self.method, shlex.quote(self.url)]
        for name, value in self.request_headers.items():
            if name.lower() in SECRET_HEADERS:
                value = "Bearer $API_KEY"
            if name.lower() in ("content-length", "host", "accept-encoding", "connection", "user-agent", "accept"):
                continue
            parts += ["-H", shlex.quote(f"{name}: {value}")]
        if self.request_body is not None:
            parts += ["-d", shlex.quote(json.dumps(self.request_body, ensure_ascii=False))]
        return " ".join(parts)


@dataclass
class Case:
    """Everything one example produced."""

    provider: str
    kind: str | None
    intent: str  # "valid" (must succeed) | "invalid" (must be refused) | "scenario"
    description: str = ""
    exchanges: list[Exchange] = field(default_factory=list)
    statuses: list[TaskStatus] = field(default_factory=list)
    # For each status, how many exchanges had been made when the client returned it: the status
    # is the client's reading of the last poll answer among them (see ``Case.read``).
    status_marks: list[int] = field(default_factory=list)
    error: BaseException | None = None
    expected_error: type[BaseException] | None = None
    expected_error_code: str | None = None
    video: dict[str, Any] | None = None
    expected_video: tuple[int, int, float] | None = None
    max_submits: int | None = None  # scenarios that must not resubmit
    seed: int | None = None

    def read(self, status: TaskStatus, exchanges_so_far: int) -> None:
        """Keep a status the client returned after ``exchanges_so_far`` exchanges."""
        self.statuses.append(status)
        self.status_marks.append(exchanges_so_far)

    def status_answers(self) -> list[tuple[TaskStatus, Exchange]]:
        """Each status with the poll answer it was read from. A status from ``wait()`` is the
        reading of the last of its many polls, so statuses are never paired with polls by position
        from the start; without marks they are aligned from the end (the last status is the last poll)."""
        if len(self.status_marks) == len(self.statuses):
            pairs = []
            for status, mark in zip(self.statuses, self.status_marks, strict=True):
                before = [e for e in self.exchanges[:mark] if e.endpoint == "poll" and e.status == 200]
                if before:
                    pairs.append((status, before[-1]))
            return pairs
        polls = [e for e in self.exchanges if e.endpoint == "poll" and e.status == 200]
        return list(zip(reversed(self.statuses), reversed(polls), strict=False))[::-1]


class ContractFailure(AssertionError):
    """A contract that did not hold: which check, what was expected, what was seen, where."""

    def __init__(
        self,
        check: str,
        message: str,
        *,
        case: Case,
        expected: Any = None,
        actual: Any = None,
        path: str | None = None,
        exchange: Exchange | None = None,
        severity: str = "error",
    ) -> None:
        self.check = check
        self.severity = severity  # "error" fails the run; "warning" is reported (fails only with --strict)
        self.message = message
        self.case = case
        self.expected = expected
        self.actual = actual
        self.path = path
        self.exchange = exchange
        super().__init__(self.render())

    @property
    def curl(self) -> str | None:
        return self.exchange.curl() if self.exchange else None

    def render(self) -> str:
        label = self.check if self.severity == "error" else f"{self.check}, {self.severity}"
        lines = [f"[{label}] {self.case.provider} {self.case.kind or ''}: {self.message}".rstrip()]
        if self.path:
            lines.append(f"  where:    {self.path}")
        if self.expected is not None:
            lines.append(f"  expected: {self.expected}")
        if self.actual is not None:
            lines.append(f"  actual:   {self.actual}")
        if self.curl:
            lines.append(f"  repeat:   {self.curl}")
        if self.case.seed is not None:
            lines.append(f"  seed:     {self.case.seed} (wanmock contract ... --seed {self.case.seed})")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity,
            "provider": self.case.provider,
            "model": self.case.kind,
            "example": self.case.description,
            "message": self.message,
            "path": self.path,
            "expected": _plain(self.expected),
            "actual": _plain(self.actual),
            "curl": self.curl,
            "seed": self.case.seed,
        }


def _plain(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        return repr(value)


Check = Callable[[Case], None]
CHECKS: dict[str, Check] = {}


def check(fn: Check) -> Check:
    CHECKS[fn.__name__] = fn
    return fn


def run_checks(case: Case, names: list[str] | None = None) -> list[ContractFailure]:
    failures = []
    for name, fn in CHECKS.items():
        if names is not None and name not in names:
            continue
        try:
            fn(case)
        except ContractFailure as failure:
            failures.append(failure)
    return failures


def _submits(case: Case) -> list[Exchange]:
    return [e for e in case.exchanges if e.endpoint == "submit"]


def _polls(case: Case) -> list[Exchange]:
    return [e for e in case.exchanges if e.endpoint == "poll" and e.status == 200]


# -- the checks -----------------------------------------------------------------------------


@check
def request_conformance(case: Case) -> None:
    """What the client sends validates against the provider's request schema and headers."""
    if case.intent != "valid" or case.kind is None:
        return
    provider = catalog().provider(case.provider)
    required = provider.endpoints["submit"].headers
    for exchange in _submits(case):
        lowered = {k.lower(): v for k, v in exchange.request_headers.items()}
        for name, value in required.items():
            if lowered.get(name.lower(), "").lower() != value.lower():
                raise ContractFailure(
                    "request_conformance",
                    f"the submit lacks the required header {name}: {value}",
                    case=case,
                    expected=f"{name}: {value}",
                    actual=lowered.get(name.lower(), "<absent>"),
                    exchange=exchange,
                )
        if not lowered.get("authorization", "").startswith("Bearer "):
            raise ContractFailure("request_conformance", "the submit has no Bearer key", case=case, exchange=exchange)
        issues = catalog().validate(case.provider, "submit", exchange.request_body, kind=case.kind)
        if issues:
            first = issues[0]
            raise ContractFailure(
                "request_conformance",
                f"the client sent a body {case.provider} does not accept: {first.message}",
                case=case,
                path=first.path,
                actual=[str(i) for i in issues],
                exchange=exchange,
            )


@check
def client_sends_only_documented_fields(case: Case) -> None:
    """A warning, not a failure: the client sent what the provider accepts although its pages do not
    document it (an unknown parameter, a data URI where a URL is asked for). The provider answers
    200, so the run passes, but the field is likely a mistake; ``--strict`` makes it fail."""
    if case.kind is None:
        return
    for exchange in _submits(case):
        findings = catalog().check(case.provider, "submit", exchange.request_body, kind=case.kind).warnings
        if findings:
            raise ContractFailure(
                "client_sends_only_documented_fields",
                f"the client sent {len(findings)} undocumented field(s) {case.provider} accepts: {findings[0].warning}",
                case=case,
                path=findings[0].issue.path,
                actual=[f.warning for f in findings],
                exchange=exchange,
                severity="warning",
            )


@check
def status_code_conformance(case: Case) -> None:
    """A valid submit is answered 200; an invalid one a 4xx (never 2xx, never 5xx)."""
    for exchange in _submits(case):
        if exchange.status is None:
            continue
        if case.intent == "valid" and exchange.status != 200:
            raise ContractFailure(
                "status_code_conformance",
                f"a valid request was answered {exchange.status}",
                case=case,
                expected=200,
                actual=f"{exchange.status} {json.dumps(exchange.response_body)[:300]}",
                exchange=exchange,
            )
        if case.intent == "invalid" and not 400 <= exchange.status < 500:
            raise ContractFailure(
                "status_code_conformance",
                f"an invalid request was answered {exchange.status}",
                case=case,
                expected="4xx",
                actual=exchange.status,
                exchange=exchange,
            )


@check
def response_conformance(case: Case) -> None:
    """Every 200 answer validates against the provider's response schema."""
    for exchange in case.exchanges:
        if exchange.status != 200 or exchange.endpoint not in ("submit", "poll"):
            continue
        message = "submit-response" if exchange.endpoint == "submit" else "poll-response"
        issues = catalog().validate(case.provider, message, exchange.response_body)
        if issues:
            raise ContractFailure(
                "response_conformance",
                f"the {message} is outside its schema: {issues[0].message}",
                case=case,
                path=issues[0].path,
                actual=[str(i) for i in issues],
                exchange=exchange,
            )


@check
def error_shape_conformance(case: Case) -> None:
    """Every error answer is the provider's documented envelope."""
    for exchange in case.exchanges:
        if exchange.status is None or exchange.status < 400 or exchange.endpoint not in ("submit", "poll"):
            continue
        issues = catalog().validate(case.provider, "error", exchange.response_body)
        if issues:
            raise ContractFailure(
                "error_shape_conformance",
                f"a {exchange.status} answer is not {case.provider}'s error envelope",
                case=case,
                path=issues[0].path,
                actual=json.dumps(exchange.response_body)[:300],
                exchange=exchange,
            )


@check
def lifecycle_invariants(case: Case) -> None:
    """Status only moves forward, terminal states stay, a result URL exists exactly when succeeded."""
    provider = catalog().provider(case.provider)
    fields = provider.task_fields
    last = -1
    terminal: str | None = None
    for exchange in _polls(case):
        body = exchange.response_body
        try:
            word = resolve_pointer(body, fields["status_in_poll"])
        except (KeyError, IndexError, TypeError, ValueError):
            continue  # response_conformance reports it
        state = provider.state_for_word(word)
        if state is None:
            continue
        if terminal is not None and state.canonical != terminal:
            raise ContractFailure(
                "lifecycle_invariants",
                f"a terminal task changed state: {terminal} -> {state.canonical}",
                case=case,
                exchange=exchange,
            )
        if ORDER[state.canonical] < last:
            raise ContractFailure(
                "lifecycle_invariants", f"status moved backwards to {word}", case=case, exchange=exchange
            )
        last = ORDER[state.canonical]
        terminal = state.canonical if state.terminal else None
        try:
            url = resolve_pointer(body, fields["result_url_in_poll"])
        except (KeyError, IndexError, TypeError, ValueError):
            url = None
        if (url is not None) != (state.canonical == "succeeded"):
            raise ContractFailure(
                "lifecycle_invariants",
                f"a result URL {'appeared' if url else 'is missing'} in state {word}",
                case=case,
                path=fields["result_url_in_poll"],
                exchange=exchange,
            )


@check
def client_reads_what_the_provider_said(case: Case) -> None:
    """The client's status and result URL are the ones in the provider's answer."""
    provider = catalog().provider(case.provider)
    for status, exchange in case.status_answers():
        body = exchange.response_body
        try:
            word = resolve_pointer(body, provider.task_fields["status_in_poll"])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if status.word != word:
            raise ContractFailure(
                "client_reads_what_the_provider_said",
                "the client reported another status than the provider answered",
                case=case,
                expected=word,
                actual=status.word,
                path=provider.task_fields["status_in_poll"],
                exchange=exchange,
            )
        if status.state == "succeeded":
            truth = resolve_pointer(body, provider.task_fields["result_url_in_poll"])
            if status.result_url != truth:
                raise ContractFailure(
                    "client_reads_what_the_provider_said",
                    "the client read the video URL from the wrong place",
                    case=case,
                    expected=truth,
                    actual=status.result_url,
                    path=provider.task_fields["result_url_in_poll"],
                    exchange=exchange,
                )


@check
def client_raises_the_right_error(case: Case) -> None:
    """Each provider error surfaces as the matching exception (with the provider's code)."""
    if case.expected_error is None:
        if case.intent == "valid" and case.error is not None:
            raise ContractFailure(
                "client_raises_the_right_error",
                f"a valid request ended in {type(case.error).__name__}: {case.error}",
                case=case,
                exchange=case.exchanges[-1] if case.exchanges else None,
            )
        return
    if not isinstance(case.error, case.expected_error):
        raise ContractFailure(
            "client_raises_the_right_error",
            f"{case.description}: the client raised the wrong error",
            case=case,
            expected=case.expected_error.__name__,
            actual=f"{type(case.error).__name__}: {case.error}" if case.error else "no error",
            exchange=case.exchanges[-1] if case.exchanges else None,
        )
    code = getattr(case.error, "code", None)
    said = json.dumps([e.response_body for e in case.exchanges], ensure_ascii=False, default=str)
    # The code must reach the client where the provider's answer carries it (Modellix's failed task does not).
    if case.expected_error_code is not None and case.expected_error_code in said and code != case.expected_error_code:
        raise ContractFailure(
            "client_raises_the_right_error",
            f"{case.description}: the provider's error code was lost",
            case=case,
            expected=case.expected_error_code,
            actual=code,
        )


@check
def no_blind_submit_retry(case: Case) -> None:
    """A submit is not repeated after an unknown outcome: each one may be billed."""
    if case.max_submits is None:
        return
    submits = _submits(case)
    if len(submits) > case.max_submits:
        raise ContractFailure(
            "no_blind_submit_retry",
            f"the submit was sent {len(submits)} times; a blind retry can bill twice",
            case=case,
            expected=f"at most {case.max_submits} POST",
            actual=f"{len(submits)} POSTs",
            exchange=submits[-1],
        )


@check
def video_matches_the_request(case: Case) -> None:
    """The downloaded MP4 has the documented size for resolution x ratio and the duration asked for."""
    if case.video is None or case.expected_video is None:
        return
    width, height, seconds = case.expected_video
    seen = (case.video["width"], case.video["height"])
    if seen != (width, height):
        raise ContractFailure(
            "video_matches_the_request",
            "the video has the wrong size",
            case=case,
            expected=(width, height),
            actual=seen,
        )
    if abs(case.video["duration"] - seconds) > 0.5:
        raise ContractFailure(
            "video_matches_the_request",
            "the video has the wrong duration",
            case=case,
            expected=seconds,
            actual=case.video["duration"],
        )
