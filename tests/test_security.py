"""Safe to expose (issue 11): the control plane's gate, secrets in every output, bounded journal,
scopes, result URLs and store errors — in-process, through httpx.ASGITransport."""

from __future__ import annotations

import base64
import json
import resource
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from conftest import AUTH, KEY, Mock, example_body, submit_headers
from wanmock.mockserver.limits import JOURNAL_ENTRY_BYTES, bounded
from wanmock.mockserver.scrub import (
    REDACTED,
    AccessLogFilter,
    Fingerprint,
    Scrubber,
    forms,
    mask_userinfo,
    scrub,
    with_password,
)
from wanmock.mockserver.store import MemoryStore, StoreError, store_from_url

TEST = "X-Wanmock-Test"
JSON = {"Content-Type": "application/json"}
ORIGINS = ("http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000")
LOCAL = {"Host": "127.0.0.1:8000"}
SECRET = "sk-live-Zq9+/x=Y7w&Secret_KEY-0123456789"


def every_form(secret: str) -> list[str]:
    raw = secret.encode()
    return [
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        base64.b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        base64.b64encode(b"user:" + raw).decode(),  # Basic auth: the key at another alignment
    ]


def submit(mock: Mock, provider: str = "dashscope", headers: dict[str, str] | None = None, key: str = KEY) -> str:
    auth = {"Authorization": f"Bearer {key}"}
    response = mock.submit(provider, "t2v", example_body(provider, "t2v"), headers={**auth, **(headers or {})})
    assert response.status_code == 200, response.text
    return mock.task_id(provider, response)


# -- 1. the control plane's gate ----------------------------------------------------------


