"""The `wanmock` command line behaves (docs/CLI.md): --version, help with examples, exit codes
0/1/2/3/130, Ctrl-C without a traceback, a quiet broken pipe, --target taking the base URLs the
banner prints, drift refusing a wrong cassette, no files left in the user's directory."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from wanmock.contracts.tools.launcher import ServeProcess
from wanmock.mockserver.cli import build_parser, main

from tests.test_serve_cli import Server

WANMOCK = [sys.executable, "-m", "wanmock.mockserver"]


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


# -- help ---------------------------------------------------------------------------------------


def _parsers() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    def walk(name: str, parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
        yield name, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, child in action.choices.items():
                    yield from walk(f"{name} {sub}", child)

    yield from walk("wanmock", build_parser())


@pytest.mark.parametrize(("name", "parser"), list(_parsers()), ids=[n for n, _ in _parsers()])
def test_every_command_and_option_has_help_and_an_example(name: str, parser: argparse.ArgumentParser) -> None:
    epilog = parser.epilog or ""
    assert "examples:" in epilog, f"{name} has no examples in its help"
    joined = epilog.replace("\\\n", " ")  # continued lines
    examples = [line.strip() for line in joined.splitlines() if line.strip().startswith("wanmock")]
    assert any(line.startswith(name) for line in examples), f"{name}: no example runs {name!r}"
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._VersionAction | argparse._SubParsersAction):
            continue
        assert action.help, f"{name} {'/'.join(action.option_strings) or action.dest}: no help"
        if action.option_strings:
            assert any(
                any(f"{option} " in f"{line} " or f"{option}=" in line for option in action.option_strings)
                for line in examples
            ), f"{name} {action.option_strings[0]}: no example uses it"


def test_version() -> None:
    done = subprocess.run([*WANMOCK, "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0
    assert done.stdout.startswith("wanmock ")
    assert done.stdout.split()[1][0].isdigit()


# -- exit codes -----------------------------------------------------------------------------------


def test_a_usage_error_exits_2() -> None:
    done = subprocess.run([*WANMOCK, "serve", "--timing", "slow"], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "invalid choice" in done.stderr


def test_an_internal_error_exits_3_with_one_line_and_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import wanmock.schemas.cli

    def broken(*_: Any) -> int:
        raise RuntimeError("something inside broke")

    monkeypatch.setattr(wanmock.schemas.cli, "_list", broken)
    code, _, err = run("schemas")
    assert code == 3
    first, hint = err.splitlines()
    assert first == "wanmock schemas: internal error: RuntimeError: something inside broke"
    assert "WANMOCK_DEBUG=1" in hint
    assert "Traceback" not in err


def test_a_closed_pipe_is_quiet() -> None:
    command = " ".join([*WANMOCK, "schemas"]) + " | head -1"
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=False)
    assert done.returncode == 0
    assert len(done.stdout.splitlines()) == 1
    assert done.stderr == ""


# -- Ctrl-C ---------------------------------------------------------------------------------------


def _interrupt(process: subprocess.Popen[str], ready: Any, timeout: float = 60) -> tuple[str, str]:
    """Wait until ``ready()`` (polled), press Ctrl-C, and collect the output."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                out, err = process.communicate()
                raise AssertionError(f"the command ended or never got going\n{out}\n{err}")
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return out, err


@pytest.mark.slow
def test_ctrl_c_ends_serve_without_a_traceback() -> None:
    with ServeProcess() as server:  # stopped with SIGINT, as a terminal's Ctrl-C
        assert "control" in server.output()
    assert server.returncode == 130
    assert "Traceback" not in server.errors()
    assert server.errors().strip().splitlines()[-1] == "wanmock serve: interrupted"


@pytest.mark.slow
def test_ctrl_c_twice_ends_serve_without_a_traceback() -> None:
    """A second Ctrl-C while the first shuts the server down: uvicorn then cancels the app's
    lifespan instead of ending it, which Starlette used to report with a traceback."""
    with ServeProcess() as server:
        assert "control" in server.output()
        process = server.process
        assert process is not None
        os.kill(server.pid, signal.SIGINT)
        time.sleep(0.02)
        os.kill(server.pid, signal.SIGINT)
        assert process.wait(timeout=30) == 130
    assert "Traceback" not in server.errors()
    assert server.errors().strip().splitlines()[-1] == "wanmock serve: interrupted"


