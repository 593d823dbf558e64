"""Real traffic against the captured contract: what `wanmock proxy` checks, as plain Python.

An :class:`Exchange` (one request and its answer) goes through :class:`TrafficChecker`:

* **request** — :func:`judge` says whether the contract says the provider would refuse it (the
  application's mistake: no key, a missing required header, a body its schema refuses) and, if
  so, with which canonical error (:class:`~wanmock.mockserver.errors.ApiError`), so that enforce
  mode can answer it in the provider's own envelope;
* **answer** — :func:`~wanmock.contracts.tools.drift.compare`, the code `wanmock drift` uses: the
  body against the response schema of its endpoint and state, status code, content type, new
  fields;
* **lifecycle** — each task across its polls: the status only moves forward, a terminal state
  stays (until the documented retention has passed), a result URL exactly when succeeded, and the
  time from submit to the end within the documented range (:func:`drift.documented_window`).

Findings are graded as drift grades them (breaking, warning, info) and kept by :class:`Findings`:
de-duplicated by (severity, direction, endpoint, kind, path), counted, with what was expected
and what was seen and when first and last seen. Every text passes through the recording
scrubber with the keys seen so far (and their URL-encoded and base64 forms): no key is kept.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, quote_plus

from wanmock.contracts.tools.drift import RANK, Finding, Observation, compare, documented_window
from wanmock.contracts.tools.recording import scrub
from wanmock.mockserver.errors import ApiError
from wanmock.mockserver.http import parse_json
from wanmock.mockserver.profiles import Profile
from wanmock.mockserver.routing import Match, Router
from wanmock.schemas import Provider, catalog, resolve_pointer

DIRECTIONS = ("request", "answer", "lifecycle")
SEEN_LIMIT = 200  # characters of a seen value kept in a finding
MAX_FINDINGS = 1000  # distinct findings kept; later ones are counted in one overflow finding
MAX_TASKS = 10_000  # task lifecycles followed at once (the oldest is forgotten first)
MAX_KEYS = 32  # keys remembered (in memory only) to scrub them out of findings
RANKS = {"queued": 0, "running": 1}  # every other state is terminal (rank 2)
_PATH_TOKEN = re.compile(r'\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


# -- findings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProxyFinding(Finding):
    """A drift :class:`Finding` (``probe`` is the endpoint) with what a watcher of traffic needs."""

    direction: str = "answer"  # request | answer | lifecycle
    expected: str = ""
    seen: str = ""
    count: int = 1
    first_seen: str = ""
    last_seen: str = ""

    @property
    def endpoint(self) -> str:
        return self.probe

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "direction": self.direction,
            "endpoint": self.probe,
            "kind": self.kind,
            "path": self.path,
            "expected": self.expected,
            "seen": self.seen,
            "detail": self.detail,
            "count": self.count,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
        }


@dataclass
class _Record:
    severity: str
    direction: str
    endpoint: str
    kind: str
    path: str
    expected: str
    seen: str
    detail: str
    first: float
    last: float
    count: int = 1


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def key_forms(key: str) -> list[str]:
    """``key`` as it may be written: plain, URL-encoded, base64 (standard and URL-safe, with and
    without padding) and base64 of ``Bearer key``."""
    forms = {key, quote(key, safe=""), quote_plus(key)}
    for raw in (key.encode(), f"Bearer {key}".encode()):
        for encoded in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
            forms.update({encoded, encoded.rstrip("=")})
    return [f for f in forms if len(f) >= 4]


class Findings:
    """Findings of one proxy run, de-duplicated and counted; safe across threads."""

    def __init__(self, provider: str, wall: Callable[[], float] = time.time) -> None:
        self.provider = provider
        self.wall = wall
        self.exchanges = 0
        self._records: dict[tuple[str, ...], _Record] = {}
        self._keys: OrderedDict[str, list[str]] = OrderedDict()
        self._lock = threading.Lock()

    def saw_key(self, key: str) -> None:
        if not key:
            return
        with self._lock:
            if key in self._keys:
                self._keys.move_to_end(key)
                return
            self._keys[key] = key_forms(key)
            while len(self._keys) > MAX_KEYS:
                self._keys.popitem(last=False)

    def secrets(self) -> list[str]:
        with self._lock:
            return [form for forms in self._keys.values() for form in forms]

    def counted(self) -> None:
        with self._lock:
            self.exchanges += 1

    def add(
        self, severity: str, direction: str, endpoint: str, kind: str, path: str, expected: str, seen: str, detail: str
    ) -> None:
        secrets = self.secrets()
        texts = [scrub(t, secrets) for t in (endpoint, kind, path, expected, _short(seen), detail)]
        endpoint, kind, path, expected, seen, detail = texts
        now = self.wall()
        key = (severity, direction, endpoint, kind, path)
        with self._lock:
            record = self._records.get(key)
            if record is None and len(self._records) >= MAX_FINDINGS:
                key = ("info", "answer", "*", "more findings than kept", "*")
                record = self._records.get(key)
                if record is None:
                    more = f"more than {MAX_FINDINGS} distinct findings; the rest are only counted"
                    self._records[key] = _Record("info", "answer", "*", key[3], "*", "", "", more, now, now)
                    return
            if record is None:
                self._records[key] = _Record(
                    severity, direction, endpoint, kind, path, expected, seen, detail, now, now
                )
            else:
                record.count += 1
                record.last = now

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self.exchanges = 0

    def snapshot(self) -> list[ProxyFinding]:
        """Every finding so far, the most severe first, then in the order first seen."""
        secrets = self.secrets()
        with self._lock:
            records = sorted(self._records.values(), key=lambda r: (-RANK[r.severity], r.first))
        return [
            ProxyFinding(
                r.severity,
                self.provider,
                r.endpoint,
                r.kind,
                r.path,
                scrub(f"{r.detail} (seen {r.count} time{'s' if r.count > 1 else ''})", secrets),
                direction=r.direction,
                expected=r.expected,
                seen=r.seen,
                count=r.count,
                first_seen=_iso(r.first),
                last_seen=_iso(r.last),
            )
            for r in records
        ]

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            exchanges = self.exchanges
        return {
            "provider": self.provider,
            "exchanges": exchanges,
            "findings": [f.to_dict() for f in self.snapshot()],
        }


def _short(value: str) -> str:
    return value if len(value) <= SEEN_LIMIT else value[: SEEN_LIMIT - 3] + "..."


def shown(value: Any) -> str:
    """A value as a finding shows what was seen."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def value_at(body: Any, path: str) -> Any:
    """The value at JSON path ``path`` (``$.output.video_url``, ``$.a[0]["b c"]``); KeyError if absent."""
    if not path.startswith("$"):
        raise KeyError(path)
    node, position = body, 1
    while position < len(path):
        found = _PATH_TOKEN.match(path, position)
        if found is None:
            raise KeyError(path)
        name, index, quoted = found.groups()
        if index is not None:
            if not isinstance(node, list) or int(index) >= len(node):
                raise KeyError(path)
            node = node[int(index)]
        else:
            token = name if name is not None else json.loads(quoted)
            if not isinstance(node, dict) or token not in node:
                raise KeyError(path)
            node = node[token]
        position = found.end()
    return node


