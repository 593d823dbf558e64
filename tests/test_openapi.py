"""`wanmock openapi`: each provider's OpenAPI 3.1 document is valid, says exactly what the schema
files say, and the mock conforms to it under Schemathesis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import jsonschema
import pytest
import schemathesis
from hypothesis.stateful import run_state_machine_as_test
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from schemathesis.config import SchemathesisConfig
from wanmock.mockserver.app import create_app
from wanmock.mockserver.cli import main
from wanmock.mockserver.clock import ManualClock
from wanmock.mockserver.config import Options, ServerConfig
from wanmock.schemas import catalog
from wanmock.schemas.catalog import ROOT
from wanmock.schemas.openapi import openapi_document

from tests.conftest import KEY, PROVIDERS, Mock

DOC_URI = "https://wanmock.dev/openapi.json"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_document_is_valid_openapi_3_1(provider: str) -> None:
    document = openapi_document(provider)
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on any violation of the OpenAPI 3.1 specification


@pytest.mark.parametrize("provider", PROVIDERS)
def test_document_is_built_from_the_manifest(provider: str) -> None:
    p = catalog().provider(provider)
    document = openapi_document(provider)
    hosts = [r["url"] for r in p.manifest.get("regions", [{"url": p.base_url}])]
    assert [s["url"] for s in document["servers"]] == hosts
    assert hosts[0] == p.base_url
    assert document["x-source"] == p.manifest["x-source"]
    [(name, scheme)] = document["components"]["securitySchemes"].items()
    assert scheme == {"type": "http", "scheme": p.manifest["auth"]["scheme"].lower()}
    assert document["security"] == [{name: []}]
    operations = [(path, method) for path, item in document["paths"].items() for method in item]
    for endpoint in p.endpoints.values():
        for template in endpoint.paths:
            if "{model}" in template:
                expected = [template.replace("{model}", i) for m in p.models.values() for i in m.ids]
            else:
                expected = [template]
            for path in expected:
                assert (path, endpoint.method.lower()) in operations
                operation = document["paths"][path][endpoint.method.lower()]
                headers = {
                    x["name"]: x["schema"]["enum"] for x in operation.get("parameters", []) if x["in"] == "header"
                }
                assert headers == {k: [v] for k, v in endpoint.headers.items()}
                required_query = {
                    x["name"] for x in operation.get("parameters", []) if x["in"] == "query" and x["required"]
                }
                assert required_query == set(endpoint.query)
    assert all("{model}" not in path for path, _ in operations)


def test_modellix_has_one_concrete_submit_path_per_model_and_suffix() -> None:
    paths = openapi_document("modellix")["paths"]
    assert "/api/v1/alibaba/wan2.7-t2v/async" in paths
    assert "/api/v1/alibaba/wan2.7-t2v" in paths
    body = paths["/api/v1/alibaba/wan2.7-videoedit"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/submit.videoedit"}


def test_body_model_providers_share_one_submit_path_with_a_oneof() -> None:
    for provider in ("aimlapi", "apiyi", "dashscope"):
        p = catalog().provider(provider)
        [path] = p.endpoints["submit"].paths
        body = openapi_document(provider)["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        refs = [s["$ref"].rsplit("/", 1)[1] for s in body["schema"]["oneOf"]]
        assert refs == [m.schema_file.removesuffix(".json") for m in p.models.values()]


def test_aimlapi_poll_takes_a_required_generation_id() -> None:
    operation = openapi_document("aimlapi")["paths"]["/v2/video/generations"]["get"]
    [param] = operation["parameters"]
    assert (param["name"], param["in"], param["required"]) == ("generation_id", "query", True)


def test_every_ref_points_into_components() -> None:
    for provider in PROVIDERS:
        text = json.dumps(openapi_document(provider))
        refs = [part.split('"', 1)[0] for part in text.split('"$ref": "')[1:]]
        assert refs
        assert all(ref.startswith("#/components/schemas/") for ref in refs), provider  # no file survives


def _document_validator(document: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    registry: Registry[Any] = Registry().with_resource(
        DOC_URI, Resource.from_contents(document, default_specification=DRAFT202012)
    )
    return jsonschema.Draft202012Validator({"$id": "https://wanmock.dev/under-test.json", **schema}, registry=registry)


def _rebased(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its document-relative refs pointing at the document resource."""
    return json.loads(json.dumps(schema).replace('"#/components/', f'"{DOC_URI}#/components/'))  # type: ignore[no-any-return]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_document_accepts_exactly_what_the_schema_files_accept(provider: str) -> None:
    """Every corpus case (valid and invalid, every message) gets the same verdict from the
    document's schemas as from the schema files: the $ref rewriting lost and added nothing."""
    document = openapi_document(provider)
    p = catalog().provider(provider)
    poll = p.endpoints["poll"]
    poll_item = document["paths"][poll.paths[0]]["get"]
    cases = sorted((ROOT / "corpus" / provider).glob("*.json"))
    assert cases
    for path in cases:
        case = json.loads(path.read_text())
        message, kind, state = case["message"], case.get("model"), case.get("state")
        if message == "poll-response" and state is None:
            schema = poll_item["responses"]["200"]["content"]["application/json"]["schema"]
        else:
            file = catalog().schema_file(provider, message, kind, state)
            schema = {"$ref": "#/components/schemas/" + file.removesuffix(".json")}
        validator = _document_validator(document, _rebased(schema))
        # The document holds the documented contract: what a provider accepts undocumented (the
        # corpus's warnings_at) is outside it, as with --strict.
        expected = catalog().validate(provider, message, case["instance"], kind=kind, state=state, strict=True) == []
        assert expected is (case["valid"] and not case.get("warnings_at")), path.name
        go_integers = message == "submit" and catalog().load(provider, message, kind).go_integers
        if go_integers and "5.0" in json.dumps(case["instance"]):
            assert validator.is_valid(case["instance"]), path.name  # JSON Schema cannot tell 5.0 from 5
            continue
        assert validator.is_valid(case["instance"]) is expected, path.name