@pytest.mark.slow
def test_ctrl_c_on_contract_writes_the_partial_report(tmp_path: Path, server: Server) -> None:
    report, junit = tmp_path / "r.json", tmp_path / "r.xml"
    argv = [*WANMOCK, "contract", "--provider", "all", "--examples", "8", "--seed", "1", "--target", server.origin]
    argv += ["--report", str(report), "--junit", str(junit)]
    server.client.post("/__admin/reset", params={"all": "1"}).raise_for_status()

    def on_dashscope() -> bool:  # providers run in order: aimlapi and apiyi are done
        # a dozen requests: a few dashscope t2v cases have finished, far from all (each kind sends 50+)
        entries = server.client.get("/__admin/journal", params={"provider": "dashscope"}).json()["entries"]
        return len(entries) >= 12

    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    out, err = _interrupt(process, on_dashscope, timeout=240)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted" in out
    written = json.loads(report.read_text())
    assert written["interrupted"] is True
    assert written["passed"] is False
    assert {r["provider"] for r in written["results"]} >= {"aimlapi", "apiyi"}
    *finished, running = written["results"]
    assert not any(r["interrupted"] for r in finished)
    assert (running["provider"], running["interrupted"]) == ("dashscope", True)  # the kind it had reached
    # the cases finished before Ctrl-C are kept: the running kind's, or (when Ctrl-C came just as
    # a kind began) those of the DashScope kind before it
    dashscope_before = [r for r in finished if r["provider"] == "dashscope"]
    assert running["cases"] >= 1 or sum(r["cases"] for r in dashscope_before) >= 1
    assert running["examples"] <= 8
    suites = ElementTree.parse(junit).getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == [f"wanmock.{r['provider']}.{r['model']}" for r in written["results"]]
    marked = [s.get("name") for s in suites if s.find("properties/property[@name='interrupted']") is not None]
    assert marked == [f"wanmock.dashscope.{running['model']}"]
    assert "(interrupted)" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.xml"]  # no .hypothesis/


@pytest.mark.slow
def test_ctrl_c_on_record_keeps_what_was_recorded(tmp_path: Path) -> None:
    server = Server("--timing", "realistic")  # system clock: the recording waits for real
    try:
        argv = [*WANMOCK, "record", "--provider", "apiyi", "--target", server.origin, "--budget", "1"]
        argv += ["--out", str(tmp_path / "rec")]
        cassette = tmp_path / "rec" / "cassette.json"

        def submitted() -> bool:
            try:
                return any(i["endpoint"] == "submit" and i["probe"] == "paid" for i in _interactions(cassette))
            except (OSError, ValueError):
                return False

        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, err = _interrupt(process, submitted)
    finally:
        server.stop()
    assert process.returncode == 130
    assert "Traceback" not in err
    probes = [i["probe"] for i in _interactions(cassette)]
    assert probes[:3] == ["refused-key", "invalid-body", "unknown-task"]
    assert "paid" in probes


def _interactions(cassette: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(cassette.read_text())["interactions"]
    return found


# -- --target -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server("--clock", "manual", "--seed", "2")
    yield s
    s.stop()


@pytest.mark.slow
@pytest.mark.parametrize("path", ["", "/", "/modellix", "/modellix/"])
def test_contract_target_takes_the_origin_and_the_base_url(server: Server, path: str) -> None:
    code, out, err = run(
        "contract", "--provider", "modellix", "--model", "t2v", "--examples", "2", "--target", server.origin + path
    )
    assert code == 0, out + err
    assert "all checks passed" in out


@pytest.mark.slow
def test_drift_target_takes_the_base_url(server: Server) -> None:
    code, out, err = run("drift", "--provider", "aimlapi", "--target", f"{server.origin}/aimlapi")
    assert code == 0, out + err
    assert "does not serve" not in err


@pytest.mark.slow
def test_record_target_takes_the_base_url_and_steps_the_manual_clock(server: Server, tmp_path: Path) -> None:
    started = time.monotonic()
    code, out, err = run(
        "record",
        "--provider",
        "dashscope",
        "--target",
        f"{server.origin}/dashscope",
        "--budget",
        "1",
        "--out",
        str(tmp_path),
    )
    assert code == 0, out + err
    assert time.monotonic() - started < 60  # the manual clock was advanced, not waited for
    assert "SUCCEEDED" in out


@pytest.mark.slow
def test_a_target_of_another_provider_or_no_wanmock_is_a_usage_error(server: Server) -> None:
    code, _, err = run("drift", "--provider", "modellix", "--target", f"{server.origin}/dashscope")
    assert code == 2
    assert "base URL of dashscope, not of modellix" in err
    code, _, err = run("contract", "--provider", "modellix", "--target", f"{server.origin}/nothing")
    assert code == 2
    assert "not '/nothing'" in err
    code, _, err = run("drift", "--provider", "modellix", "--target", "http://127.0.0.1:9")
    assert code == 2
    assert "is not a wanmock server" in err


# -- drift --cassette -----------------------------------------------------------------------------


def _cassette(directory: Path, content: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    text = content if isinstance(content, str) else json.dumps(content)
    (directory / "cassette.json").write_text(text, encoding="utf-8")
    return directory


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"provider": "dashscope", "interactions": [{"response": {"status": 200, "body": {}}}]}, "not of apiyi"),
        ({"provider": "apiyi", "interactions": []}, "is empty"),
        ("{not json", "is not JSON"),
        ({"provider": "apiyi"}, "no list of interactions"),
        ({"provider": "apiyi", "interactions": [{"request": {}}]}, "interaction 0 has no response"),
    ],
)
def test_drift_refuses_a_wrong_cassette(tmp_path: Path, content: Any, message: str) -> None:
    code, out, err = run("drift", "--provider", "apiyi", "--cassette", str(_cassette(tmp_path / "c", content)))
    assert code == 2
    assert message in err
    assert out == ""


