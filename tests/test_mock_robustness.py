"""Nothing a client sends makes the mock answer 5xx or crash.

Every rejection is an error in the provider's own envelope, with the provider's status for it,
and every answer validates against the captured schema: "error" for 4xx, "submit-response" for
a 200 submit, "poll-response" for a 200 poll. Result downloads refuse in the storage host's
XML; the control plane refuses in plain JSON. Paths, headers, model ids and the documented
values the property test draws from come from the catalog, never restated here.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from wanmock.mockserver.config import ServerConfig
from wanmock.mockserver.errors import DEFAULT_STATUS
from wanmock.mockserver.profiles import PROFILES
from wanmock.schemas import catalog, resolve_pointer

from tests.conftest import AUTH, KEY, PROVIDERS, Mock, corpus, example_body, submit_headers

JSON = {"Content-Type": "application/json"}
UNKNOWN_ID = "no-such-task"
ROUTES = [(p, name) for p in PROVIDERS for name in catalog().provider(p).endpoints]
ROUTE_IDS = [f"{p}-{name}" for p, name in ROUTES]
ODD_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PURGE"]


# -- helpers ----------------------------------------------------------------------------------


def status_for(provider: str, kind: str) -> int:
    """The HTTP status ``provider`` answers an error of canonical ``kind`` with."""
    return PROFILES[provider].STATUS.get(kind, DEFAULT_STATUS[kind])


def assert_schema(provider: str, message: str, body: Any) -> None:
    issues = catalog().validate(provider, message, body)
    assert issues == [], f"{provider} {message} outside its schema: {issues}\n{str(body)[:2000]}"


def assert_answer(provider: str, endpoint: str | None, response: httpx.Response) -> Any:
    """No 5xx; an error in the provider's envelope, or a 200 that matches its schema."""
    status = response.status_code
    assert status < 500, f"{provider} {endpoint}: {status} {response.text[:2000]}"
    assert status == 200 or 400 <= status < 500, f"{status} {response.text[:500]}"
    if status == 405:
        assert response.headers.get("allow"), response.headers
    if response.request.method == "HEAD":
        assert response.content == b""
        return None
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    if status >= 400:
        assert_schema(provider, "error", body)
    elif endpoint in ("submit", "poll"):
        assert_schema(provider, "submit-response" if endpoint == "submit" else "poll-response", body)
    else:
        assert isinstance(body, dict), body
    return body


def assert_error(provider: str, response: httpx.Response, kind: str) -> Any:
    assert response.status_code == status_for(provider, kind), (kind, response.text[:2000])
    return assert_answer(provider, None, response)


def route(m: Mock, provider: str, name: str, task_id: str = UNKNOWN_ID) -> tuple[str, str]:
    """(method, URL) of endpoint ``name`` of ``provider``, its placeholders filled in."""
    p = catalog().provider(provider)
    endpoint = p.endpoints[name]
    path = endpoint.paths[0].replace("{model}", p.models["t2v"].id).replace("{task_id}", task_id)
    query = {k: v.replace("{task_id}", task_id) for k, v in endpoint.query.items()}
    return endpoint.method, m.prefix(provider) + path + (f"?{urlencode(query)}" if query else "")


def route_headers(provider: str, name: str) -> dict[str, str]:
    return {**submit_headers(provider), **JSON} if name == "submit" else dict(AUTH)


def body_schema_has(provider: str, kind: str, field: str) -> bool:
    doc = catalog().provider(provider).documents[catalog().provider(provider).models[kind].schema_file]
    return field in doc.get("properties", {})


def with_literal(provider: str, field: str, literal: str, kind: str = "t2v") -> bytes:
    """The documented t2v example with ``field`` (under parameters where the provider nests
    it) written as the raw JSON text ``literal``: NaN, 1e400, 400 digits..."""
    body = example_body(provider, kind)
    target = body.setdefault("parameters", {}) if body_schema_has(provider, kind, "parameters") else body
    target[field] = "@@"
    return json.dumps(body).replace('"@@"', literal).encode()


def with_prompt(provider: str, prompt: str, kind: str = "t2v") -> dict[str, Any]:
    body = example_body(provider, kind)
    body.get("input", body)["prompt"] = prompt
    return body


@pytest.fixture
def journal_ok(mock: Mock) -> Iterator[None]:
    """After the test, the control plane can still show what was sent (strict JSON)."""
    yield
    for path in ("/__admin/journal", "/__admin/tasks"):
        response = mock.get(path)
        assert response.status_code == 200, response.text[:500]
        assert isinstance(response.json(), dict)


# -- bodies -----------------------------------------------------------------------------------