@pytest.mark.parametrize("provider", PROVIDERS)
def test_cli_writes_the_document(provider: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / f"{provider}.json"
    assert main(["openapi", provider, "--output", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8")) == openapi_document(provider)
    assert main(["openapi", provider]) == 0
    assert json.loads(capsys.readouterr().out) == openapi_document(provider)


def test_cli_refuses_an_unknown_provider(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["openapi", "openai"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_a_path_with_a_newline_is_answered_in_the_provider_shape(mock: Mock) -> None:
    """Found by Schemathesis: Starlette's catch-all route stops at a newline, so a task id with
    %0A in it got Starlette's text/plain 404 instead of the provider's answer."""
    for provider in PROVIDERS:
        poll = catalog().provider(provider).endpoints["poll"]
        path = mock.prefix(provider) + poll.paths[0].replace("{task_id}", "a%0Ab")
        params = {name: "a\nb" for name in poll.query}
        answer = mock.get(path, params=params, headers={"Authorization": f"Bearer {KEY}"})
        assert answer.headers["content-type"] == "application/json", (provider, answer.text)
        assert (
            catalog().validate(provider, "poll-response" if answer.status_code == 200 else "error", answer.json()) == []
        )


# -- Schemathesis against the mock ----------------------------------------------------------

MAX_EXAMPLES = 25
STATEFUL_STEPS = 6

# Checks that cannot pass for a documented reason, turned off only for the operations where they
# cannot: (provider, operationId) -> {check: reason}. See also format_annotations() below.
EXCLUDED: dict[tuple[str, str], dict[str, str]] = {
    ("dashscope", "cancel"): {
        "positive_data_acceptance": "only a PENDING task can be canceled (manifest, [D3][D6]): canceling a task "
        "twice is a schema-valid request that DashScope refuses (400 UnsupportedOperation [D3])",
    },
    ("dashscope", "upload_policy"): {
        "positive_data_acceptance": "the SDK's getPolicy call is known from the SDK's source only (action=getPolicy); "
        "the document types its query parameters as strings and cannot tell that action=x is refused",
    },
    ("dashscope", "list"): {
        "positive_data_acceptance": "the list's query parameters are documented by name only (their types and "
        "values are not captured), so the document types them as strings and cannot tell that page_no=x is invalid",
    },
    **{
        ("modellix", name): dict.fromkeys(
            ("unsupported_method", "allow_header_conformance"),
            f"POST {path} is no undeclared method: Modellix's submit template POST /api/v1/{{model}} "
            "(model ids contain '/') claims it, as a submit for an unknown model; so the mock answers it as one, "
            "and its 405s list Allow: GET, POST",
        )
        for name, path in (
            ("poll", "/api/v1/tasks/{id}"),
            ("models", "/api/v1/models"),
            ("apikey_validate", "/api/v1/apikey/validate"),
            ("team_balance", "/api/v1/team/balance"),
        )
    },
}
EXCLUDED[("modellix", "apikey_validate")]["ignored_auth"] = (
    "a key check (manifest auth: any-key): any Bearer token reaches it and data.is_valid says whether the key "
    "is accepted (the official CLI reads it, shared/providers.md 7.2), so it is not refused with 401"
)


def _reaches_format(document: dict[str, Any], node: Any, seen: set[str]) -> bool:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref not in seen:
            seen.add(ref)
            if _reaches_format(document, document["components"]["schemas"][ref.rsplit("/", 1)[1]], seen):
                return True
        return "format" in node or any(
            _reaches_format(document, v, seen) for k, v in node.items() if not k.startswith("x-")
        )
    return isinstance(node, list) and any(_reaches_format(document, v, seen) for v in node)


def format_annotations(provider: str) -> dict[str, dict[str, str]]:
    """negative_data_rejection is off where a request body has a `format` (Modellix's string<uri>
    fields): in JSON Schema 2020-12, the dialect of OpenAPI 3.1, `format` is an annotation, and
    the schema files say that neither validator asserts it (the mock checks their `pattern`); a
    value that only breaks the format is valid to them, but Schemathesis sends it as invalid."""
    document = openapi_document(provider)
    reason = "`format` is an annotation in JSON Schema 2020-12; the mock checks the pattern"
    return {
        operation["operationId"]: {"negative_data_rejection": reason}
        for item in document["paths"].values()
        for operation in item.values()
        if _reaches_format(document, operation.get("requestBody", {}), set())
    }


def excluded(provider: str) -> dict[str, dict[str, str]]:
    out = format_annotations(provider)
    for (name, operation_id), checks in EXCLUDED.items():
        if name == provider:
            out.setdefault(operation_id, {}).update(checks)
    return out


def schemathesis_config(provider: str) -> SchemathesisConfig:
    document = openapi_document(provider)
    [scheme] = document["components"]["securitySchemes"]
    operations = [
        {"include-operation-id": operation_id, "checks": {check: {"enabled": False} for check in checks}}
        for operation_id, checks in excluded(provider).items()
    ]
    return SchemathesisConfig.from_dict(
        {
            "seed": 1,
            "base-url": "http://wanmock",
            "auth": {"openapi": {scheme: {"bearer": KEY}}},
            "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
            "phases": {"stateful": {"max-steps": STATEFUL_STEPS}},
            "checks": {
                "enabled": True,
                # Stricter than the default (which also takes 401, 403, 409, 429 and 5xx): a valid
                # request is answered 2xx, or 404 for a task id the mock never issued.
                "positive_data_acceptance": {"expected-statuses": ["2XX", "404"]},
            },
            "operations": operations,
        }
    )


def test_checks_are_excluded_only_where_documented() -> None:
    assert set(format_annotations("modellix")) == {
        "submit_api_v1_alibaba_wan2_7_videoedit_async",
        "submit_api_v1_alibaba_wan2_7_videoedit",
    }
    assert all(format_annotations(p) == {} for p in ("aimlapi", "apiyi", "dashscope"))
    for (provider, operation_id), checks in EXCLUDED.items():
        ids = [op["operationId"] for item in openapi_document(provider)["paths"].values() for op in item.values()]
        assert operation_id in ids
        allowed = {"positive_data_acceptance", "unsupported_method", "allow_header_conformance", "ignored_auth"}
        assert set(checks) <= allowed


class MockSlot:
    """An ASGI app forwarding to the mock a fixture puts in it. Schemathesis binds an app to a
    schema when it parametrizes a test (at import); the mock itself is made by a fixture."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # the fixture owns the mock's lifetime
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert self.app is not None, "use the mock_apps fixture"
        await self.app(scope, receive, send)


SLOTS = {provider: MockSlot() for provider in PROVIDERS}
SCHEMAS = {
    provider: schemathesis.openapi.from_dict(openapi_document(provider), config=schemathesis_config(provider))
    for provider in PROVIDERS
}
for _provider, _schema in SCHEMAS.items():
    _schema.app = SLOTS[_provider]


def _integral_float(value: Any) -> bool:
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, dict):
        return any(_integral_float(v) for v in value.values())
    return isinstance(value, list) and any(_integral_float(v) for v in value)


@SCHEMAS["apiyi"].hook
def filter_body(context: Any, body: Any) -> bool:
    """APIYI decodes integers into Go ints and refuses 12.0, which JSON Schema (so the document)
    counts as the integer 12: such bodies say nothing about the document and are left out."""
    return not _integral_float(body)


@pytest.fixture(scope="module")
def mock_apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One in-process mock per provider, served at the root, accepting only the test key (so
    that ignored_auth can hold), on a clock that never moves (tasks stay queued)."""
    apps = {
        provider: create_app(
            ServerConfig(
                providers=(provider,),
                clock=ManualClock(),
                seed=1,
                keys=frozenset({KEY}),
                media_dir=tmp_path_factory.mktemp("media"),
                # The document is the documented contract: what a provider accepts although its
                # pages do not document it is refused here, as the document says.
                options=Options(refuse_undocumented=True),
            )
        )
        for provider in PROVIDERS
    }
    for provider, app in apps.items():
        SLOTS[provider].app = app
    yield apps
    for provider, app in apps.items():
        SLOTS[provider].app = None
        app.state.wanmock.media.close()


# One test per provider; Schemathesis parametrizes each by operation and runs its examples,
# coverage and fuzzing phases, positive and negative data, with every check.


@pytest.mark.slow
@SCHEMAS["modellix"].parametrize()
def test_modellix_mock_conforms_to_its_openapi_document(case: Any, mock_apps: dict[str, Any]) -> None:
    case.call_and_validate()


@pytest.mark.slow
@SCHEMAS["aimlapi"].parametrize()
def test_aimlapi_mock_conforms_to_its_openapi_document(case: Any, mock_apps: dict[str, Any]) -> None:
    case.call_and_validate()


@pytest.mark.slow
@SCHEMAS["apiyi"].parametrize()
def test_apiyi_mock_conforms_to_its_openapi_document(case: Any, mock_apps: dict[str, Any]) -> None:
    case.call_and_validate()


@pytest.mark.slow
@SCHEMAS["dashscope"].parametrize()
def test_dashscope_mock_conforms_to_its_openapi_document(case: Any, mock_apps: dict[str, Any]) -> None:
    case.call_and_validate()


@pytest.mark.slow
@pytest.mark.parametrize("provider", PROVIDERS)
def test_mock_conforms_to_its_openapi_document_across_calls(provider: str, mock_apps: dict[str, Any]) -> None:
    """Stateful: submit, then follow the document's links to poll (and cancel) that task."""
    app = mock_apps[provider]

    run_state_machine_as_test(
        SCHEMAS[provider].as_state_machine(),
        settings=hypothesis.settings(
            max_examples=MAX_EXAMPLES,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            database=None,
            derandomize=True,
        ),
    )
    answered = {(e.endpoint, e.status) for e in app.state.wanmock.store.journal()}
    assert {("submit", 200), ("poll", 200)} <= answered  # authenticated, valid requests got through