def seen_at(body: Any, path: str) -> str:
    try:
        return shown(value_at(body, path))
    except KeyError:
        return "absent"


# -- one exchange ---------------------------------------------------------------------------


@dataclass
class Exchange:
    """One request and its answer, as the proxy saw them (``path`` relative to the provider's base)."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names
    body: bytes | None  # None: too large to keep
    sent: float  # on the checker's clock
    status: int = 0
    response_headers: Mapping[str, str] = field(default_factory=dict)
    response_body: bytes | None = None


def decoded(raw: bytes | None, encoding: str | None) -> bytes | None:
    """``raw`` without its content coding (identity, gzip, deflate); None when it cannot be read."""
    if raw is None:
        return None
    coding = (encoding or "identity").strip().lower()
    try:
        if coding in ("", "identity"):
            return raw
        if coding in ("gzip", "x-gzip"):
            return zlib.decompress(raw, 16 + zlib.MAX_WBITS)
        if coding == "deflate":
            try:
                return zlib.decompress(raw)
            except zlib.error:
                return zlib.decompress(raw, -zlib.MAX_WBITS)
    except zlib.error:
        return None
    return None


def json_or_text(raw: bytes | None) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw.decode("utf-8", "replace")[:500]


def bearer(headers: Mapping[str, str], header: str = "authorization") -> str | None:
    """The credential of ``header``: None when absent, "" when not a Bearer token."""
    value = headers.get(header.lower())
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


@dataclass
class Judgement:
    """What the contract says of a request: the refusal the provider would answer (None: it would
    accept it), and every problem found, as (severity, kind, path, expected, seen)."""

    endpoint: str
    refusal: ApiError | None = None
    problems: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    kind: str | None = None  # the model kind a submit names
    model_id: str | None = None
    body: Any = None

    def refuse(self, error: ApiError, kind: str, path: str, expected: str, seen: str) -> None:
        if self.refusal is None:
            self.refusal = error
        self.problems.append(("breaking", kind, path, expected, seen))


def judge(profile: Profile, found: Match, headers: Mapping[str, str], raw: bytes | None) -> Judgement:
    """Would the provider refuse this request, by the contract? The same checks, in the same
    order, as the mock's pipeline (auth, required headers, content type, JSON, model, schema)."""
    provider = profile.provider
    endpoint = found.endpoint
    judgement = Judgement(endpoint.name)
    auth = provider.manifest.get("auth", {})
    token = bearer(headers, auth.get("header", "authorization"))
    if not token:
        detail = "missing Authorization header" if token is None else "invalid API key"
        where = auth.get("header", "Authorization")
        expected = f"{where}: {auth.get('scheme', 'Bearer')} <key>"
        judgement.refuse(
            ApiError("unauthorized", detail),
            "no API key",
            where,
            expected,
            "absent" if token is None else "another scheme",
        )
    if endpoint.name != "submit":
        return judgement
    model_id = found.params.get("model")
    for header, value in endpoint.headers.items():
        sent = headers.get(header.lower(), "")
        if sent.strip().lower() != value.lower():
            error = ApiError("missing_async_header", f"the header {header}: {value} is required")
            judgement.refuse(error, "missing required header", header, value, sent or "absent")
    expected_type = endpoint.content_type or "application/json"
    content_type = headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != expected_type:
        error = ApiError(
            "unsupported_media_type", f"Content-Type must be {expected_type}, got {content_type or 'none'}"
        )
        judgement.refuse(error, "wrong content type", "Content-Type", expected_type, content_type or "absent")
    if raw is None:
        return judgement  # too large to judge: the provider decides
    if not raw:
        judgement.refuse(ApiError("invalid_json", "the request body is empty"), "empty body", "$", "a JSON object", "")
        return judgement
    try:
        body = parse_json(raw)
    except ApiError as refused:
        judgement.refuse(refused, "invalid JSON", "$", "a JSON object", refused.detail)
        return judgement
    judgement.body = body
    if not isinstance(body, dict):
        error = ApiError("invalid_request", f"the body must be a JSON object, not {type(body).__name__}")
        judgement.refuse(error, "not a JSON object", "$", "a JSON object", type(body).__name__)
        return judgement
    try:
        model = profile.model_for(found.params, body)
    except ApiError as unknown:
        given = model_id if provider.model_in_path else body.get("model")
        judgement.refuse(unknown, "unknown model", "model", "a model the provider offers", shown(given))
        return judgement
    judgement.kind, judgement.model_id = model.kind, str(model_id or body.get("model") or model.id)
    try:
        profile.validate(model, body)  # the mock's own judgement: what it refuses, the provider refuses
    except ApiError as refused:
        judgement.refusal = judgement.refusal or refused
        for issue in refused.issues:
            seen = seen_at(body, issue.path)
            judgement.problems.append(("breaking", "request refused by the schema", issue.path, issue.message, seen))
        if not refused.issues:
            judgement.problems.append(("breaking", "request refused", "$", refused.detail, ""))
    else:
        # What the provider accepts without documenting it passes, with a warning (the catalog's
        # check() splits x-accepted-undocumented input from errors, where the catalog has it).
        check = getattr(catalog(), "check", None)
        for accepted in check(provider.name, "submit", body, kind=model.kind).warnings if check else ():
            path = accepted.issue.path
            problem = ("warning", "accepted but undocumented", path, accepted.warning, seen_at(body, path))
            judgement.problems.append(problem)
    return judgement