def test_drift_refuses_a_directory_without_a_cassette(tmp_path: Path) -> None:
    code, _, err = run("drift", "--provider", "apiyi", "--cassette", str(tmp_path))
    assert code == 2
    assert "holds no cassette.json" in err


# -- no files left behind -------------------------------------------------------------------------


def test_contract_leaves_no_hypothesis_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run("contract", "--provider", "apiyi", "--model", "t2v", "--examples", "3", "--seed", "1")
    assert code == 0, out + err
    assert list(tmp_path.iterdir()) == []
    code, out, err = run(
        "contract", "--provider", "apiyi", "--model", "t2v", "--examples", "3", "--hypothesis-dir", "hyp"
    )
    assert code == 0, out + err
    assert {p.name for p in tmp_path.iterdir()} <= {"hyp"}


def test_debug_variable_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    import wanmock.schemas.cli

    def broken(*_: Any) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(wanmock.schemas.cli, "_list", broken)
    monkeypatch.setitem(os.environ, "WANMOCK_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(["schemas"], io.StringIO(), io.StringIO())


# -- settings ------------------------------------------------------------------------------------


def test_every_setting_is_settable_from_a_file_and_from_set(tmp_path: Path) -> None:
    from wanmock.mockserver.clock import ManualClock
    from wanmock.mockserver.config import RateLimit
    from wanmock.mockserver.serve import config_from

    toml = tmp_path / "wanmock.toml"
    toml.write_text(
        'timing = "realistic"\nkeys = ["k1", "k2"]\nmedia_max_bytes = 1000000\n'
        "[options]\nretention_seconds = {modellix = 604800}\naimlapi_unknown_status = 410\n"
        "[rate_limits.modellix]\nrpm = 100\nconcurrency = 3\n",
        encoding="utf-8",
    )
    argv = ["serve", "--config", str(toml), "--set", "seed=7", "--set", "clock=manual", "--set", "i2v_ratio=9:16"]
    argv += ["--set", "rate_limits.dashscope.rpm=5", "--set", "providers=['apiyi']", "--set", "timing=instant"]
    config = config_from(build_parser().parse_args(argv))
    assert config.timing == "instant"  # --set comes after --config
    assert config.keys == frozenset({"k1", "k2"})
    assert config.seed == 7
    assert isinstance(config.clock, ManualClock)
    assert config.providers == ("apiyi",)
    assert config.media_max_bytes == 1000000
    assert config.options.retention_seconds == {"modellix": 604800.0}
    assert config.options.aimlapi_unknown_status == 410
    assert config.options.i2v_ratio == "9:16"
    assert config.rate_limits == {"modellix": RateLimit(rpm=100, concurrency=3), "dashscope": RateLimit(rpm=5)}


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("no_such_thing=1", "unknown setting 'no_such_thing'"),
        ("seed=many", "seed must be int"),
        ("timing=slow", "unknown timing 'slow'"),
        ("clock=sundial", "clock must be system or manual"),
        ("novalue", "--set needs key=value"),
    ],
)
def test_a_wrong_setting_is_a_usage_error(setting: str, message: str) -> None:
    code, _, err = run("serve", "--set", setting)
    assert code == 2
    assert message in err


@pytest.mark.slow
def test_a_dropped_connection_logs_one_line() -> None:
    import httpx

    with ServeProcess("--provider", "apiyi") as server, httpx.Client(base_url=server.origin, timeout=10) as http:
        http.post("/__admin/faults", json={"action": "drop", "endpoint": "poll", "count": 2})
        for _ in range(2):
            with pytest.raises(httpx.TransportError):
                http.get("/v1/tasks/some-task", headers={"Authorization": "Bearer k"})
    logged = server.errors()
    assert "Traceback" not in logged
    assert [line for line in logged.splitlines() if "dropped" in line] == [
        line for line in logged.splitlines() if "connection dropped by a fault rule" in line
    ]
    assert len([line for line in logged.splitlines() if "connection dropped by a fault rule" in line]) == 2


