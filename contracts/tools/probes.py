"""The free probes and the cheapest billable request, defined once for every tool.

A free probe costs nothing at any provider: a request without a key, one with a refused key, a
body the provider must refuse (duration 99) and a poll of a task id that does not exist.
``wanmock drift`` compares their answers with the contract, ``wanmock record`` keeps them in a
cassette, and ``wanmock contract --live`` checks the client against them. What each should
answer is read from the manifest, never from a table of provider names.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wanmock.contracts.client import errors
from wanmock.contracts.client.dialects import dialect_for
from wanmock.contracts.client.models import ImageToVideo, TextToVideo, VideoEdit, VideoRequest
from wanmock.schemas import catalog

PROMPT = "wanmock probe: a red ball on a table"
UNKNOWN_TASK_ID = "wanmock-no-such-task"
REFUSED_KEY = "invalid"  # refused by every provider, and by wanmock by default
# The mock does not fetch media; a live recording of i2v or videoedit needs real URLs.
EXAMPLE_IMAGE = "https://example.com/first_frame.png"
EXAMPLE_VIDEO = "https://example.com/input.mp4"


@dataclass(frozen=True)
class Probe:
    """One free request and what the contract says it gets."""

    name: str  # missing-key, refused-key, invalid-body, unknown-task
    method: str
    path: str  # relative to the provider's base URL
    key: str | None  # the Bearer token sent; None sends no Authorization
    message: str  # the schema message the answer must match: "error" or "poll-response"
    status: int | None  # the documented status; None where the documentation is silent
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name.replace("-", " ")


def cheapest_duration(provider: str, kind: str) -> int | None:
    """The shortest positive duration the schema allows (None: the schema sets no range)."""
    p = catalog().provider(provider)
    node = p.field_schema(p.models[kind].schema_file, dialect_for(provider).FIELDS[kind]["duration"])
    for option in node.get("anyOf", []) or [node]:
        if "enum" in option:
            return min(v for v in option["enum"] if isinstance(v, int) and not isinstance(v, bool) and v > 0)
        if "minimum" in option:
            return int(option["minimum"])
    return None


def cheapest_request(provider: str, kind: str, media: Sequence[str] = (), prompt: str = PROMPT) -> VideoRequest:
    """The cheapest billable request of ``kind``: 720P and the shortest duration. ``media``: the
    first frame (i2v), or the input video then reference images (videoedit); example URLs where
    none is given (the mock does not fetch them), and one reference image where one is required."""
    duration = cheapest_duration(provider, kind)
    if kind == "t2v":
        return TextToVideo(prompt, resolution="720P", duration=duration)
    if kind == "i2v":
        return ImageToVideo(media[0] if media else EXAMPLE_IMAGE, prompt=prompt, resolution="720P", duration=duration)
    if kind == "videoedit":
        video, *images = media or [EXAMPLE_VIDEO]
        request = VideoEdit(video, tuple(images), prompt=prompt, resolution="720P", duration=duration)
        try:
            dialect_for(provider).prepare_submit(request)
        except errors.UnsupportedRequest:
            if images:
                raise
            return dataclasses.replace(request, reference_images=(EXAMPLE_IMAGE,))  # a reference image is required
        return request
    raise errors.WanError(f"unknown model kind {kind!r}; known: t2v, i2v, videoedit")


def invalid_body(provider: str, kind: str = "t2v") -> dict[str, Any]:
    """A body of ``kind`` the provider must refuse without billing: duration 99."""
    body: dict[str, Any] = json.loads(json.dumps(dialect_for(provider).body(cheapest_request(provider, kind))))
    target = body.setdefault("parameters", {}) if isinstance(body.get("input"), dict) else body
    target["duration"] = 99
    return body


def unknown_task_answer(provider: str) -> tuple[str, int | None]:
    """(schema message, status) the manifest documents for a poll of a task id that does not
    exist: a poll answer in the ``unknown`` state where the provider has one, a documented 404
    on the poll endpoint, else an error whose status the documentation does not give."""
    p = catalog().provider(provider)
    if "unknown" in p.states:
        return "poll-response", 200
    if "404" in p.endpoints["poll"].responses:
        return "error", 404
    return "error", None


def free_probes(provider: str, api_key: str, names: Sequence[str] | None = None) -> list[Probe]:
    """The free probes of ``provider`` (all, or those ``names``), in the order they are sent."""
    dialect = dialect_for(provider)
    kind = "t2v" if "t2v" in catalog().provider(provider).models else next(iter(catalog().provider(provider).models))
    submit = dialect.prepare_submit(cheapest_request(provider, kind))
    poll = dialect.prepare_poll(UNKNOWN_TASK_ID)
    message, status = unknown_task_answer(provider)
    found = [
        Probe("missing-key", submit.method, submit.path, None, "error", 401, submit.headers, submit.body),
        Probe("refused-key", submit.method, submit.path, REFUSED_KEY, "error", 401, submit.headers, submit.body),
        Probe(
            "invalid-body",
            submit.method,
            submit.path,
            api_key,
            "error",
            400,
            submit.headers,
            invalid_body(provider, kind),
        ),
        Probe("unknown-task", poll.method, poll.path, api_key, message, status, params=dict(poll.params or {})),
    ]
    return [p for p in found if names is None or p.name in names]


def uses_example_media(request: VideoRequest) -> bool:
    values = [getattr(request, f.name) for f in dataclasses.fields(request)]
    flat = [v for value in values for v in (value if isinstance(value, tuple) else (value,))]
    return EXAMPLE_IMAGE in flat or EXAMPLE_VIDEO in flat