def test_a_cross_origin_simple_post_is_refused(mock: Mock) -> None:
    """What a web page can send without a CORS preflight: text/plain, with its own Origin."""
    before = mock.get("/__admin/faults").json()["rules"]
    evil = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    response = mock.post("/__admin/faults", content=b'{"action": "error", "status": 500}', headers=evil)
    assert response.status_code == 403
    assert "Origin" in response.json()["error"]
    response = mock.post("/__admin/reset?all=1", headers={"Origin": "http://evil.example"})
    assert response.status_code == 403
    # the same page without an Origin (a privacy setting): text/plain is still refused
    response = mock.post("/__admin/faults", content=b'{"action": "error"}', headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert mock.post("/__admin/reset?all=1", headers=form).status_code == 415
    assert mock.get("/__admin/faults").json()["rules"] == before
    # the same origin (the dashboard) is accepted
    same = mock.post("/__admin/faults", json={"action": "error", "status": 500}, headers={"Origin": "http://mock"})
    assert same.status_code == 201


def test_a_foreign_host_is_refused_on_the_control_plane(make_mock: Any) -> None:
    mock = make_mock(origins=ORIGINS)
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000"):
        assert mock.get("/__admin/health", headers={"Host": host}).status_code == 200
    rebinding = mock.get("/__admin/journal", headers={"Host": "attacker.example:8000"})
    assert rebinding.status_code == 403
    assert "not one of this server's origins" in rebinding.json()["error"]
    assert mock.get("/__admin/journal", headers={"Host": "127.0.0.1:9999"}).status_code == 403
    origin = {**LOCAL, "Origin": "http://attacker.example:8000"}
    assert mock.get("/__admin/journal", headers=origin).status_code == 403
    assert mock.get("/__admin/journal", headers={**LOCAL, "Origin": "http://localhost:8000"}).status_code == 200
    # provider paths answer any Host (clients name the server as they like)
    assert mock.poll("dashscope", "x", headers={"Host": "anything.example"}).status_code == 200


def test_the_admin_token_guards_every_data_and_action_endpoint(make_mock: Any) -> None:
    mock = make_mock(admin_token="s3cret-token")
    for method, path in [
        ("GET", "/__admin/health"),
        ("GET", "/__admin/journal"),
        ("GET", "/__admin/tasks"),
        ("POST", "/__admin/reset?all=1"),
        ("DELETE", "/__admin/faults"),
        ("POST", "/__admin/clock/advance"),
    ]:
        missing = mock.request(method, path)
        assert missing.status_code == 401, (method, path)
        assert "X-Wanmock-Admin-Token" in missing.json()["error"]
        wrong = mock.request(method, path, headers={"X-Wanmock-Admin-Token": "s3cret-tokem"})
        assert wrong.status_code == 401
    good = {"X-Wanmock-Admin-Token": "s3cret-token"}
    assert mock.get("/__admin/health", headers=good).status_code == 200
    assert mock.post("/__admin/reset?all=1", headers=good).status_code == 200
    # the dashboard's static files need no token (they hold no data); anything else under /__admin does
    assert mock.get("/__admin/ui/").status_code != 401
    assert mock.get("/__admin/uix").status_code == 401


def test_an_absurd_content_length_is_refused_at_once_on_every_route(mock: Mock) -> None:
    huge = str(2**63)
    response = mock.post("/__admin/faults", headers={**JSON, "Content-Length": huge}, content=b"{}")
    assert response.status_code == 413
    response = mock.request("GET", "/dashscope/api/v1/tasks/x", headers={**AUTH, "Content-Length": huge}, content=b"")
    assert response.status_code in (400, 413)  # the provider's own status for too large a body
    assert "at most" in response.text


def test_a_separate_admin_port_splits_the_planes(make_mock: Any) -> None:
    mock = make_mock(admin_port=9001)
    assert mock.get("/__admin/health").status_code == 404  # the provider port (http://mock is port 80)
    transport = httpx.ASGITransport(app=mock.app)
    client = httpx.AsyncClient(transport=transport, base_url="http://mock:9001")
    try:
        assert mock._loop.run_until_complete(client.get("/__admin/health")).status_code == 200
        assert mock._loop.run_until_complete(client.get("/dashscope/api/v1/tasks/x", headers=AUTH)).status_code == 404
    finally:
        mock._loop.run_until_complete(client.aclose())


# -- 2. secrets ---------------------------------------------------------------------------


def test_every_form_of_a_key_is_scrubbed() -> None:
    scrubber = Scrubber([SECRET])
    for form in every_form(SECRET):
        text = scrubber.text(f"error: key {form} is invalid")
        assert SECRET not in text
        assert form not in text, form
    assert all(len(f) >= 6 for f in forms(SECRET))
    assert forms("abc") == set()  # too short to be told from ordinary text


def test_credential_names_are_scrubbed_in_headers_queries_and_bodies() -> None:
    scrubber = Scrubber()
    headers = scrubber.headers(
        [
            ("api-key", "k1"),
            ("Proxy-Authorization", "Basic x"),
            ("X-DashScope-ApiKey", "k3"),
            ("set-cookie", "s=1"),
            ("accept", "json"),
        ]
    )
    assert headers == {
        "api-key": REDACTED,
        "Proxy-Authorization": REDACTED,
        "X-DashScope-ApiKey": REDACTED,
        "set-cookie": REDACTED,
        "accept": "json",
    }
    assert scrubber.query("api_key=abc&page=2&access_token=x&Signature=y") == (
        f"api_key={REDACTED}&page=2&access_token={REDACTED}&Signature={REDACTED}"
    )
    body = scrubber.value({"apiKey": "a", "nested": [{"password": "p", "prompt": "keep"}], "max_tokens": 5})
    assert body == {"apiKey": REDACTED, "nested": [{"password": REDACTED, "prompt": "keep"}], "max_tokens": 5}
    assert scrub({"url": "https://u:p@h/x?Expires=1&Signature=abc"}) == {
        "url": f"https://{REDACTED}@h/x?Expires={REDACTED}&Signature={REDACTED}"
    }


def test_the_journal_and_task_dumps_hold_no_credential_in_any_form(mock: Mock) -> None:
    raw = SECRET.encode()
    sent_headers = {
        "api-key": SECRET,
        "Proxy-Authorization": "Basic " + base64.b64encode(b"me:" + raw).decode(),
        "X-DashScope-ApiKey": SECRET,
        "Authorization": f"Bearer {SECRET}",
    }
    body = {**example_body("dashscope", "t2v"), "api_key": SECRET, "note": f"mine is {quote_plus(SECRET)}"}
    path = "/dashscope/api/v1/services/aigc/video-generation/video-synthesis"
    headers = {**sent_headers, "X-DashScope-Async": "enable"}
    mock.post(f"{path}?api_key={quote(SECRET, safe='')}&token={SECRET}", json=body, headers=headers)
    mock.get(f"/dashscope/api/v1/tasks/x?key={quote_plus(SECRET)}", headers={"Authorization": f"Bearer {SECRET}"})
    valid = example_body("dashscope", "t2v")  # taken: its task's request record is in the dump
    valid["input"]["prompt"] = f"a cat; key {SECRET}, {quote_plus(SECRET)}, {base64.b64encode(raw).decode()}"
    assert mock.post(path, json=valid, headers=headers).status_code == 200
    tasks = mock.get("/__admin/tasks").json()["tasks"]
    assert [t["request"]["input"]["prompt"] for t in tasks] == [f"a cat; key {REDACTED}, {REDACTED}, {REDACTED}"]
    dumps = mock.get("/__admin/journal").text + mock.get("/__admin/tasks").text
    for form in every_form(SECRET):
        assert form not in dumps, form
    entry = mock.get("/__admin/journal").json()["entries"][0]
    assert entry["request_headers"]["authorization"].startswith("<redacted sha256:")
    assert entry["request_body"]["api_key"] == REDACTED


def test_fingerprints_are_salted_per_store_and_64_bits() -> None:
    one, two = Fingerprint(), Fingerprint()
    assert len(one(KEY)) == 16
    assert int(one(KEY), 16) >= 0
    assert one(KEY) == one(KEY) != two(KEY)
    secret = MemoryStore().link_secret(b"x" * 32)
    assert Fingerprint.from_secret(secret)(KEY) == Fingerprint.from_secret(secret)(KEY)


def test_the_access_log_prints_no_query_key() -> None:
    import logging

    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", f"/v1/x?api_key={SECRET}&page=2&x={quote(SECRET, safe='')}", "1.1", 200),
        None,
    )
    AccessLogFilter([SECRET]).filter(record)
    message = record.getMessage()
    assert SECRET not in message
    assert quote(SECRET, safe="") not in message
    assert "page=2" in message


