"""Provider drift: probe a provider, compare every answer with the captured contract, and say
what changed and how much it matters.

Severities:
  breaking  a client written against the captured contract can break: a required field is
            missing, a type changed, a status word is outside the vocabulary, a status code or
            error envelope changed, the result URL moved.
  warning   a client will probably cope, but someone should look: a new field, a new header,
            a lifecycle far outside the documented timing.
  info      worth knowing, nothing to do: an undocumented behaviour the contract leaves open.

Only structure counts: ids, timestamps and signed URL queries are values, and values are never
compared, so they never count as drift.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import httpx
from wanmock.contracts.client.dialects import dialect_for
from wanmock.contracts.client.models import TextToVideo
from wanmock.contracts.tools.control import Control
from wanmock.contracts.tools.probes import cheapest_duration, free_probes
from wanmock.schemas import Issue, Provider, catalog, resolve_pointer

SEVERITIES = ("breaking", "warning", "info")
RANK = {s: i for i, s in enumerate(reversed(SEVERITIES))}  # info 0, warning 1, breaking 2


@dataclass(frozen=True)
class Finding:
    severity: str
    provider: str
    probe: str
    kind: str
    path: str
    detail: str


@dataclass
class Observation:
    """One answer seen, and what the contract says it should be."""

    provider: str
    probe: str  # a human label: "missing key", "poll t2v", ...
    message: str  # the schema message the body must match: submit-response, poll-response, error
    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)
    expected_status: int | None = None  # None: any 2xx for success messages, any 4xx/5xx for error
    elapsed: float | None = None  # seconds from submit to a terminal answer (lifecycle probes)
    kind: str | None = None


def _schema_file(observation: Observation) -> str | None:
    """The file of the schema the observed body answers to (a poll: the state its word names)."""
    cat = catalog()
    provider = cat.provider(observation.provider)
    if observation.message == "poll-response":
        try:
            word = resolve_pointer(observation.body, provider.task_fields["status_in_poll"])
        except (KeyError, IndexError, TypeError, ValueError):
            return None
        state = provider.state_for_word(word) if isinstance(word, str) else None
        return state.schema_file if state else None
    return cat.schema_file(observation.provider, observation.message)


def _new_fields(provider: Provider, schema: Any, within: str, body: Any, path: str = "$") -> Iterable[str]:
    """JSON paths of object keys the schema (a node of file ``within``) does not declare
    (responses are open, so these validate; they are still news)."""
    if not isinstance(schema, Mapping):
        return
    schema, within = provider.deref(schema, within)
    for branch in schema.get("allOf", []):
        yield from _new_fields(provider, branch, within, body, path)
    if isinstance(body, dict) and "properties" in schema:
        declared = schema["properties"]
        for key, value in body.items():
            if key not in declared:
                yield f"{path}.{key}"
            else:
                yield from _new_fields(provider, declared[key], within, value, f"{path}.{key}")
    elif isinstance(body, list) and "items" in schema:
        for index, item in enumerate(body[:3]):
            yield from _new_fields(provider, schema["items"], within, item, f"{path}[{index}]")


def _classify(observation: Observation, issue: Issue) -> tuple[str, str]:
    provider = catalog().provider(observation.provider)
    fields = provider.task_fields
    status_path = "$" + fields["status_in_poll"].replace("/", ".")
    url_path = "$" + fields["result_url_in_poll"].replace("/", ".").replace(".0.", "[0].")
    if observation.message == "error":
        return "error envelope changed", issue.message
    if issue.path == status_path and issue.keyword in ("enum", "const"):
        return "status word outside the vocabulary", issue.message
    if issue.keyword == "required" and (issue.path == url_path or url_path.startswith(issue.path + ".")):
        return "result URL moved", f"{issue.path}: {issue.message}"
    if issue.keyword == "required":
        return "required field missing", issue.message
    if issue.keyword == "type":
        return "type changed", issue.message
    return "schema violation", issue.message


def documented_window(provider: str, kind: str | None) -> tuple[float, float] | None:
    """The seconds from submit to the end within which a task of ``kind`` is not worth a warning:
    from 0.3x the shortest to 3x the longest documented queue + run (None: nothing documented)."""
    timing = catalog().provider(provider).manifest.get("timing", {})
    if kind not in timing.get("run_seconds", {}):
        return None
    low, high = timing["run_seconds"][kind]
    return 0.3 * (low + timing["queue_seconds"]), 3 * (high + timing["queue_seconds"])


def compare(observation: Observation) -> list[Finding]:
    """Every difference between one observed answer and the captured contract."""
    findings: list[Finding] = []

    def found(severity: str, kind: str, path: str, detail: str) -> None:
        findings.append(Finding(severity, observation.provider, observation.probe, kind, path, detail))

    success = observation.message != "error"
    if observation.expected_status is not None and observation.status != observation.expected_status:
        found(
            "breaking",
            "status code changed",
            "HTTP status",
            f"documented {observation.expected_status}, answered {observation.status}",
        )
    elif observation.expected_status is None and success != (observation.status < 400):
        found("breaking", "status code changed", "HTTP status", f"answered {observation.status}")
    content_type = observation.headers.get("content-type", "application/json")
    if "json" not in content_type:
        found("breaking", "content type changed", "Content-Type", content_type)
    issues = catalog().validate(observation.provider, observation.message, observation.body)
    for issue in issues:
        kind, detail = _classify(observation, issue)
        found("breaking", kind, issue.path, detail)
    file = _schema_file(observation)
    if file is not None and not issues:
        provider = catalog().provider(observation.provider)
        for path in _new_fields(provider, provider.documents[file], file, observation.body):
            found("warning", "new field", path, "not in the captured schema")
    window = documented_window(observation.provider, observation.kind)
    if observation.elapsed is not None and window is not None:
        low, high = catalog().provider(observation.provider).manifest["timing"]["run_seconds"][observation.kind]
        if not window[0] <= observation.elapsed <= window[1]:
            found(
                "warning",
                "timing outside the documented range",
                "lifecycle",
                f"{observation.elapsed:.0f} s; documented {low}-{high} s running",
            )
    return findings


# -- probing ----------------------------------------------------------------------------------


class Prober:
    """Sends the probes to a provider (live or a URL) and turns the answers into observations."""

    def __init__(self, provider: str, base_url: str, api_key: str, *, admin_url: str | None = None) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.dialect = dialect_for(provider)
        self.http = httpx.Client(timeout=60)
        # A wanmock on a manual clock: lifecycles advance its clock instead of waiting.
        self.admin = Control(admin_url) if admin_url else None

    def close(self) -> None:
        self.http.close()
        if self.admin:
            self.admin.close()

    def _send(
        self,
        method: str,
        path: str,
        *,
        key: str | None,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        return self.http.request(method, self.base_url + path, headers=sent, json=body, params=params)

    def _observe(
        self, probe: str, message: str, response: httpx.Response, expected: int | None, **extra: Any
    ) -> Observation:
        try:
            body = response.json()
        except ValueError:
            body = response.text[:500]
        return Observation(
            self.provider, probe, message, response.status_code, body, dict(response.headers), expected, **extra
        )

    def free_probes(self) -> list[Observation]:
        """The free probes (wanmock.contracts.tools.probes), each answer an observation."""
        observations: list[Observation] = []
        for probe in free_probes(self.provider, self.api_key):
            answer = self._send(
                probe.method, probe.path, key=probe.key, headers=probe.headers, body=probe.body, params=probe.params
            )
            observations.append(self._observe(probe.label, probe.message, answer, probe.status))
        return observations

    def lifecycle(self, kind: str, timeout: float) -> list[Observation]:
        """One real task of ``kind`` with the cheapest parameters, polled to the end."""

        request = TextToVideo(
            "wanmock drift probe: a red ball on a table",
            resolution="720P",
            duration=cheapest_duration(self.provider, "t2v") or 5,
        )
        prepared = self.dialect.prepare_submit(request)
        started = time.monotonic()
        submitted = self._send("POST", prepared.path, key=self.api_key, headers=prepared.headers, body=prepared.body)
        observations = [self._observe(f"submit {kind}", "submit-response", submitted, 200)]
        if submitted.status_code != 200:
            return observations
        try:
            task_id = resolve_pointer(submitted.json(), self.dialect.provider.task_fields["id_in_submit"])
        except (KeyError, IndexError, TypeError, ValueError):
            return observations
        poll = self.dialect.prepare_poll(str(task_id))
        # Live: the provider's own polling advice. A mock on a manual clock: 1 s steps, so every
        # state of the lifecycle is seen at least once.
        interval = float(self.dialect.provider.manifest["polling"]["initial_seconds"]) if self.admin is None else 1.0
        while time.monotonic() - started < timeout:
            answer = self._send("GET", poll.path, key=self.api_key, params=poll.params)
            observation = self._observe(f"poll {kind}", "poll-response", answer, 200, kind=kind)
            observations.append(observation)
            try:
                word = resolve_pointer(answer.json(), self.dialect.provider.task_fields["status_in_poll"])
            except (KeyError, IndexError, TypeError, ValueError):
                break
            state = self.dialect.provider.state_for_word(word) if isinstance(word, str) else None
            if state is not None and state.terminal:
                if self.admin is None:
                    observation.elapsed = time.monotonic() - started
                break
            if self.admin is not None:
                self.admin.advance(interval)
            else:
                time.sleep(interval)
        return observations


class CassetteError(Exception):
    """A cassette that cannot be checked: missing, malformed, empty, or of another provider."""


def read_cassette(directory: Path, provider: str | None = None) -> dict[str, Any]:
    """``DIR/cassette.json`` (written by ``wanmock record``), checked enough to be worth comparing:
    a JSON object of ``provider`` (when given) with at least one interaction."""
    path = directory / "cassette.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CassetteError(f"{directory} holds no cassette.json (record one with `wanmock record`)") from None
    except OSError as exc:
        raise CassetteError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise CassetteError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("interactions"), list):
        raise CassetteError(f"{path} is not a cassette: it has no list of interactions")
    recorded = data.get("provider")
    if recorded not in catalog().providers:
        raise CassetteError(f"{path} names no known provider ({recorded!r})")
    if provider is not None and recorded != provider:
        raise CassetteError(f"{path} is a recording of {recorded}, not of {provider}")
    if not data["interactions"]:
        raise CassetteError(f"{path} is empty: it holds no interaction to compare")
    for index, interaction in enumerate(data["interactions"]):
        response = interaction.get("response") if isinstance(interaction, dict) else None
        if not isinstance(response, dict) or not isinstance(response.get("status"), int):
            raise CassetteError(f"{path}: interaction {index} has no response with a status")
    return data


def observations_from_cassette(directory: Path, provider: str | None = None) -> list[Observation]:
    """Observations from a cassette written by ``wanmock record`` (see wanmock.contracts.tools.recording).
    Raises CassetteError for a missing, malformed or empty cassette, or one of another provider."""
    data = read_cassette(directory, provider)
    provider = str(data["provider"])
    out: list[Observation] = []
    for interaction in data.get("interactions", []):
        endpoint = interaction.get("endpoint")
        response = interaction["response"]
        status = int(response["status"])
        if status >= 400:
            message = "error"
        elif endpoint == "submit":
            message = "submit-response"
        elif endpoint == "poll":
            message = "poll-response"
        else:
            continue
        label = f"recorded {endpoint} #{len(out) + 1}"
        headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
        out.append(Observation(provider, label, message, status, response.get("body"), headers))
    return out


# -- reports ----------------------------------------------------------------------------------


def render(findings: Sequence[Finding], fmt: str, provider: str, *, tool: str = "drift") -> str:
    """``findings`` as a report in ``fmt`` (json, junit, markdown, text); ``tool`` names what found them."""
    if fmt == "json":
        return json.dumps({"provider": provider, "findings": [asdict(f) for f in findings]}, indent=2) + "\n"
    if fmt == "junit":
        lines = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f'<testsuite name={quoteattr(f"wanmock.{tool}." + provider)} tests="{max(len(findings), 1)}" '
            f'failures="{sum(f.severity == "breaking" for f in findings)}">',
        ]
        if not findings:
            lines.append(f"  <testcase classname={quoteattr(provider)} name={quoteattr('no ' + tool)}/>")
        for f in findings:
            lines.append(
                f"  <testcase classname={quoteattr(provider + '.' + f.probe)} name={quoteattr(f.kind + ' ' + f.path)}>"
            )
            if f.severity == "breaking":
                lines.append(f"    <failure message={quoteattr(f.detail)}>{escape(f.detail)}</failure>")
            else:
                lines.append(f"    <system-out>{escape(f.severity + ': ' + f.detail)}</system-out>")
            lines.append("  </testcase>")
        lines.append("</testsuite>")
        return "\n".join(lines) + "\n"
    counts = {s: sum(f.severity == s for f in findings) for s in SEVERITIES}
    clean = (
        "no drift — every answer matches the captured contract"
        if tool == "drift"
        else f"no {tool} finding — every exchange matches the captured contract"
    )
    if fmt == "markdown":
        head = f"### wanmock {tool}: {provider}\n\n"
        if not findings:
            return head + clean[0].upper() + clean[1:].replace(" —", ":") + ".\n"
        rows = ["| severity | probe | what | where | detail |", "|---|---|---|---|---|"]
        for f in sorted(findings, key=lambda f: -RANK[f.severity]):
            detail = f.detail.replace("|", "\\|")
            rows.append(f"| **{f.severity}** | {f.probe} | {f.kind} | `{f.path}` | {detail} |")
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        return head + summary + "\n\n" + "\n".join(rows) + "\n"
    if not findings:
        return f"{provider}: {clean}\n"
    lines = [f"{provider}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)]
    for f in sorted(findings, key=lambda f: -RANK[f.severity]):
        lines.append(f"  {f.severity.upper():<8} {f.probe}: {f.kind} at {f.path} — {f.detail}")
    return "\n".join(lines) + "\n"


def exit_code(findings: Sequence[Finding], fail_on: str) -> int:
    threshold = RANK[fail_on]
    return 1 if any(RANK[f.severity] >= threshold for f in findings) else 0