# -- lifecycles -----------------------------------------------------------------------------


@dataclass
class _Task:
    kind: str | None
    submitted: float | None  # None: submitted before the proxy saw it
    state: str = "queued"
    terminal_since: float | None = None
    timed: bool = False  # the timing has been judged


class TrafficChecker:
    """Checks exchanges of one provider and keeps the findings (see the module docstring)."""

    def __init__(self, provider: str, findings: Findings, profile: Profile) -> None:
        self.provider: Provider = catalog().provider(provider)
        self.router = Router(self.provider)
        self.findings = findings
        self.profile = profile
        self.tasks: OrderedDict[str, _Task] = OrderedDict()
        self._lock = threading.Lock()

    def match(self, method: str, path: str) -> Match | None:
        found = self.router.match(method, path)
        return found if isinstance(found, Match) else None

    @staticmethod
    def task_id_of(found: Match, query: Mapping[str, str]) -> str | None:
        task_id = found.params.get("task_id")
        for param, placeholder in found.endpoint.query.items():
            if placeholder == "{task_id}":
                task_id = query.get(param) or None
        return task_id

    def label(self, found: Match, judgement: Judgement | None) -> str:
        label = f"{found.endpoint.method} {found.endpoint.name}"
        return f"{label} {judgement.kind}" if judgement is not None and judgement.kind else label

    def report_request(self, label: str, judgement: Judgement) -> None:
        for severity, kind, path, expected, seen in judgement.problems:
            self.findings.add(severity, "request", label, kind, path, expected, seen, f"{kind}: expected {expected}")

    def check(self, exchange: Exchange, found: Match, judgement: Judgement, answered_by_proxy: bool = False) -> None:
        """Every check of one exchange (the request was judged before it was sent)."""
        label = self.label(found, judgement)
        self.report_request(label, judgement)
        if answered_by_proxy:
            return
        status = exchange.status
        raw = decoded(exchange.response_body, exchange.response_headers.get("content-encoding"))
        name = found.endpoint.name
        if raw is None and exchange.response_body is not None:
            coding = exchange.response_headers.get("content-encoding", "")
            self.findings.add(
                "info",
                "answer",
                label,
                "answer not checked",
                "Content-Encoding",
                "identity, gzip or deflate",
                coding,
                "a content coding the proxy does not read",
            )
            return
        body = json_or_text(raw)
        if judgement.refusal is not None and status < 400:
            expected = f"a refusal ({judgement.refusal.kind})"
            self.findings.add(
                "warning",
                "request",
                label,
                "accepted a request the contract refuses",
                "HTTP status",
                expected,
                str(status),
                "the provider is more lenient than the captured contract",
            )
        if judgement.refusal is None and status in (400, 422):
            self.findings.add(
                "info",
                "request",
                label,
                "refused a request the contract accepts",
                "HTTP status",
                "2xx",
                f"{status} {_error_text(body)}",
                "the provider refused what the captured schema allows",
            )
        message = "error" if status >= 400 else {"submit": "submit-response", "poll": "poll-response"}.get(name)
        if message is None:
            return  # cancel and list answers are not documented
        documented = documented_status(self.provider, body) if message == "error" else None
        headers = dict(exchange.response_headers)
        observation = Observation(self.provider.name, label, message, status, body, headers, documented)
        for finding in compare(observation):
            seen = str(status) if finding.path == "HTTP status" else seen_at(body, finding.path)
            if finding.path == "Content-Type":
                seen = exchange.response_headers.get("content-type", "absent")
            self.findings.add(
                finding.severity, "answer", label, finding.kind, finding.path, finding.detail, seen, finding.detail
            )
        if status < 400 and isinstance(body, dict):
            task_id = self.task_id_of(found, exchange.query)
            if name == "submit":
                created = _pointer(body, self.provider.task_fields["id_in_submit"])
                if isinstance(created, str) and created:
                    self.track(created, _Task(judgement.kind, exchange.sent))
            elif name == "poll" and task_id:
                self.lifecycle(label, task_id, body, exchange.sent)

    def track(self, task_id: str, task: _Task) -> _Task:
        with self._lock:
            self.tasks[task_id] = task
            self.tasks.move_to_end(task_id)
            while len(self.tasks) > MAX_TASKS:
                self.tasks.popitem(last=False)
        return task

    def lifecycle(self, label: str, task_id: str, body: dict[str, Any], at: float) -> None:
        provider = self.provider
        word = _pointer(body, provider.task_fields["status_in_poll"])
        state = provider.state_for_word(word) if isinstance(word, str) else None
        if state is None:
            return  # an unknown word is already a breaking answer finding
        with self._lock:
            task = self.tasks.get(task_id)
        if task is None:  # submitted before the proxy started, or elsewhere: follow it from here
            if state.canonical == "unknown":
                return
            task = self.track(task_id, _Task(None, None, state.canonical))
        previous = task.state
        found = self.findings.add
        if previous not in RANKS and state.canonical != previous:
            retention = self.profile.retention_seconds
            expired = task.terminal_since is not None and at - task.terminal_since >= retention * 0.99
            if not (state.canonical == "unknown" and expired):
                expected = f"stays {provider.states[previous].word}"
                found(
                    "breaking",
                    "lifecycle",
                    label,
                    "terminal state left",
                    provider.task_fields["status_in_poll"],
                    expected,
                    state.word,
                    f"a {provider.states[previous].word} task answered {state.word}",
                )
        elif previous in RANKS and state.canonical in RANKS and RANKS[state.canonical] < RANKS[previous]:
            expected = f"{provider.states[previous].word} or later"
            found(
                "breaking",
                "lifecycle",
                label,
                "status went backwards",
                provider.task_fields["status_in_poll"],
                expected,
                state.word,
                "the status only moves forward",
            )
        elif previous in RANKS and state.canonical == "unknown":
            found(
                "warning",
                "lifecycle",
                label,
                "task forgotten",
                provider.task_fields["status_in_poll"],
                "the task's state",
                state.word,
                "a task this proxy saw created is no longer known",
            )
        url_pointer = provider.task_fields["result_url_in_poll"]
        url = _pointer(body, url_pointer)
        if url is not None and state.canonical != "succeeded":
            found(
                "breaking",
                "lifecycle",
                label,
                "result URL outside succeeded",
                "$" + url_pointer.replace("/", "."),
                f"no result URL while {state.word}",
                "a URL",
                "a result URL exactly when succeeded",
            )
        window = documented_window(provider.name, task.kind)
        if task.submitted is not None and window is not None and not task.timed:
            elapsed = at - task.submitted
            if state.canonical == "succeeded" and elapsed < window[0]:
                task.timed = True
                found(
                    "warning",
                    "lifecycle",
                    label,
                    "timing outside the documented range",
                    "lifecycle",
                    f"at least {window[0]:.0f} s from submit to {state.word}",
                    f"{elapsed:.0f} s",
                    "finished faster than documented",
                )
            elif elapsed > window[1] and state.canonical in RANKS:
                task.timed = True
                found(
                    "warning",
                    "lifecycle",
                    label,
                    "timing outside the documented range",
                    "lifecycle",
                    f"at most {window[1]:.0f} s from submit to the end",
                    f"{elapsed:.0f} s and still {state.word}",
                    "slower than documented",
                )
        if state.canonical != task.state:
            if state.canonical not in RANKS and task.terminal_since is None:
                task.terminal_since = at
            if not (previous not in RANKS and state.canonical == "unknown"):
                task.state = state.canonical


def _pointer(body: Any, pointer: str) -> Any:
    try:
        return resolve_pointer(body, pointer)
    except (KeyError, IndexError, ValueError, TypeError):
        return None


def documented_status(provider: Provider, body: Any) -> int | None:
    """The status the provider documents for the error code an error answer carries (its
    error.json ``x-codes``, keyed by code or by status); None when the answer names none."""
    codes = provider.documents["error.json"].get("x-codes", {})
    values = list(body.values()) if isinstance(body, dict) else []
    values += [v for nested in values if isinstance(nested, dict) for v in nested.values()]
    for value in values:
        if isinstance(value, bool) or not isinstance(value, str | int) or str(value) not in codes:
            continue
        entry = codes[str(value)]
        status = entry.get("status") if isinstance(entry, Mapping) else None
        if isinstance(status, int) and not isinstance(status, bool):
            return status
        if str(value).isdigit() and 100 <= int(value) <= 599:
            return int(value)
    return None


def _error_text(body: Any) -> str:
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("code", "message") if k in body]
        return " ".join(parts)[:120]
    return ""