def test_the_redis_store_without_redis_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from wanmock.mockserver.store import StoreError, store_from_url

    monkeypatch.setitem(sys.modules, "redis", None)  # as if the extra were not installed
    monkeypatch.delitem(sys.modules, "wanmock.mockserver.redis_store", raising=False)
    with pytest.raises(StoreError, match=r"pip install 'wanmock\[redis\]'"):
        store_from_url("redis://127.0.0.1:6379/0")
    code, _, err = run("serve", "--store", "redis://127.0.0.1:6379/0")
    assert code == 2
    assert "wanmock[redis]" in err


def test_the_commands_found_without_entry_points_are_the_installed_ones() -> None:
    """`wanmock serve` skips reading the installed entry points (start-up): the commands it
    knows by heart must be exactly what pyproject.toml registers."""
    from wanmock.mockserver.cli import OWN_COMMANDS, registered

    installed = {entry.name: entry.value for entry in registered()}
    assert OWN_COMMANDS.items() <= installed.items()
    probe = (
        "import sys, wanmock.mockserver.cli as c; c.build_parser('serve'); print('importlib.metadata' in sys.modules)"
    )
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "False"


def test_wanmock_serve_starts_without_the_modules_it_needs_only_later() -> None:
    """Start-up stays short: building the served app imports neither the reference validator
    (jsonschema, referencing: needed for the first invalid body), nor jsonschema-rs (the first
    validation), nor h11 (the httptools stack serves), nor the replay (--cassette only), nor
    the control plane and its dashboard (the first /__admin request), nor the settings reader
    (--config and --set only), nor uvloop (--loop uvloop only)."""
    probe = (
        "import sys, wanmock.mockserver.cli as c\n"
        "from wanmock.mockserver import serve\n"
        "args = c.build_parser('serve').parse_args(['serve', '--provider', 'modellix'])\n"
        "app = serve.build_app(args); serve.uvicorn_config(app, args)\n"
        "late = ('jsonschema', 'referencing', 'jsonschema_rs', 'h11', 'wanmock.mockserver.replay', 'av',\n"
        "        'wanmock.mockserver.admin', 'wanmock.mockserver.dashboard', 'wanmock.mockserver.settings', 'uvloop')\n"
        "print(sorted(m for m in late if m in sys.modules))\n"
        "app.router.routes; print('wanmock.mockserver.admin' in sys.modules)"
    )
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert shown.stdout.strip().splitlines() == ["[]", "True"]


def test_a_ctrl_c_python_drops_still_ends_the_command_quietly() -> None:
    """Python drops a KeyboardInterrupt raised inside a collector callback (it prints "Exception
    ignored" and a traceback, then goes on): hypothesis keeps such a callback, so Ctrl-C during a
    contract run once finished it with exit 0. The interrupt is now remembered without the
    traceback, a long loop raises it at its next step, and the command ends with 130."""
    probe = (
        "import gc, sys\n"
        "from wanmock.mockserver import cli\n"
        "def callback(phase, info):\n"
        "    if phase == 'start':\n"
        "        gc.callbacks.remove(callback)\n"
        "        raise KeyboardInterrupt\n"
        "with cli._interrupts():\n"
        "    gc.callbacks.append(callback)\n"
        "    gc.collect()\n"
        "    print('went on')\n"
        "    try:\n"
        "        cli.check_interrupt()\n"
        "    except KeyboardInterrupt:\n"
        "        print('interrupted')\n"
        "cli.check_interrupt()\n"  # remembered for the command only: the next one starts clean
        "with cli._interrupts():\n"
        "    cli.check_interrupt()\n"
        "print('next command ran')\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.splitlines() == ["went on", "interrupted", "next command ran"], done.stderr
    assert done.stderr == ""


def test_in_a_contract_run_ctrl_c_waits_for_the_next_step_and_a_second_one_does_not() -> None:
    """An interrupt raised inside a library can leave its lock held: httpcore's connection pool
    was left locked that way and the next request of a contract run waited forever. In a run,
    Ctrl-C is raised at the next step boundary instead; a second Ctrl-C at once."""
    probe = (
        "import os, signal, time\n"
        "from wanmock.mockserver import cli\n"
        "with cli._interrupts():\n"
        "    with cli.deferred_interrupts():\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        time.sleep(0.05)\n"
        "        print('the step finished')\n"
        "        try:\n"
        "            cli.check_interrupt()\n"
        "        except KeyboardInterrupt:\n"
        "            print('stopped at the boundary')\n"
        "        try:\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "            time.sleep(5)\n"
        "            print('not stopped')\n"
        "        except KeyboardInterrupt:\n"
        "            print('the second stopped at once')\n"
        "    print(signal.getsignal(signal.SIGINT) is cli._on_sigint)\n"
        "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.splitlines() == [
        "the step finished",
        "stopped at the boundary",
        "the second stopped at once",
        "True",
        "True",
    ], done.stderr
