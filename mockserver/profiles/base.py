"""What every provider profile shares: model lookup, validation, defaults, ids, states.

A profile is the edge where canonical tasks and errors become one provider's words and
shapes. Paths, status words, model ids and defaults come from the catalog (schemas/); a
profile module only says how that provider builds its bodies.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from wanmock.mockserver.config import ServerConfig
from wanmock.mockserver.errors import ApiError
from wanmock.mockserver.tasks import EXPIRED, Task, VideoParams
from wanmock.schemas import CompiledSchema, Issue, Model, catalog, resolve_pointer
from wanmock.schemas.catalog import pointer_tokens


class Context:
    """What a profile needs to know about the request it is answering.

    ``request_id`` is a string, or a function that draws one: it is drawn when first read, so
    an answer that shows none (a Modellix poll of an unfinished task) costs no draw."""

    __slots__ = ("_request_id", "base_url", "now", "path", "prefix", "result_url")

    def __init__(
        self,
        now: float,
        base_url: str,  # scheme://host[:port], no trailing slash
        prefix: str,  # where this provider is mounted ("" or "/dashscope")
        path: str,
        request_id: str | Callable[[], str],
        result_url: Callable[[Task], str],
    ) -> None:
        self.now, self.base_url, self.prefix, self.path = now, base_url, prefix, path
        self._request_id, self.result_url = request_id, result_url

    @property
    def request_id(self) -> str:
        found = self._request_id
        if not isinstance(found, str):
            found = self._request_id = found()
        return found


Answer = tuple[int, dict[str, Any]]


_ABSENT = object()
_UUID4_KEEP = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, the RFC 4122 variant


def uuid4_hex(rng: random.Random) -> str:
    """A random version-4 UUID drawn from ``rng``, as ``uuid.UUID(int=..., version=4).hex``
    spells it, without building a ``uuid.UUID``."""
    return f"{rng.getrandbits(128) & _UUID4_KEEP | _UUID4_SET:032x}"


def uuid4_text(rng: random.Random) -> str:
    """The same, as ``str(uuid.UUID(...))`` spells it (with dashes)."""
    h = uuid4_hex(rng)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True)
class Ask:
    """A request to an endpoint the profile answers itself (manifest ``answered_by: profile``):
    an account check, a balance, a model list, an upload policy."""

    endpoint: str
    query: Mapping[str, str]
    key_valid: bool  # whether the server's --keys accept the Bearer token sent
    ctx: Context


class Profile:
    name: ClassVar[str]
    # Canonical error kind -> this provider's HTTP status where it differs from DEFAULT_STATUS.
    STATUS: ClassVar[dict[str, int]] = {}

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.options = config.options
        self.catalog = catalog()
        self.provider = self.catalog.provider(self.name)
        self.errors_doc = self.provider.documents["error.json"]
        self._per_model: dict[str, tuple[str | None, Mapping[str, str] | None]] = {}
        self._fields: dict[tuple[str, str], tuple[tuple[str, ...], Any]] = {}  # (file, pointer) -> its plan
        self._schemas: dict[str, CompiledSchema] = {}  # the submit schema of each model (its variant)

    # -- catalog facts --------------------------------------------------------------------

    def word(self, canonical: str) -> str:
        return self.provider.states[canonical].word

    @functools.cached_property
    def submit_word(self) -> str:
        """The status word of a successful submit (APIYI says PENDING, then polls say submitted)."""
        pointer = self.provider.task_fields["status_in_submit"]
        return str(self.provider.field_schema("submit-response.json", pointer).get("const", self.word("queued")))

    @property
    def retention_seconds(self) -> float:
        configured = self.options.retention_seconds.get(self.name)
        if configured is not None:
            return configured
        documented = self.provider.task_fields.get("retention_seconds")
        return float(documented) if documented else self.options.default_retention_seconds

    def default(self, model: Model, pointer: str) -> Any:
        """The documented ``default`` of the request field at ``pointer`` (None if none); read
        once per model and field, into ``field``'s plan."""
        return self.provider.field_schema(model.schema_file, pointer).get("default")

    def field(self, model: Model, body: Mapping[str, Any], pointer: str) -> Any:
        """The request's value at ``pointer``, or the schema's default for it."""
        plan = self._fields.get((model.schema_file, pointer))
        if plan is None:  # the pointer's tokens and default, once per model and field
            plan = self._fields[(model.schema_file, pointer)] = (pointer_tokens(pointer), self.default(model, pointer))
        tokens, default = plan
        node: Any = body
        for token in tokens:  # through plain objects (the usual case): absent is no exception
            if type(node) is not dict:
                break
            node = node.get(token, _ABSENT)
            if node is _ABSENT:
                return default
        else:
            return node
        try:
            return resolve_pointer(body, pointer)
        except (KeyError, IndexError, ValueError):
            return default

    # -- requests -------------------------------------------------------------------------

    def model_for(self, path_params: Mapping[str, str], body: Mapping[str, Any]) -> Model:
        given: Any = path_params.get("model", "") if self.provider.model_in_path else body.get("model")
        if given is None:
            raise ApiError("invalid_request", "'model' is required")
        if not isinstance(given, str):
            raise ApiError("invalid_request", f"'model' must be a string, not {given!r}")
        model_id: str = given
        model = self.provider.model_for_id(model_id)
        if model is None:
            offered = ", ".join(i for m in self.provider.models.values() for i in m.ids)
            if self.provider.model_in_path:  # an unknown path: "model not found" [M5][M6]
                raise ApiError("unknown_model", f"model '{model_id}' not found; offered: {offered}")
            raise ApiError("invalid_request", f"$.model: {json.dumps(model_id)} is not one of {offered}")
        return model

    def validate(self, model: Model, body: Mapping[str, Any]) -> list[str]:
        """Refuse what the provider refuses; return a warning for each thing it accepts although
        its pages do not document it (or refuse those too with ``refuse_undocumented``)."""
        variant, deferred = self.model_facts(model)
        schema = self._schemas.get(model.schema_file)
        if schema is None:
            schema = self.catalog.load(self.name, "submit", model.kind, None, variant)
            self._schemas[model.schema_file] = schema
        if schema.is_valid(body):  # the usual case: nothing refused, nothing to tell
            return []
        verdict = self.catalog.check(self.name, "submit", body, kind=model.kind, variant=variant)
        issues = verdict.all_issues if self.options.refuse_undocumented else verdict.errors
        later = [i for i in issues if deferred and (i.path, i.keyword) == (deferred["at"], deferred["keyword"])]
        issues = [i for i in issues if i not in later]
        if issues:
            raise ApiError("invalid_request", describe(issues), issues=issues)
        warnings = [finding.warning for finding in verdict.warnings]
        return [*warnings, deferred["warning"]] if deferred and later else warnings

    def model_facts(self, model: Model) -> tuple[str | None, Mapping[str, str] | None]:
        """(the schema variant the options ask for, the deferred failure): per model, read once."""
        found = self._per_model.get(model.schema_file)
        if found is None:
            variant = self.catalog.variants(self.name, model.schema_file, self.options)
            found = self._per_model[model.schema_file] = (variant, self.deferred_failure(model))
        return found

    def deferred_failure(self, model: Model) -> Mapping[str, str] | None:
        """The ``fail_task`` reading of an ``x-conflicts`` entry when its option asks for it: the
        issue is accepted at submit and the task fails later with the entry's code and message."""
        for conflict in self.provider.documents[model.schema_file].get("x-conflicts", []):
            option = conflict.get("option")
            if "fail_task" in conflict and option and getattr(self.options, option, None) == "fail_task":
                return conflict["fail_task"]  # type: ignore[no-any-return]
        return None

    def failure_at_submit(self, model: Model, body: Mapping[str, Any]) -> tuple[str, str] | None:
        """(code, message) the task fails with when validation deferred an issue to the task."""
        deferred = self.model_facts(model)[1]
        if deferred is None:
            return None
        issues = self.catalog.validate(self.name, "submit", body, kind=model.kind, strict=True)
        if any((i.path, i.keyword) == (deferred["at"], deferred["keyword"]) for i in issues):
            return deferred["code"], deferred["message"]
        return None

    def video_params(self, model: Model, body: Mapping[str, Any]) -> VideoParams:
        raise NotImplementedError

    # -- identity -------------------------------------------------------------------------

    def new_task_id(self, rng: random.Random) -> str:
        return uuid4_text(rng)

    # -- responses ------------------------------------------------------------------------

    def submit_body(self, task: Task, ctx: Context) -> dict[str, Any]:
        raise NotImplementedError

    def poll_body(self, task: Task, state: str, ctx: Context) -> Answer:
        raise NotImplementedError

    def missing_task(self, task_id: str, ctx: Context) -> Answer:
        """The answer for an unknown or expired task id."""
        raise NotImplementedError

    def error_body(self, error: ApiError, ctx: Context) -> Answer:
        raise NotImplementedError

    def serve(self, ask: Ask) -> Answer:
        """The answer of an endpoint this profile serves itself (see :class:`Ask`)."""
        raise ApiError("not_found", f"no such endpoint: {ask.endpoint}")

    def task_list(self, tasks: Sequence[Task], query: Mapping[str, str], ctx: Context) -> Answer:
        """The answer of the provider's task list endpoint, where it documents one."""
        raise ApiError("not_found", "this provider has no task list")

    def error_answer(self, error: ApiError, ctx: Context) -> Answer:
        """The provider-shaped answer to ``error``, with this provider's status for its kind."""
        if error.explicit_status is None and error.kind in self.STATUS:
            error.status = self.STATUS[error.kind]
        return self.error_body(error, ctx)

    def answer(self, task: Task, ctx: Context) -> Answer:
        state = task.state_at(ctx.now)
        if state == EXPIRED:
            return self.missing_task(task.id, ctx)
        return self.poll_body(task, state, ctx)

    def documented_message(self, key: str | int) -> str | None:
        entry = self.errors_doc.get("x-codes", {}).get(str(key))
        return entry.get("message") if isinstance(entry, Mapping) else None


ISSUES_SHOWN = 10  # a body with 100000 unknown keys gets a readable answer, not 18 MB
ISSUE_TEXT_LIMIT = 300  # an issue quoting a 5 MB value or key is cut short


def describe(issues: Sequence[Issue], render: Callable[[Issue], str] = str) -> str:
    """Validation issues as one line: ``$.a: message; $.b: message`` (``render`` words each one)."""
    texts = []
    for issue in issues[:ISSUES_SHOWN]:
        text = render(issue)
        if len(text) > ISSUE_TEXT_LIMIT:
            text = text[:ISSUE_TEXT_LIMIT] + f"...<{len(text)} characters>"
        texts.append(text)
    if len(issues) > ISSUES_SHOWN:
        texts.append(f"and {len(issues) - ISSUES_SHOWN} more issues")
    return "; ".join(texts)