# name -> (the raw body for a provider, the error kind a submit answers; None: 200 or any 4xx)
BODIES: dict[str, tuple[Callable[[str], bytes], str | None]] = {
    "malformed": (lambda p: b'{"model": , }', "invalid_json"),
    "truncated": (lambda p: json.dumps(example_body(p, "t2v")).encode()[:25], "invalid_json"),
    "invalid-utf8": (lambda p: b'{"prompt": "\xff\xfe\xc3("}', "invalid_json"),
    "utf16": (lambda p: json.dumps(example_body(p, "t2v")).encode("utf-16"), "invalid_json"),
    "bom": (lambda p: b"\xef\xbb\xbf" + json.dumps(example_body(p, "t2v")).encode(), "invalid_json"),
    "empty": (lambda p: b"", "invalid_json"),
    "whitespace": (lambda p: b" \r\n\t ", "invalid_json"),
    "array": (lambda p: b"[]", "invalid_request"),
    "array-of-body": (lambda p: f"[{json.dumps(example_body(p, 't2v'))}]".encode(), "invalid_request"),
    "string": (lambda p: b'"a prompt"', "invalid_request"),
    "number": (lambda p: b"42", "invalid_request"),
    "null": (lambda p: b"null", "invalid_request"),
    "true": (lambda p: b"true", "invalid_request"),
    "deep-list": (lambda p: b"[" * 100_000, "invalid_json"),
    "deep-object": (lambda p: b'{"a":' * 100_000, "invalid_json"),
    "deep-closed-list": (lambda p: b"[" * 100_000 + b"]" * 100_000, "invalid_json"),
    # parses, but 600 levels overflowed the journal's copy (RecursionError -> 500)
    "deep-value": (lambda p: with_literal(p, "seed", "[" * 600 + "]" * 600), "invalid_request"),
    "float-1e400": (lambda p: with_literal(p, "duration", "1e400"), "invalid_request"),
    "int-400-digits": (lambda p: with_literal(p, "duration", "9" * 400), None),
    # more digits than int() converts: a ValueError that was not a JSONDecodeError -> 500
    "int-5000-digits": (lambda p: with_literal(p, "seed", "9" * 5000), "invalid_json"),
    "minus-zero": (lambda p: with_literal(p, "seed", "-0"), None),
    "minus-zero-float": (lambda p: with_literal(p, "seed", "-0.0"), None),
    "fraction": (lambda p: with_literal(p, "duration", "1.5"), "invalid_request"),
    "exponent": (lambda p: with_literal(p, "seed", "1E1"), None),
    "nan": (lambda p: with_literal(p, "seed", "NaN"), "invalid_request"),
    "infinity": (lambda p: with_literal(p, "duration", "Infinity"), "invalid_request"),
    "minus-infinity": (lambda p: with_literal(p, "seed", "-Infinity"), "invalid_request"),
    "duplicate-keys": (lambda p: b'{"model": 1, "model": [], "model": "x"}', "invalid_request"),
    "duplicate-valid-last": (
        lambda p: json.dumps(example_body(p, "t2v")).replace("{", '{"seed": "x", ', 1).encode(),
        None,
    ),
    # a lone UTF-16 surrogate escape could not be encoded: validation and answers raised
    "lone-surrogate": (lambda p: json.dumps(with_prompt(p, "a fox \ud800 in snow")).encode(), None),
    "lone-surrogate-key": (lambda p: b'{"\\udfff": 1}', "invalid_request"),
    "nul-character": (lambda p: json.dumps(with_prompt(p, "a\x00b")).encode(), None),
    "control-bytes": (lambda p: b'{"prompt": "a\x01\x1fb"}', "invalid_json"),
}


@pytest.mark.parametrize("case", list(BODIES))
@pytest.mark.parametrize(("provider", "name"), ROUTES, ids=ROUTE_IDS)
def test_garbage_bodies_never_break_a_route(mock: Mock, journal_ok: None, provider: str, name: str, case: str) -> None:
    build, kind = BODIES[case]
    method, url = route(mock, provider, name)
    response = mock.request(method, url, content=build(provider), headers=route_headers(provider, name))
    assert_answer(provider, name, response)
    if name == "submit" and kind is not None:
        assert_error(provider, response, kind)
    if name == "submit" and case == "lone-surrogate" and response.status_code == 200:
        task_id = mock.task_id(provider, response)
        mock.advance(60)  # succeeded: DashScope echoes the prompt as orig_prompt
        assert_answer(provider, "poll", mock.poll(provider, task_id))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_documented_kind_survives_odd_numbers(mock: Mock, journal_ok: None, provider: str) -> None:
    literals = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "9" * 400, "-0", "1.5", "1e308", "0", "-1"]
    for kind in catalog().provider(provider).models:
        path = mock.submit_path(provider, kind)
        for name in ("duration", "seed"):
            for literal in literals:
                raw = with_literal(provider, name, literal, kind)
                response = mock.post(path, content=raw, headers={**submit_headers(provider), **JSON})
                assert_answer(provider, "submit", response)
                if response.status_code == 200:
                    task_id = mock.task_id(provider, response)
                    assert_answer(provider, "poll", mock.poll(provider, task_id))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_five_megabyte_prompt_is_answered_briefly(mock: Mock, journal_ok: None, provider: str) -> None:
    response = mock.submit(provider, "t2v", with_prompt(provider, "x" * 5_000_000))
    assert_answer(provider, "submit", response)
    if response.status_code == 200:  # no documented limit, or truncated silently (DashScope)
        task_id = mock.task_id(provider, response)
        mock.advance(60)
        assert_answer(provider, "poll", mock.poll(provider, task_id))
    else:
        assert response.status_code == status_for(provider, "invalid_request")
        assert len(response.content) < 10_000
    # a huge value where a number belongs is quoted in part, not echoed whole
    wrong = mock.post(
        mock.submit_path(provider, "t2v"),
        content=with_literal(provider, "seed", json.dumps("y" * 5_000_000)),
        headers={**submit_headers(provider), **JSON},
    )
    assert_error(provider, wrong, "invalid_request")
    assert len(wrong.content) < 10_000


@pytest.mark.parametrize("provider", PROVIDERS)
def test_thousands_of_issues_are_summarised(mock: Mock, provider: str) -> None:
    body = {**example_body(provider, "t2v"), **{f"k{i}": i for i in range(5000)}}
    response = mock.submit(provider, "t2v", body)
    assert_error(provider, response, "invalid_request")
    assert len(response.content) < 10_000
    assert "more issues" in response.text


# -- size cap and content type ----------------------------------------------------------------

POST_ROUTES = [(p, n) for p, n in ROUTES if catalog().provider(p).endpoints[n].method == "POST"]
POST_IDS = [f"{p}-{n}" for p, n in POST_ROUTES]
CAP = 4096


async def chunks(total: int, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, total, size):
        yield b" " * min(size, total - start)


