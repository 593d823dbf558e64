"""Installed for real (a wheel, not editable), wanmock is a good guest in a user's project.

The project is built into a wheel from a clean copy of the tracked files (so nothing is written
into the checkout), installed with ``--no-deps`` into a fresh virtual environment whose
dependencies come from this test environment (a ``.pth`` line, so the run needs no network), and:

* site-packages gains only ``wanmock/`` and ``wanmock-<version>.dist-info`` from it;
* a sample project with its own ``schemas`` and ``contracts`` packages runs its tests, with the
  wanmock plugin active, under both ``pytest`` and ``python -m pytest``, and imports wanmock.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

SAMPLE_TEST = """
import httpx

import contracts
import schemas
from wanmock.schemas import catalog

SUBMIT = "/api/v1/services/aigc/video-generation/video-synthesis"


def test_own_packages_and_wanmock_side_by_side(wanmock):
    assert schemas.OWN == "the project's own schemas" and contracts.OWN == "the project's own contracts"
    assert "dashscope" in catalog().providers
    headers = {"Authorization": "Bearer k", "X-DashScope-Async": "enable"}
    http = httpx.Client(transport=wanmock.transport, base_url=wanmock.base_url("dashscope"), headers=headers)
    answer = http.post(SUBMIT, json={"model": "wan2.7-t2v", "input": {"prompt": "a cat"}})
    assert answer.status_code == 200
"""

PYTEST_SCRIPT = """import sys
from pytest import console_main
sys.exit(console_main())
"""


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"$ {' '.join(argv)}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """(the fresh environment's python, its site-packages, the environment variables to run it with)."""
    work = tmp_path_factory.mktemp("install")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "VIRTUAL_ENV", "PYTHON"))}
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    source = work / "source"
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    _run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(work / "dist"), str(source)], work, env
    )
    [wheel] = (work / "dist").glob("wanmock-*.whl")
    _run([sys.executable, "-m", "venv", "--without-pip", str(work / "venv")], work, env)
    python = work / "venv" / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    before = set(os.listdir(site))
    # Install the wheel with this environment's pip into the fresh one (it has no pip of its own).
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)], work, env)
    added = set(os.listdir(site)) - before
    assert sorted(a for a in added if a != "bin") == [
        "wanmock",
        f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info",
    ]
    assert not (site / "wanmock" / "__init__.py").exists()  # a namespace: nothing generic at the top
    # The dependencies (and pytest) from this test environment, after the fresh site-packages.
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    return python, site, env


def test_only_wanmock_is_installed(installed: tuple[Path, Path, dict[str, str]]) -> None:
    _, site, _ = installed
    ours = {p.name for p in site.iterdir() if p.name.startswith("wanmock")}
    assert {n for n in ours if not n.endswith(".dist-info")} == {"wanmock"}
    assert {p.name for p in (site / "wanmock").iterdir()} == {"schemas", "mockserver", "contracts"}
    for generic in ("schemas", "contracts", "mockserver"):
        assert not (site / generic).exists()
    entry_points = next(site.glob("wanmock-*.dist-info")).joinpath("entry_points.txt").read_text()
    assert "wanmock = wanmock.contracts.testing.plugin" in entry_points


def test_a_project_with_its_own_schemas_and_contracts(
    installed: tuple[Path, Path, dict[str, str]], tmp_path: Path
) -> None:
    python, _, env = installed
    project = tmp_path / "project"
    for package in ("schemas", "contracts"):
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text(f'OWN = "the project\'s own {package}"\n')
    (project / "contracts" / "plugin.py").write_text("raise ImportError('the project is not a pytest plugin')\n")
    (project / "tests").mkdir()
    (project / "tests" / "test_sample.py").write_text(textwrap.dedent(SAMPLE_TEST))
    (project / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["."]\n')
    script = tmp_path / "bin" / "pytest"
    script.parent.mkdir()
    script.write_text(PYTEST_SCRIPT)
    args = ["-q", "-p", "no:cacheprovider", "-W", "error"]
    for argv in ([str(python), str(script), *args], [str(python), "-m", "pytest", *args]):
        done = _run(argv, project, env)
        assert "1 passed" in done.stdout
    imported = _run(
        [
            str(python),
            "-c",
            "import schemas, wanmock.schemas, wanmock.mockserver.app, wanmock.contracts.client; "
            "print(schemas.OWN, sorted(wanmock.schemas.catalog().providers))",
        ],
        project,
        env,
    )
    assert imported.stdout.startswith("the project's own schemas ['aimlapi', 'apiyi', 'dashscope', 'modellix']")
