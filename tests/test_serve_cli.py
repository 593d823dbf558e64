"""`wanmock serve` over a real socket: the seed pages' request examples get 200 in each
provider's shape, polling reaches success, and the MP4 matches the request."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from wanmock.contracts.tools.launcher import ServeProcess
from wanmock.mockserver.media import probe
from wanmock.mockserver.results import output_size
from wanmock.schemas import catalog, resolve_pointer
from wanmock.schemas.catalog import ROOT

from tests.conftest import submit_headers

pytestmark = pytest.mark.slow

SEED_CASES = {
    "modellix": ["t2v-seed", "i2v-seed", "videoedit-seed"],
    "apiyi": ["valid_i2v_seed_curl", "valid_i2v_seed_code_example"],
    "aimlapi": ["valid-submit-i2v-seed-example"],
}


def seed_case(provider: str, name: str) -> dict[str, Any]:
    return json.loads((ROOT / "corpus" / provider / f"{name}.json").read_text())  # type: ignore[no-any-return]


class Server:
    """`wanmock serve --port 0 ARGS` through the one launcher (`ServeProcess`: ready once
    /__admin/health answers, a LaunchError with its standard error when it does not start), with
    ``client`` an httpx.Client on it. ``headers`` go with every request of ``client`` (the admin
    token of a server started with ``--admin-token``; the readiness probe sends that by itself)."""

    def __init__(self, *args: str, headers: dict[str, str] | None = None) -> None:
        self.launched = ServeProcess(*args).start()
        assert self.launched.process is not None
        self.process = self.launched.process
        self.origin = self.launched.origin
        self.banner = self.launched.output().splitlines(keepends=True)  # all of it: printed before ready
        self.client = httpx.Client(base_url=self.origin, timeout=20, headers=headers)
        self.out = ""

    def stop(self) -> str:
        """Stop the server (SIGINT, then SIGTERM, SIGKILL); its standard error, for diagnostics
        (its standard output is then in ``out``)."""
        try:
            self.client.close()
        finally:
            self.launched.stop()
        self.out = self.launched.output()
        return self.launched.errors()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server("--timing", "fast", "--clock", "manual", "--seed", "1")
    yield s
    s.stop()


@pytest.mark.parametrize(("provider", "case_name"), [(p, n) for p, names in SEED_CASES.items() for n in names])
def test_seed_example_runs_to_a_real_video_over_a_socket(server: Server, provider: str, case_name: str) -> None:
    case = seed_case(provider, case_name)
    p = catalog().provider(provider)
    model = p.models[case["model"]]
    path = p.endpoints["submit"].paths[0].replace("{model}", model.id)
    submitted = server.client.post(path, json=case["instance"], headers=submit_headers(provider))
    assert submitted.status_code == 200, submitted.text
    assert catalog().validate(provider, "submit-response", submitted.json()) == []
    task_id = resolve_pointer(submitted.json(), p.task_fields["id_in_submit"])

    advanced = server.client.post("/__admin/clock/advance", json={"seconds": 5})
    assert advanced.status_code == 200
    poll_endpoint = p.endpoints["poll"]
    poll = server.client.get(
        poll_endpoint.paths[0].replace("{task_id}", task_id),
        params={k: v.replace("{task_id}", task_id) for k, v in poll_endpoint.query.items()},
        headers=submit_headers(provider),
    )
    assert poll.status_code == 200
    assert catalog().validate(provider, "poll-response", poll.json()) == []
    assert resolve_pointer(poll.json(), p.task_fields["status_in_poll"]) == p.states["succeeded"].word

    url = resolve_pointer(poll.json(), p.task_fields["result_url_in_poll"])
    assert url.startswith(server.origin)
    video = httpx.get(url, timeout=30)  # no Authorization: the result host is pre-signed
    assert video.status_code == 200
    info = probe(video.content)
    task = server.client.get(f"/__admin/tasks/{provider}/{task_id}").json()
    params = task["params"]
    assert (info["width"], info["height"]) == output_size(params["resolution"], params["ratio"])
    assert abs(info["duration"] - params["duration"]) <= 0.125


def test_serve_prints_every_provider_base_url(server: Server) -> None:
    assert server.banner[0].startswith("wanmock serving ")
    providers = catalog().providers
    assert all(name in server.banner[0] for name in providers)
    for name in providers:
        assert f"  {name:<10} {server.origin}/{name}\n" in server.banner
    # the providers also at the root are those whose manifest has "root" (no list in the code)
    [also] = [line for line in server.banner if "also at" in line]
    rooted = sorted(name for name in providers if "root" in catalog().provider(name).manifest)
    assert 0 < len(rooted) < len(providers)
    assert also == f"  ({', '.join(rooted[:-1])} and {rooted[-1]} also at {server.origin}/)\n"


def test_one_provider_is_served_at_the_root() -> None:
    s = Server("--provider", "dashscope", "--timing", "instant")
    try:
        path = catalog().provider("dashscope").endpoints["submit"].paths[0]
        body = {"model": "wan2.7-t2v", "input": {"prompt": "a cat"}}
        created = s.client.post(path, json=body, headers=submit_headers("dashscope"))
        assert created.status_code == 200
        task_id = created.json()["output"]["task_id"]
        polled = s.client.get(f"/api/v1/tasks/{task_id}", headers=submit_headers("dashscope"))
        assert polled.json()["output"]["task_status"] == "SUCCEEDED"
    finally:
        s.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--provider", "openai"], "invalid choice"),
        (["--store", "mongodb://localhost:27017/0"], "unsupported --store"),
        (["--store", "redis://127.0.0.1:1/0"], "cannot use the Redis store"),
        (["--workers", "2"], "workers need a shared store: --store sqlite:///... or redis://..."),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--timing", "slow"], "invalid choice"),
    ],
)
def test_serve_refuses_bad_options_clearly(args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wanmock.mockserver", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert message in done.stderr


def test_keys_file_restricts_accepted_keys(tmp_path: Any) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("# team keys\nk-one\n")
    s = Server("--keys", str(keys), "--provider", "modellix")
    try:
        body = {"prompt": "a cat"}
        ok = s.client.post("/api/v1/alibaba/wan2.7-t2v/async", json=body, headers={"Authorization": "Bearer k-one"})
        refused = s.client.post(
            "/api/v1/alibaba/wan2.7-t2v/async", json=body, headers={"Authorization": "Bearer test-key"}
        )
        assert ok.status_code == 200
        assert refused.status_code == 401
        assert refused.json()["message"].startswith("Authentication failed: ")
    finally:
        s.stop()


def test_listening_socket_lets_asyncio_disable_nagle() -> None:
    import socket

    from wanmock.mockserver.serve import listen

    sock = listen("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP  # asyncio's _set_nodelay checks exactly this
    finally:
        sock.close()


def test_the_http_stack_is_httptools_without_an_access_log() -> None:
    import argparse

    from wanmock.mockserver.serve import http_stack

    assert http_stack(argparse.Namespace()) == {"loop": "asyncio", "http": "httptools", "access_log": False}
    assert http_stack(argparse.Namespace(access_log=True))["access_log"] is True


def test_access_log_prints_one_line_per_request_only_when_asked() -> None:
    quiet, loud = Server("--provider", "modellix"), Server("--provider", "modellix", "--access-log")
    for s in (quiet, loud):
        s.client.get("/__admin/health")
    logs = [s.stop() + s.out for s in (quiet, loud)]
    assert '"GET /__admin/health HTTP/1.1" 200' not in logs[0]
    assert '"GET /__admin/health HTTP/1.1" 200' in logs[1]


def test_serve_does_not_import_the_harness_or_pyav() -> None:
    """Start-up imports on demand: `wanmock serve` leaves hypothesis, httpx and PyAV unloaded."""
    code = (
        "import sys; from wanmock.mockserver import cli, serve, app, replay; "
        "cli.build_parser('serve'); app.create_app(); "
        "print(sorted(m for m in ('hypothesis', 'httpx', 'av', 'wanmock.contracts') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
