"""The `wanmock` console script (also `python -m wanmock.mockserver`).

Commands come from the ``wanmock.commands`` entry-point group: each package registers an
``add_parser(subparsers)`` function in pyproject.toml, so this module assembles the command line
without importing the packages above it. A handler takes the parsed arguments and the output
streams and returns the exit code.

Every command ends the same way (docs/CLI.md): 0 success, 1 checks failed / invalid / drift
found, 2 usage error (argparse's own, or a handler's), 3 internal error (one line and a hint;
``WANMOCK_DEBUG=1`` shows the traceback), 130 on Ctrl-C, 141 when standard output is a closed
pipe. None of them prints a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command Ctrl-C ended
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE
DEBUG_VARIABLE = "WANMOCK_DEBUG"
_INTERRUPTED = threading.Event()  # Ctrl-C came during this command


def check_interrupt() -> None:
    """Raise KeyboardInterrupt if Ctrl-C came during the command and has not ended it yet: a
    long loop calls this between steps. Such a Ctrl-C was deferred (``deferred_interrupts``), or
    its exception was lost: Python drops a KeyboardInterrupt raised inside a garbage-collector
    callback or a ``__del__`` (it prints "Exception ignored" and goes on)."""
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt


def _on_sigint(signum: int, frame: Any) -> None:
    _INTERRUPTED.set()
    raise KeyboardInterrupt


def _on_sigint_deferred(signum: int, frame: Any) -> None:
    if _INTERRUPTED.is_set():  # the second Ctrl-C: at once
        raise KeyboardInterrupt
    _INTERRUPTED.set()


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Within, the first Ctrl-C is raised at the next ``check_interrupt()`` (a step boundary of
    a long loop), not wherever the program is: an interrupt raised inside a library, an HTTP
    connection pool for one, can leave its lock held and the next request waiting forever. A
    second Ctrl-C raises at once. Outside a command's ``_interrupts()``, nothing changes."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not _on_sigint:
        yield
        return
    signal.signal(signal.SIGINT, _on_sigint_deferred)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, _on_sigint)


def _unraisable(unraisable: Any) -> None:
    """A KeyboardInterrupt that Python could not raise (see check_interrupt) is remembered
    quietly, not printed with a traceback; any other goes to the default hook."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        _INTERRUPTED.set()
        return
    sys.__unraisablehook__(unraisable)


@contextlib.contextmanager
def _interrupts() -> Iterator[None]:
    """Ctrl-C remembered for the command (the main thread's SIGINT handler, when it is Python's
    default, and the unraisable hook), restored afterwards."""
    _INTERRUPTED.clear()
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main_thread else None
    if previous is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)
    hook, sys.unraisablehook = sys.unraisablehook, _unraisable
    try:
        yield
    finally:
        _INTERRUPTED.clear()
        sys.unraisablehook = hook
        if previous is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous)


EPILOG = """\
examples:
  wanmock serve --clock manual                      run the mock server on port 8000
  wanmock contract --provider all --seed 7          check the reference client against every provider
  wanmock drift --provider dashscope --live         compare the real provider with the captured contract
  wanmock serve --help                              every option of one command, with examples
  wanmock --version                                 the installed version

exit codes: 0 success, 1 checks failed / invalid / drift found, 2 usage error, 3 internal error,
130 interrupted (Ctrl-C). Documentation: docs/CLI.md.
"""


# This package's own command, found without reading the installed entry points (importing
# importlib.metadata and scanning every distribution costs ~50 ms of `wanmock serve`'s start-up).
# It is the same as pyproject.toml's entry point (tests/test_cli.py keeps the two the same).
OWN_COMMANDS = {"serve": "wanmock.mockserver.serve:add_parser"}


def wanmock_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wanmock")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout that is not installed
        return "unknown"


class _VersionAction(argparse.Action):
    """``--version``: the installed version, looked up only when asked (start-up stays fast)."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        sys.stdout.write(f"wanmock {wanmock_version()}\n")
        parser.exit()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line; with ``command`` (a word the user typed first), only that command's
    module is imported when it is one of the registered commands, so that ``wanmock serve``
    does not import the contract harness, the recorder and their dependencies."""
    parser = argparse.ArgumentParser(
        prog="wanmock",
        description="Mock servers and contract tests for the Wan 2.7 video-generation APIs "
        "(Modellix, AI/ML API, APIYI, DashScope).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    entries = [_Own(command)] if command in OWN_COMMANDS else registered(command)
    for entry in entries:
        try:
            add_parser = entry.load()
        except ImportError as exc:  # one broken command must not take the others down
            sys.stderr.write(f"wanmock: the {entry.name!r} command is unavailable: {exc}\n")
            continue
        add_parser(commands)
    return parser


def registered(command: str | None = None) -> list[Any]:
    """The ``wanmock.commands`` entry points: only ``command``'s when it is one of them."""
    from importlib.metadata import entry_points

    entries: list[EntryPoint] = sorted(entry_points(group="wanmock.commands"), key=lambda e: e.name)
    if any(entry.name == command for entry in entries):
        entries = [entry for entry in entries if entry.name == command]
    return entries


class _Own:
    """One of OWN_COMMANDS, loaded as its entry point would be."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.value = OWN_COMMANDS[name]

    def load(self) -> Any:
        import importlib

        module, _, function = self.value.partition(":")
        return getattr(importlib.import_module(module), function)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    name = "wanmock"
    try:
        words = list(sys.argv[1:] if argv is None else argv)
        args = build_parser(words[0] if words else None).parse_args(words)
        name = f"wanmock {args.command}"
        with _interrupts():
            code: int = args.handler(args, out, err)
            check_interrupt()  # a Ctrl-C whose exception Python dropped still ends as one
        out.flush()
        return code
    except KeyboardInterrupt:
        err.write(f"\n{name}: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`wanmock schemas | head -1`): stop writing, quietly. Python would
        # complain again when it flushes stdout at exit, so point stdout at /dev/null first.
        with contextlib.suppress(OSError, ValueError):  # ValueError: stdout is not a file (a StringIO)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        if os.environ.get(DEBUG_VARIABLE):
            raise
        err.write(f"{name}: internal error: {type(exc).__name__}: {exc}\n")
        err.write(f"  this is a bug in wanmock; run again with {DEBUG_VARIABLE}=1 for the traceback and report it\n")
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