@pytest.mark.parametrize(("provider", "name"), POST_ROUTES, ids=POST_IDS)
def test_a_body_over_the_cap_is_refused_however_it_is_sent(make_mock: Any, provider: str, name: str) -> None:
    m = make_mock(max_body_bytes=CAP)
    method, url = route(m, provider, name)
    headers = route_headers(provider, name)
    honest = m.request(method, url, content=b"{" + b" " * CAP + b"}", headers=headers)
    assert_error(provider, honest, "payload_too_large")
    assert str(CAP) in honest.text
    streamed = m.request(method, url, content=chunks(CAP * 3), headers=headers)  # chunked, no length
    assert "content-length" not in streamed.request.headers
    assert_error(provider, streamed, "payload_too_large")
    understated = m.request(method, url, content=b" " * (CAP * 2), headers={**headers, "Content-Length": "10"})
    assert_error(provider, understated, "payload_too_large")
    huge_length = m.request(method, url, content=b"{}", headers={**headers, "Content-Length": "9" * 5000})
    assert_error(provider, huge_length, "payload_too_large")
    at_cap = m.request(method, url, content=b" " * CAP, headers=headers)  # not too large: just not JSON
    assert_answer(provider, name, at_cap)
    if name == "submit":
        assert_error(provider, at_cap, "invalid_json")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_only_json_is_accepted_on_submit(mock: Mock, provider: str) -> None:
    url = mock.submit_path(provider, "t2v")
    raw = json.dumps(example_body(provider, "t2v")).encode()
    base = submit_headers(provider)
    for content_type in ["text/plain", "application/jsonx", "application/x-www-form-urlencoded", ";;", "json"]:
        response = mock.post(url, content=raw, headers={**base, "Content-Type": content_type})
        assert_error(provider, response, "unsupported_media_type")
    missing = mock.post(url, content=raw, headers=base)
    assert "content-type" not in missing.request.headers
    assert_error(provider, missing, "unsupported_media_type")
    multipart = mock.post(url, files={"file": ("body.json", raw, "application/json")}, headers=base)
    assert multipart.request.headers["content-type"].startswith("multipart/form-data")
    assert_error(provider, multipart, "unsupported_media_type")
    for content_type in ["application/json; charset=utf-8", "APPLICATION/JSON", " application/json ;x=y"]:
        response = mock.post(url, content=raw, headers={**base, "Content-Type": content_type})
        assert response.status_code == 200, response.text
        assert_answer(provider, "submit", response)


# -- methods, HEAD, paths ---------------------------------------------------------------------


@pytest.mark.parametrize(("provider", "name"), ROUTES, ids=ROUTE_IDS)
def test_wrong_methods_get_a_405_with_allow(mock: Mock, provider: str, name: str) -> None:
    own, url = route(mock, provider, name)
    declared = {e.method for e in catalog().provider(provider).endpoints.values()}
    for method in ODD_METHODS:
        if method == own:
            continue
        response = mock.request(method, url, headers=route_headers(provider, name))
        if method in declared and response.status_code != 405:
            assert_answer(provider, None, response)  # another endpoint shares the path (AI/ML API)
            continue
        assert_error(provider, response, "method_not_allowed")
        allowed = {m.strip() for m in response.headers["allow"].split(",")}
        assert own in allowed
        assert method not in allowed
        assert allowed <= declared
        assert method in response.text


@pytest.mark.parametrize(("provider", "name"), ROUTES, ids=ROUTE_IDS)
def test_head_is_answered_without_a_body(mock: Mock, provider: str, name: str) -> None:
    """HEAD answers as GET does, without the body (405 on a POST-only path)."""
    method, url = route(mock, provider, name)
    head = mock.request("HEAD", url, headers=route_headers(provider, name))
    assert_answer(provider, name, head)
    get = mock.request("GET", url, headers=route_headers(provider, name))
    assert head.status_code == get.status_code
    assert head.headers.get("allow") == get.headers.get("allow")
    if method == "POST" and head.status_code == 405:
        assert method in head.headers["allow"]


UNKNOWN_PATHS = [
    "/%2e%2e/%2e%2e/etc/passwd",
    "/..%2f..%2fetc%2fpasswd",
    "/nope",
    "//",
    "/%00",
    "/%ff%fe",
    "/v9/" + "a" * 20_000,
    "/__admin/..%2f__admin/journal",
    "/__files/../x.mp4",
    "/v3/video/generations?generation_id=x",
]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("path", UNKNOWN_PATHS, ids=lambda p: p[:30])
def test_unknown_paths_are_404_in_the_providers_shape(mock: Mock, provider: str, path: str) -> None:
    for method in ("GET", "POST"):
        response = mock.request(method, mock.prefix(provider) + path, headers=AUTH)
        assert_error(provider, response, "not_found")