def test_store_urls_are_masked_and_the_password_comes_from_the_environment() -> None:
    assert (
        mask_userinfo("cannot use redis://:hunter2@db:6379/0: refused") == "cannot use redis://***@db:6379/0: refused"
    )
    assert with_password("redis://db:6379/0", "p@ss/word") == "redis://:p%40ss%2Fword@db:6379/0"
    assert with_password("redis://:given@db/0", "other") == "redis://:given@db/0"


# -- 6. the journal, bounded by bytes -------------------------------------------------------


def test_a_journal_entry_is_bounded_whatever_the_request() -> None:
    hostile = {"a": list(range(100_000)), "b": {f"k{i}": "x" * 10_000 for i in range(1000)}, "c": "y" * 10**6}
    kept = bounded(hostile)
    assert len(json.dumps(kept)) < 12 * 1024
    assert kept["a"][-1] == f"<{100_000 - 64} more items>"


@pytest.mark.slow
def test_a_1_gb_journal_attack_stays_under_the_memory_bound(make_mock: Any) -> None:
    """256 requests of 4 MiB each (1 GiB in all: huge JSON arrays, long strings, many headers,
    long queries) leave a journal under its byte budget, and the process under 300 MB more."""
    mock = make_mock(providers=("dashscope",))
    store = mock.state.store
    assert isinstance(store, MemoryStore)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    chunk = 4 * 1024 * 1024
    array = b"[" + b"1," * (chunk // 2 - 1) + b"1]"
    text = json.dumps({"prompt": "z" * (chunk - 20)}).encode()
    headers = {**submit_headers("dashscope"), **JSON, **{f"x-h{i}": "v" * 200 for i in range(200)}}
    path = mock.submit_path("dashscope", "t2v")
    for n in range(256):
        body = array if n % 2 else text
        query = "q=" + "w" * 4000
        response = mock.post(f"{path}?{query}", content=body, headers=headers)  # read, decoded, refused
        assert response.status_code == 400
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    grown_mb = (after - before) / (1024 * 1024 if sys.platform == "darwin" else 1024)
    entries = store.journal()
    assert len(entries) == 256
    assert store.journal_size <= 256 * JOURNAL_ENTRY_BYTES  # about 15 MB at most; measured below
    assert store.journal_size < 16 * 1024 * 1024
    assert grown_mb < 300, f"the process grew {grown_mb:.0f} MB"
    page = mock.get("/__admin/journal?limit=100")
    assert len(page.json()["entries"]) == 100
    assert page.json()["next_cursor"] is not None


def test_the_memory_journal_keeps_a_byte_budget() -> None:
    from wanmock.mockserver.store import JournalEntry

    store = MemoryStore(journal_bytes=50_000)
    for _ in range(200):
        store.append(JournalEntry(0, 0.0, "p", "GET", "/" + "x" * 1000, "", 200, None, None, None))
    assert store.journal_size <= 50_000
    assert 30 < len(store.journal()) < 50


def test_the_journal_is_paginated(mock: Mock) -> None:
    for _ in range(7):
        mock.poll("dashscope", "x")
    first = mock.get("/__admin/journal?limit=3").json()
    assert len(first["entries"]) == 3
    second = mock.get(f"/__admin/journal?limit=3&cursor={first['next_cursor']}").json()
    third = mock.get(f"/__admin/journal?limit=3&cursor={second['next_cursor']}").json()
    assert len(third["entries"]) == 1
    assert third["next_cursor"] is None
    seqs = [e["seq"] for page in (first, second, third) for e in page["entries"]]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 7
    assert [e["seq"] for e in mock.get("/__admin/journal?limit=3&page=2").json()["entries"]] == seqs[3:6]
    assert mock.get("/__admin/journal?limit=0").status_code == 400
    assert mock.get("/__admin/journal?cursor=-1").status_code == 400


# -- 7. scopes ----------------------------------------------------------------------------


def test_a_test_sees_and_changes_only_its_own_scope(mock: Mock) -> None:
    a_task = submit(mock, headers={TEST: "A"})
    b = {TEST: "B"}
    assert mock.get(f"/__admin/tasks/dashscope/{a_task}", headers=b).status_code == 404
    assert mock.post(f"/__admin/tasks/dashscope/{a_task}/fail", json={}, headers=b).status_code == 404
    assert mock.get(f"/__admin/tasks/dashscope/{a_task}", headers={TEST: "A"}).json()["state"] == "queued"
    assert mock.get("/__admin/tasks", headers=b).json()["tasks"] == []
    assert mock.get("/__admin/journal", headers=b).json()["entries"] == []
    rule = mock.post("/__admin/faults", json={"action": "error", "status": 500}, headers={TEST: "A"}).json()
    assert mock.request("DELETE", f"/__admin/faults/{rule['id']}", headers=b).status_code == 404
    planted = mock.post("/__admin/faults", json={"action": "error", "test_id": "A"}, headers=b)
    assert planted.status_code == 400
    assert "test_id" in planted.json()["error"]
    assert mock.post("/__admin/drift", json={}, headers=b).status_code == 403
    assert mock.post("/__admin/reset", headers=b).json() == {"reset": "B"}
    assert mock.get("/__admin/tasks", headers={TEST: "A"}).json()["tasks"] != []
    refused = mock.post("/__admin/reset")
    assert refused.status_code == 400
    assert "?all=1" in refused.json()["error"]
    assert mock.post("/__admin/reset?all=1").json() == {"reset": "all"}


def test_accounts_see_only_their_own_tasks(make_mock: Any) -> None:
    mock = make_mock(
        keys=frozenset({"key-a1", "key-a2", "key-b"}),
        accounts={"key-a1": "a", "key-a2": "a", "key-b": "b"},
        tasks_per_key=True,
    )
    task_id = submit(mock, key="key-a1")
    mine = mock.poll("dashscope", task_id, headers={"Authorization": "Bearer key-a2"})
    assert mine.status_code == 200
    assert mock.status_word("dashscope", mine) != ""
    theirs = mock.poll("dashscope", task_id, headers={"Authorization": "Bearer key-b"})
    unknown = mock.poll("dashscope", "no-such-task", headers={"Authorization": "Bearer key-b"})
    assert theirs.status_code == unknown.status_code
    assert mock.status_word("dashscope", theirs) == mock.status_word("dashscope", unknown)  # "no such task"
    cancel = mock.post(f"/dashscope/api/v1/tasks/{task_id}/cancel", headers={"Authorization": "Bearer key-b"})
    assert cancel.status_code == 404
    listed = mock.get("/dashscope/api/v1/tasks", headers={"Authorization": "Bearer key-b"})
    assert listed.json()["total"] == 0


def test_a_keys_file_groups_keys_into_accounts(tmp_path: Path) -> None:
    from wanmock.mockserver.serve import read_accounts

    path = tmp_path / "keys.txt"
    path.write_text("# accounts\nteam-a key-1\nteam-a key-2\nlonely-key\n")
    keys, accounts = read_accounts(path)
    assert keys == {"key-1", "key-2", "lonely-key"}
    assert accounts == {"key-1": "team-a", "key-2": "team-a"}


# -- 9. result URLs and store errors --------------------------------------------------------


def test_result_urls_never_point_at_a_foreign_host(make_mock: Any) -> None:
    mock = make_mock(origins=ORIGINS, providers=("dashscope",))
    task_id = submit(mock, headers={"Host": "attacker.example"})
    mock.post(f"/__admin/tasks/dashscope/{task_id}/succeed", json={}, headers=LOCAL)
    foreign = mock.result_url("dashscope", mock.poll("dashscope", task_id, headers={"Host": "attacker.example"}))
    assert foreign.startswith("http://127.0.0.1:8000/__files/")
    local = mock.result_url("dashscope", mock.poll("dashscope", task_id, headers={"Host": "localhost:8000"}))
    assert local.startswith("http://localhost:8000/__files/")
    public = make_mock(origins=ORIGINS, public_url="https://mock.example.com", providers=("dashscope",))
    task_id = submit(public)
    public.post(f"/__admin/tasks/dashscope/{task_id}/succeed", json={}, headers={"Host": "mock.example.com"})
    assert public.result_url("dashscope", public.poll("dashscope", task_id)).startswith("https://mock.example.com/")


def test_sqlite_path_errors_name_the_path_and_the_cause(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"the directory .*missing.* does not exist"):
        store_from_url(f"sqlite:///{tmp_path}/missing/tasks.db")
    with pytest.raises(StoreError, match=r"is a directory, not a database file"):
        store_from_url(f"sqlite:///{tmp_path}")
