"""Every example in README.md and docs/*.md runs, or at least parses, as written.

* A ``python`` block is executed; a block that defines ``test_*`` functions is run by pytest (with
  the wanmock plugin, as a user would). A block fenced ``python live`` needs a provider's key and
  the network: it is compiled, not run.
* Every ``wanmock …`` command line of a ``bash`` or ``console`` block is parsed by the real
  command-line parser (so an option that is renamed or removed breaks the docs' test).
* Every ``python benchmarks/….py`` line names a script that exists.
* Every relative link points at a file that exists.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from wanmock.mockserver.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.S | re.M)


def _blocks(page: Path) -> list[tuple[str, str]]:
    return [(m.group(1).strip(), m.group(2)) for m in FENCE.finditer(page.read_text(encoding="utf-8"))]


def _python_blocks() -> list[tuple[str, str]]:
    return [
        (f"{page.relative_to(ROOT)}#{n}", code)
        for page in PAGES
        for n, (info, code) in enumerate(_blocks(page))
        if info.split()[:1] == ["python"] and info != "python live"
    ]


def _live_blocks() -> list[tuple[str, str]]:
    return [
        (f"{page.relative_to(ROOT)}#{n}", code)
        for page in PAGES
        for n, (info, code) in enumerate(_blocks(page))
        if info == "python live"
    ]


def _command_lines() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for info, code in _blocks(page):
            if info not in ("bash", "sh", "console"):
                continue
            text = re.sub(r"\\\n\s*", " ", code)  # join continued lines
            for line in text.splitlines():
                line = line.strip().removeprefix("$ ")
                for command in re.split(r"\s(?:&&|\|)\s", line):
                    command = command.strip()
                    if command.startswith(("wanmock ", "python benchmarks/")):
                        found.append((f"{page.relative_to(ROOT)}: {command}", command))
    return found


def _words(command: str) -> list[str]:
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words = []
    for word in lexer:
        if word and set(word) <= set(";&|"):
            break
        words.append(word)
    return words


@pytest.mark.parametrize(("where", "code"), _python_blocks(), ids=[w for w, _ in _python_blocks()])
def test_python_example_runs(where: str, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    if re.search(r"^def test_", code, re.M):
        (tmp_path / "test_example.py").write_text(code, encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", "test_example.py"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, where, "exec"), {"__name__": "__docs__"})


@pytest.mark.parametrize(("where", "code"), _live_blocks(), ids=[w for w, _ in _live_blocks()])
def test_live_example_compiles(where: str, code: str) -> None:
    compile(code, where, "exec")


@pytest.mark.parametrize(("where", "command"), _command_lines(), ids=[w for w, _ in _command_lines()])
def test_command_line_parses(where: str, command: str) -> None:
    words = _words(command)
    if words[0] == "python":
        assert (ROOT / words[1]).is_file(), where
        return
    parser = build_parser()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            args = parser.parse_args(words[1:])
    except SystemExit as exc:  # --help and --version exit 0 after printing
        code = exc.code
    else:
        code = 0 if callable(args.handler) else None
    assert code == 0, f"{where}: the parser refused it (exit {code})"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    missing = [
        target
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
        if "://" not in target and not (page.parent / target).exists()
    ]
    assert missing == []


def test_every_docs_page_is_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    unlinked = [p.name for p in (ROOT / "docs").glob("*.md") if f"docs/{p.name}" not in readme]
    assert unlinked == []


def test_the_examples_are_found() -> None:
    assert len(_python_blocks()) >= 4
    assert len(_command_lines()) >= 20


def test_the_settings_table_is_the_generated_one() -> None:
    from wanmock.mockserver.settings import markdown_table

    text = (ROOT / "docs" / "MOCK_SERVER.md").read_text(encoding="utf-8")
    shown = text.split("<!-- settings table: begin -->\n")[1].split("<!-- settings table: end -->")[0]
    assert shown == markdown_table(), (
        "docs/MOCK_SERVER.md's settings table is out of date: paste the output of `wanmock serve --list-settings`"
    )