def raw_request(m: Mock, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """Call the ASGI app with ``path`` exactly as a socket server passes it on: httpx resolves
    "/../" before sending, uvicorn does not."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"mock"), (b"authorization", f"Bearer {KEY}".encode())],
        "server": ("mock", 80),
        "client": ("127.0.0.1", 1234),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(m.app(scope, receive, send))
    start = next(x for x in sent if x["type"] == "http.response.start")
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(x.get("body", b"") for x in sent if x["type"] == "http.response.body")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_literal_dot_segments_are_not_resolved(mock: Mock, provider: str) -> None:
    prefix = mock.prefix(provider)
    task_id = mock.task_id(provider, mock.submit(provider, "t2v", example_body(provider, "t2v")))
    for method, path in [
        ("POST", f"{prefix}/../__admin/reset"),
        ("GET", f"{prefix}/api/v1/tasks/../../../__admin/journal"),
        ("GET", f"{prefix}/./api/v1/tasks/{task_id}"),
        ("GET", f"{prefix}/../../../../etc/passwd"),
    ]:
        status, headers, body = raw_request(mock, method, path)
        assert 400 <= status < 500, (path, status, body[:300])  # 404, or 405 under Modellix's {model}
        assert headers["content-type"].startswith("application/json")
        assert_schema(provider, "error", json.loads(body))
    status, headers, body = raw_request(mock, "GET", "/__files/../__admin/journal")
    assert (status, headers["content-type"]) == (404, "application/xml"), body
    assert b"<Code>NoSuchKey</Code>" in body
    assert mock.state.store.get(provider, task_id) is not None  # the reset never ran


ODD_PATHS = [
    "/api%2fv1%2ftasks%2fabc",  # an encoded slash is a slash once decoded (ASGI)
    "/api/v1/tasks/..%2f..%2fetc",
    "/api/v1/tasks/%2e%2e",
    "/api/v1/tasks/",
    "/api/v1/services/aigc/video-generation/video-synthesis/%2e%2e/%2e%2e/tasks",
    "/wan/api/v1/tasks/x",
    "/v1/tasks/" + "b" * 10_000,
    "/v2/video/generations/extra",
    "/api/v1/alibaba/%2e%2e/%2e%2e/async",
]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("path", ODD_PATHS, ids=lambda p: p[:30])
def test_odd_paths_near_real_ones_answer_in_shape(mock: Mock, provider: str, path: str) -> None:
    for method in ("GET", "POST", "DELETE"):
        headers = {**submit_headers(provider), **JSON}
        response = mock.request(method, mock.prefix(provider) + path, headers=headers, content=b"{}")
        assert_answer(provider, None, response)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_single_provider_at_the_root_answers_garbage_in_its_shape(make_mock: Any, provider: str) -> None:
    m = make_mock(providers=(provider,))
    headers = {**submit_headers(provider), **JSON}
    assert_error(provider, m.post(m.submit_path(provider, "t2v"), content=b"{", headers=headers), "invalid_json")
    for path in ("/", "/%2e%2e/etc/passwd", "/dashscope/x", "/modellix/api/v1/tasks/x"):
        assert_error(provider, m.get(path, headers=AUTH), "not_found")
    assert_error(provider, m.request("TRACE", m.submit_path(provider, "t2v"), headers=AUTH), "method_not_allowed")


# -- headers and keys -------------------------------------------------------------------------

REFUSED_AUTH: list[str | bytes | None] = [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Bearer  ",
    "Basic xyz",
    "Basic dGVzdC1rZXk6",
    "Token test-key",
    "Bearer invalid",
    "Bearer\ttest-key",
    "test-key",
    "Bearer" + " " * 1000,
]
ACCEPTED_AUTH: list[str | bytes] = [
    f"bearer {KEY}",
    f"BEARER {KEY}",
    f"Bearer {KEY} ",
    f"Bearer {'k' * 10_240}",
    f"Bearer {KEY} extra words",
    "Bearer ключ-🔑".encode(),
    b"Bearer \xff\xfe",
    "Bearer a\r\nX-Injected: 1",  # httpx lets CR/LF through to the app; a socket server would not
]


@pytest.mark.parametrize(("provider", "name"), ROUTES, ids=ROUTE_IDS)
def test_odd_authorization_headers(mock: Mock, provider: str, name: str) -> None:
    method, url = route(mock, provider, name)
    base = {k: v for k, v in route_headers(provider, name).items() if k != "Authorization"}
    key_check = catalog().provider(provider).endpoints[name].auth == "any-key"
    for value in REFUSED_AUTH:
        headers: dict[str, Any] = dict(base) if value is None else {**base, "Authorization": value}
        response = mock.request(method, url, headers=headers, content=b"{}")
        if key_check and response.status_code == 200:  # a key check answers about any token sent
            assert response.json()["data"]["is_valid"] is False, (value, response.text)
            continue
        assert_error(provider, response, "unauthorized")
    for accepted in ACCEPTED_AUTH:
        response = mock.request(method, url, headers={**base, "Authorization": accepted}, content=b"{}")
        assert response.status_code != status_for(provider, "unauthorized"), (accepted, response.text)
        assert_answer(provider, name, response)
        assert "x-injected" not in response.headers


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_key_list_restricts_the_accepted_tokens(make_mock: Any, provider: str) -> None:
    m = make_mock(keys=frozenset({"k1"}))
    for name in catalog().provider(provider).endpoints:
        method, url = route(m, provider, name)
        headers = route_headers(provider, name)
        for token in (KEY, "k2", "k1 ", "K1", "k1k1", "invalid"):
            response = m.request(method, url, headers={**headers, "Authorization": f"Bearer {token}"}, content=b"{}")
            if token == "k1 ":  # surrounding blanks are not part of the token
                assert response.status_code != 401
                continue
            if catalog().provider(provider).endpoints[name].auth == "any-key":  # a key check: 200, not valid
                assert response.json()["data"]["is_valid"] is False, (token, response.text)
                continue
            assert_error(provider, response, "unauthorized")
        response = m.request(method, url, headers={**headers, "Authorization": "Bearer k1"}, content=b"{}")
        assert response.status_code != 401
        assert_answer(provider, name, response)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_odd_headers_do_not_break_a_submit(mock: Mock, journal_ok: None, provider: str) -> None:
    url = mock.submit_path(provider, "t2v")
    raw = json.dumps(example_body(provider, "t2v")).encode()
    odd: list[dict[str, Any]] = [
        {"X-Wanmock-Test": "t\r\nX-Injected: 1"},
        {"X-Wanmock-Test": "ключ".encode()},
        {"X-Wanmock-Test": "x" * 10_000},
        {"X-DashScope-Async": "ENABLE"},
        {"X-DashScope-Async": "enable, enable"},
        {"X-DashScope-Async": "\xff".encode("latin-1")},
        {"Accept": "application/xml"},
        {"Accept-Encoding": "gzip;q=0, identity"},
        {"Content-Encoding": "gzip"},
        {"Transfer-Encoding": "chunked"},
        {"Cookie": "a=b; " * 1000},
    ]
    for extra in odd:
        response = mock.post(url, content=raw, headers={**submit_headers(provider), **JSON, **extra})
        assert_answer(provider, "submit", response)
        assert "x-injected" not in response.headers


# -- task ids ---------------------------------------------------------------------------------

ODD_IDS = [
    "x" * 5000,
    "%00",
    "%2e%2e",  # reaches the app as ".." (httpx would resolve a literal "..")
    "%2e",
    "a%20b",
    "%3Cscript%3Ealert(1)%3C%5Cscript%3E",
    "%27%3B%20DROP%20TABLE%20tasks%3B--",
    "%25",
    "%ff",
    "%E2%80%AE",
    "%F0%9F%94%91",
    "task-" + "0" * 20,
    "00000000-0000-4000-8000-000000000000",
]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_unknown_task_ids_with_odd_characters(mock: Mock, journal_ok: None, provider: str) -> None:
    p = catalog().provider(provider)
    for task_id in ODD_IDS:
        for name in ("poll", "cancel"):
            if name not in p.endpoints:
                continue
            method, url = route(mock, provider, name, task_id)
            response = mock.request(method, url, headers=AUTH)
            assert_answer(provider, name, response)
            if response.status_code == 200 and name == "poll":  # DashScope, APIYI: UNKNOWN
                assert mock.status_word(provider, response) == p.states["unknown"].word
            else:  # Modellix, AI/ML API; a cancel
                assert_error(provider, response, "not_found")


def test_aimlapi_poll_needs_a_generation_id(mock: Mock) -> None:
    url = mock.prefix("aimlapi") + catalog().provider("aimlapi").endpoints["poll"].paths[0]
    param = next(iter(catalog().provider("aimlapi").endpoints["poll"].query))
    for query in ("", "?", f"?{param}=", f"?{param.upper()}=x", "?id=x", f"?{param}", "?%ff=%fe"):
        response = mock.get(url + query, headers=AUTH)
        assert_error("aimlapi", response, "invalid_request")
        assert param in response.text
    for query in (f"?{param}=a&{param}=b", f"?{param}=%00", f"?{param}=" + "z" * 5000, f"?{param}=%2e%2e%2f"):
        response = mock.get(url + query, headers=AUTH)
        assert_error("aimlapi", response, "not_found")


def test_dashscope_list_with_garbage_queries(mock: Mock) -> None:
    _, url = route(mock, "dashscope", "list")
    for query in [
        "page_no=abc",
        "page_no=0",
        "page_no=-1",
        "page_size=0",
        "page_size=101",
        "page_size=1e3",
        "page_no=" + "9" * 5000,
        "page_no=%C2%B2",  # a superscript two: str.isdigit() says yes, int() says no
        "page_no=%D9%A1",  # an Arabic-Indic one: int() reads it as 1
        "page_no=99999999999999999999999",
        "status=%00&model_name=" + "m" * 5000,
        "page_no=1&page_no=2&page_size=",
        "start_time=yesterday&end_time=%ff",
    ]:
        response = mock.get(f"{url}?{query}", headers=AUTH)
        body = assert_answer("dashscope", "list", response)
        if response.status_code == 200:
            assert isinstance(body["data"], list)
        else:
            assert_error("dashscope", response, "invalid_request")


# -- result downloads -------------------------------------------------------------------------


def finished_task(m: Mock, provider: str) -> tuple[str, str]:
    """(task id, result URL path with its signed query) of a task that has succeeded."""
    task_id = m.task_id(provider, m.submit(provider, "t2v", example_body(provider, "t2v")))
    m.advance(60)
    return task_id, m.result_url(provider, m.poll(provider, task_id)).removeprefix("http://mock")


def assert_storage_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, (response.request.url, response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/xml"), response.headers
    if response.request.method != "HEAD":
        assert f"<Error><Code>{code}</Code>" in response.text, response.text


@pytest.mark.parametrize("provider", PROVIDERS)
def test_result_downloads_refuse_in_xml_never_5xx(mock: Mock, provider: str) -> None:
    task_id, url = finished_task(mock, provider)
    path, _, query = url.partition("?")
    params = dict(p.split("=", 1) for p in query.split("&"))
    expires, signature = params["Expires"], params["Signature"]
    other = next(p for p in PROVIDERS if p != provider)
    queued = mock.task_id(provider, mock.submit(provider, "t2v", example_body(provider, "t2v")))
    queued_task = mock.state.store.get(provider, queued)
    assert queued_task is not None
    queued_url = mock.state.links.url("", queued_task, queued_task.created_at + 3600)  # validly signed
    denied = "SignatureDoesNotMatch"
    cases = [
        (path, 403, denied),  # no query at all
        (f"{path}?Expires={expires}", 403, denied),
        (f"{path}?Signature={signature}", 403, denied),
        (f"{path}?Expires={expires}&Signature=0{signature[1:]}", 403, denied),
        (f"{path}?Expires={int(expires) + 1}&Signature={signature}", 403, denied),
        (f"{path}?Expires=abc&Signature={signature}", 403, denied),
        (f"{path}?Expires=-1&Signature={signature}", 403, denied),
        (f"{path}?Expires=%C2%B2&Signature={signature}", 403, denied),  # isdigit(), not int()
        (f"{path}?Expires={'9' * 5000}&Signature={signature}", 403, denied),  # past int()'s limit
        (f"{path}?Expires={expires}&Signature=%C3%A9{signature[1:]}", 403, denied),  # non-ASCII
        (f"{path}?Expires={expires}&Signature={'f' * 5000}", 403, denied),
        (f"{path}?Expires={expires}&Signature=", 403, denied),
        (url.replace(f"/{provider}/", f"/{other}/"), 403, denied),  # signed for another provider
        (url.replace(f"/{provider}/", "/nope/"), 404, "NoSuchKey"),
        (url.replace(f"/{task_id}.mp4", "/nosuch.mp4"), 403, denied),
        (url.replace(".mp4", ".txt"), 404, "NoSuchKey"),
        (url.replace(".mp4", ""), 404, "NoSuchKey"),
        (url.replace(".mp4", ".mp4.txt"), 404, "NoSuchKey"),
        (url.replace(".mp4", ".MP4"), 404, "NoSuchKey"),
        (url.replace(".mp4", ".mp4%00"), 404, "NoSuchKey"),
        (f"/__files/{provider}/..%2f..%2fetc%2fpasswd.mp4?{query}", 404, "NoSuchKey"),
        (f"/__files/{provider}/%2e%2e%2f{task_id}.mp4?{query}", 404, "NoSuchKey"),
        (f"/__files/%2e%2e/{provider}/{task_id}.mp4?{query}", 404, "NoSuchKey"),
        (f"/__files/{provider}/%2e%2e.mp4?{query}", 403, denied),
        (f"/__files/{provider}/x/{task_id}.mp4?{query}", 404, "NoSuchKey"),
        (f"/__files/{provider}/", 404, "NoSuchKey"),
        ("/__files/", 404, "NoSuchKey"),
        ("/__files", 404, "NoSuchKey"),
        (f"/__files/{'a' * 10_000}.mp4", 404, "NoSuchKey"),
        (queued_url, 404, "NoSuchKey"),  # signed, but the task has not succeeded
    ]
    for target, status, code in cases:
        assert_storage_error(mock.get(target), status, code)
        assert_storage_error(mock.request("HEAD", target), status, code)
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"):
        refused = mock.request(method, url, content=b"{}")
        assert_storage_error(refused, 405, "MethodNotAllowed")
        assert set(refused.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}
    assert mock.state.links.check(provider, task_id, expires, signature, mock.state.now()).ok  # the URL is good


# -- the control plane ------------------------------------------------------------------------

ADMIN_GARBAGE: list[tuple[str, bytes]] = [
    ("/__admin/faults", b"not json"),
    ("/__admin/faults", b"{"),
    ("/__admin/faults", b"\xff\xfe"),
    ("/__admin/faults", b"[]"),
    ("/__admin/faults", b'[{"action": "error", "status": 500}]'),
    ("/__admin/faults", b'"error"'),
    ("/__admin/faults", b"null"),
    ("/__admin/faults", b"1e400"),
    ("/__admin/faults", b"[" * 100_000),
    ("/__admin/faults", b'{"action": "error", "status": 1e400}'),
    ("/__admin/faults", b'{"action": "error", "status": ' + b"9" * 400 + b"}"),
    ("/__admin/faults", b'{"action": "error", "status": ' + b"9" * 5000 + b"}"),
    ("/__admin/faults", b'{"action": "error", "status": NaN}'),
    ("/__admin/faults", b'{"action": "error", "status": 500.5}'),
    ("/__admin/faults", b'{"action": "error", "status": "500"}'),
    ("/__admin/faults", b'{"action": "latency", "latency_seconds": 1e400}'),
    ("/__admin/faults", b'{"action": "latency", "latency_seconds": NaN}'),
    ("/__admin/faults", b'{"action": "latency", "latency_seconds": -1}'),
    ("/__admin/faults", b'{"action": "error", "status": 429, "count": 0}'),
    ("/__admin/faults", b'{"action": "error", "status": 429, "count": -1e400}'),
    ("/__admin/faults", b'{"action": ["error"]}'),
    ("/__admin/faults", b'{"action": {"a": 1}, "action": null}'),
    ("/__admin/faults", b'{"action": "error", "status": 500, "provider": "\\ud800"}'),
    ("/__admin/faults", b'{"action": "explode"}'),
    ("/__admin/faults", b"{}"),
    ("/__admin/clock/advance", b'"ten"'),
    ("/__admin/clock/advance", b'{"seconds": "10"}'),
    ("/__admin/clock/advance", b'{"seconds": "ten"}'),
    ("/__admin/clock/advance", b'{"seconds": NaN}'),
    ("/__admin/clock/advance", b'{"seconds": Infinity}'),
    ("/__admin/clock/advance", b'{"seconds": 1e400}'),
    ("/__admin/clock/advance", b'{"seconds": -1}'),
    ("/__admin/clock/advance", b'{"seconds": ' + b"9" * 400 + b"}"),
    ("/__admin/clock/advance", b'{"seconds": ' + b"9" * 5000 + b"}"),
    ("/__admin/clock/advance", b'{"seconds": true}'),
    ("/__admin/clock/advance", b'{"seconds": null}'),
    ("/__admin/clock/advance", b'{"seconds": [1]}'),
    ("/__admin/clock/advance", b"[10]"),
    ("/__admin/clock/advance", b"10"),
    ("/__admin/clock/advance", b"not json"),
    ("/__admin/clock/advance", b"\xff"),
    ("/__admin/clock/advance", b"[" * 100_000),
]


@pytest.mark.parametrize(("path", "raw"), ADMIN_GARBAGE, ids=[f"{p[8:]}-{r[:24]!r}" for p, r in ADMIN_GARBAGE])
def test_the_control_plane_refuses_garbage_in_json(mock: Mock, path: str, raw: bytes) -> None:
    now = mock.get("/__admin/clock").json()["now"]
    response = mock.post(path, content=raw, headers=JSON)
    assert response.status_code == 400, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    assert isinstance(response.json()["error"], str)
    assert mock.get("/__admin/faults").json() == {"rules": []}
    assert mock.get("/__admin/clock").json()["now"] == now


def test_forced_transitions_refuse_garbage_in_json(mock: Mock) -> None:
    task_id = mock.task_id("dashscope", mock.submit("dashscope", "t2v", example_body("dashscope", "t2v")))
    base = f"/__admin/tasks/dashscope/{task_id}"
    for action, raw in [
        ("fail", b"[1]"),
        ("fail", b"not json"),
        ("fail", b'{"code": 1}'),
        ("fail", b'{"message": ["x"]}'),
        ("fail", b"[" * 100_000),
        ("succeed", b'"x"'),
    ]:
        response = mock.post(f"{base}/{action}", content=raw, headers=JSON)
        assert response.status_code == 400, (action, raw[:20], response.text[:300])
        assert isinstance(response.json()["error"], str)
    for path in (f"{base}/explode", "/__admin/tasks/dashscope/%00/fail", f"/__admin/tasks/nope/{task_id}/fail"):
        response = mock.post(path, content=b"{}", headers=JSON)
        assert response.status_code == 404, response.text
        assert isinstance(response.json()["error"], str)
    assert_answer("dashscope", "poll", mock.poll("dashscope", task_id))  # still queued, still fine


# -- the property: random JSON never breaks a submit ------------------------------------------


def _resolve(provider: str, file: str, node: Any) -> tuple[str, dict[str, Any]]:
    """Follow ``$ref`` (``defs.json#/$defs/x`` or ``#/$defs/x``) to the node it names."""
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        target, _, pointer = node["$ref"].partition("#")
        file = target or file
        doc = catalog().document(provider, file)
        found = resolve_pointer(doc, pointer) if pointer else doc
        node = {**found, **{k: v for k, v in node.items() if k != "$ref"}}
    return file, node if isinstance(node, dict) else {}


def _parts(provider: str, file: str, node: Any) -> list[tuple[str, dict[str, Any]]]:
    """The node and every sub-schema that may add properties or values to it."""
    file, node = _resolve(provider, file, node)
    out = [(file, node)]
    subs = [*node.get("allOf", []), *node.get("anyOf", []), *node.get("oneOf", [])]
    subs += [node[k] for k in ("then", "else") if k in node]
    for sub in subs:
        out += _parts(provider, file, sub)
    return out


# text with a lone surrogate, sent as a \\u escape (st.text never draws one)
SURROGATED = st.tuples(st.text(max_size=3), st.characters(categories=["Cs"]), st.text(max_size=3)).map("".join)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and Infinity are sent as the literals Python writes
    | st.text(max_size=12)
    | SURROGATED
)


def json_values(keys: list[str]) -> st.SearchStrategy[Any]:
    key = st.sampled_from(keys) | st.text(max_size=8) if keys else st.text(max_size=8)
    return st.recursive(
        LEAVES,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(key, inner, max_size=4),
        max_leaves=10,
    )


Junk = st.SearchStrategy[Any] | None  # random JSON mixed in at every level, or None


@dataclass
class Facts:
    """What the schema says at one location, merged over its sub-schemas."""

    values: list[Any] = field(default_factory=list)  # enum, const, default, examples
    properties: dict[str, tuple[str, Any]] = field(default_factory=dict)  # name -> (file, node)
    required: set[str] = field(default_factory=set)
    items: tuple[str, Any] | None = None
    types: set[str] = field(default_factory=set)
    bounds: dict[str, Any] = field(default_factory=dict)
    patterns: list[str] = field(default_factory=list)


def facts(provider: str, file: str, node: Any) -> Facts:
    out = Facts()
    for where, part in _parts(provider, file, node):
        out.values += part.get("enum", []) + part.get("examples", [])
        out.values += [part[k] for k in ("const", "default") if k in part]
        out.properties.update({k: (where, v) for k, v in part.get("properties", {}).items()})
        out.required |= set(part.get("required", []))
        if isinstance(part.get("items"), dict):
            out.items = (where, part["items"])
        kind = part.get("type")
        out.types |= set(kind) if isinstance(kind, list) else {kind} if isinstance(kind, str) else set()
        out.bounds |= {k: part[k] for k in ("minimum", "maximum") if k in part}
        if isinstance(part.get("pattern"), str):
            out.patterns.append(part["pattern"])
    return out


def guided(provider: str, file: str, node: Any, junk: Junk, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values shaped by the schema at ``node``: documented enum/const/default/example values,
    documented properties (required ones always present), items, typed numbers around the
    bounds, strings matching the pattern; with ``junk``, one time in ten a random value instead."""
    f = facts(provider, file, node)
    options: list[st.SearchStrategy[Any]] = []
    if f.values:
        options.append(st.sampled_from(f.values))
    if f.properties and depth < 6:
        children = {k: guided(provider, w, v, junk, depth + 1) for k, (w, v) in f.properties.items()}
        fixed = {k: children[k] for k in sorted(f.required & set(children))}
        optional = {k: c for k, c in children.items() if k not in fixed}
        options.append(st.fixed_dictionaries(fixed, optional=optional))
    if f.items is not None and depth < 6:
        options.append(st.lists(guided(provider, *f.items, junk, depth + 1), min_size=1, max_size=4))
    if "integer" in f.types:
        low, high = f.bounds.get("minimum"), f.bounds.get("maximum")
        options.append(st.integers(None if low is None else low - 2, None if high is None else high + 2))
    if "string" in f.types:
        options += [st.from_regex(p) for p in f.patterns if re.compile(p)] or [st.text(max_size=20), SURROGATED]
    if "boolean" in f.types:
        options.append(st.booleans())
    if junk is None:
        return st.one_of(options) if options else st.none()
    return st.one_of([st.one_of(options)] * 9 + [junk]) if options else junk


def mutated(provider: str, file: str, node: Any, value: Any, junk: Junk, depth: int = 0) -> st.SearchStrategy[Any]:
    """A documented example with a few of its parts replaced (by documented or random values)
    and a few documented fields added: mostly valid, so the success path is exercised."""
    f = facts(provider, file, node)
    if not isinstance(value, dict) or depth >= 6:
        return st.just(value)
    kept = {}
    for key, old in value.items():
        where, sub = f.properties.get(key, (file, {}))
        fallback = junk if junk is not None else st.just(old)
        other = guided(provider, where, sub, junk, depth + 1) if key in f.properties else fallback
        kept[key] = st.one_of([mutated(provider, where, sub, old, junk, depth + 1)] * 8 + [other])
    added = {k: guided(provider, w, v, junk, depth + 1) for k, (w, v) in f.properties.items() if k not in value}
    return st.fixed_dictionaries(kept, optional=added)


def schema_keys(provider: str) -> list[str]:
    keys: set[str] = set()
    for model in catalog().provider(provider).models.values():
        stack: list[Any] = [catalog().provider(provider).documents[model.schema_file]]
        stack += catalog().provider(provider).documents.get("defs.json", {}).get("$defs", {}).values()
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                keys |= set(node.get("properties", {}))
                stack += node.values()
            elif isinstance(node, list):
                stack += node
    return sorted(keys)


def provider_case(provider: str) -> st.SearchStrategy[tuple[str, str, Any]]:
    """(provider, model kind, body): random JSON around its keys, or schema-guided."""
    junk = json_values(schema_keys(provider))
    p = catalog().provider(provider)
    per_kind = []
    for kind, model in p.models.items():
        schema = p.documents[model.schema_file]
        documented = [c["instance"] for c in corpus(provider) if p.models[c["model"]].kind == kind]
        body = st.one_of(
            *[mutated(provider, model.schema_file, schema, d, None) for d in documented],  # mostly valid
            *[mutated(provider, model.schema_file, schema, d, junk) for d in documented],
            guided(provider, model.schema_file, schema, None),
            guided(provider, model.schema_file, schema, junk),
            junk,
        )
        per_kind.append(st.tuples(st.just(provider), st.just(kind), body))
    return st.one_of(per_kind)


class Raw(str):
    """JSON text sent as it is: a 600-level value or a 5000-digit number (hypothesis would
    recurse to death pretty-printing the one, json.dumps refuses the other)."""


# Inputs that broke the mock in the hand-written tests above, kept as explicit examples here too,
# for every provider (t2v).
REGRESSIONS: list[Any] = [
    # 600 levels parsed, then overflowed the journal's copy of the body (RecursionError -> 500)
    lambda p: Raw(with_literal(p, "seed", "[" * 600 + "]" * 600).decode()),
    # more digits than int() converts: a ValueError that parse_json did not expect (-> 500)
    lambda p: Raw(with_literal(p, "seed", "9" * 5000).decode()),
    # the journal kept NaN, and the control plane's strict JSON could not show it
    lambda p: {**example_body(p, "t2v"), "seed": float("nan")},
    # a lone surrogate broke the fast validator, DashScope's poll (orig_prompt) and the journal
    lambda p: with_prompt(p, "fox \ud800"),
    lambda p: {"\udfff": ["\udc00"]},
]


def with_regressions(test: Any) -> Any:
    for build in REGRESSIONS:
        for provider in PROVIDERS:
            test = example(case=(provider, "t2v", build(provider)))(test)
    return test


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mock]:
    """One mock for every hypothesis example (function-scoped fixtures are not reset between
    examples, so hypothesis refuses them)."""
    m = Mock(ServerConfig(timing="fast", seed=11), tmp_path_factory.mktemp("media"))
    yield m
    m.close()


@settings(
    max_examples=150 * len(PROVIDERS),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
@given(case=st.one_of([provider_case(p) for p in PROVIDERS]))
# found by this test: the journal kept the lone surrogate and /__admin/journal could not encode it
@example(case=("apiyi", "t2v", {"model": "wan2.7-t2v", "input": {"prompt": "\ud800"}}))
# found by this test: the journal kept Infinity and /__admin/journal (strict JSON) raised
@example(case=("modellix", "i2v", {"first_frame": "https://example.com/first.png", "driving_audio": float("inf")}))
@with_regressions
def test_random_json_never_breaks_a_submit(service: Mock, case: tuple[str, str, Any]) -> None:
    """Random JSON (around each provider's keys) and schema-guided bodies (documented values,
    documented examples with parts replaced) POSTed to each provider's submit path: 200 and a
    valid submit-response whose task polls in schema, or 4xx in the error envelope."""
    provider, kind, body = case
    test_id = f"robust-{service.state.store.next_seq()}"
    headers = {**submit_headers(provider), **JSON, "X-Wanmock-Test": test_id}
    # NaN/Infinity as literals, lone surrogates as \\u escapes
    raw = body.encode() if isinstance(body, Raw) else json.dumps(body).encode()
    response = service.post(service.submit_path(provider, kind), content=raw, headers=headers)
    assert_answer(provider, "submit", response)
    event(f"{provider} {kind} answered {response.status_code}")  # --hypothesis-show-statistics
    journal = service.get("/__admin/journal", headers={"X-Wanmock-Test": test_id})
    assert journal.status_code == 200, journal.text[:300]
    assert len(journal.json()["entries"]) == 1
    if response.status_code != 200:
        return
    task_id = service.task_id(provider, response)
    for _ in range(2):  # queued, then (fast timing) finished: every state renders in its schema
        assert_answer(provider, "poll", service.poll(provider, task_id))
        service.advance(10)
    assert service.get(f"/__admin/tasks/{provider}/{task_id}").status_code == 200


@pytest.mark.parametrize(
    "raw",
    [
        b'{"action":"error","status":429,"retry_after":NaN}',
        b'{"action":"error","status":429,"retry_after":1e400}',
        b'{"action":"latency","latency_seconds":NaN}',
    ],
)
def test_fault_rules_refuse_non_finite_numbers(mock: Mock, raw: bytes) -> None:
    response = mock.post("/__admin/faults", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "error" in response.json()
    assert mock.post(mock.submit_path("modellix", "t2v"), json={"prompt": "x"}, headers=AUTH).status_code == 200


def test_a_lone_surrogate_in_a_fault_message_is_answered_not_crashed(mock: Mock) -> None:
    raw = b'{"action":"error","provider":"dashscope","status":503,"message":"down \\ud800 now","count":1}'
    assert mock.post("/__admin/faults", content=raw, headers={"Content-Type": "application/json"}).status_code == 201
    answered = mock.submit("dashscope", "t2v", {"model": "wan2.7-t2v", "input": {"prompt": "x"}})
    assert answered.status_code == 503
    assert "down \ufffd now" in answered.json()["message"]


def test_the_loader_validates_strings_the_fast_engine_cannot_hold() -> None:
    from wanmock.schemas import catalog

    issues = catalog().validate("modellix", "submit", {"prompt": "\ud800", "duration": 99}, kind="t2v")
    assert [i.path for i in issues] == ["$.duration"]


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "OPTIONS"])
def test_unlisted_methods_on_the_control_plane_get_its_own_json(mock: Mock, method: str) -> None:
    response = mock.request(method, "/__admin/health")
    assert response.status_code == 405
    assert response.headers["allow"].split(", ")[0] == "GET"
    assert "error" in response.json()


def test_control_plane_bodies_are_capped(mock: Mock) -> None:
    huge = b'{"action": "latency", "message": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    json_type = {"Content-Type": "application/json"}
    response = mock.post("/__admin/faults", content=huge, headers=json_type)
    assert response.status_code == 413  # the declared length, refused before a byte is read
    assert "accepts at most" in response.json()["error"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the cap holds while reading
        yield huge

    response = mock.post("/__admin/faults", content=chunks(), headers=json_type)
    assert response.status_code == 400
    assert "exceeds" in response.json()["error"]
