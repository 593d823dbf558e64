"""`wanmock serve`: run the mock server with uvicorn.

With ``--workers N`` (N > 1) the parent binds the socket (so ``--port 0`` still works) and
uvicorn's supervisor runs N worker processes on it, each building its app with
``app_from_env``: the parsed options travel in the ``WANMOCK_SERVE_OPTIONS`` environment
variable. The workers share the store named by ``--store`` (SQLite or Redis; the memory store
is per process, so it is refused), and through it fault rules, the manual clock and the secret
that signs result URLs.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from wanmock.mockserver.clock import ManualClock, SharedTime, StoredManualClock, SystemClock
from wanmock.mockserver.config import TIMINGS, ServerConfig, all_providers
from wanmock.mockserver.guard import ADMIN_TOKEN_VARIABLE, admin_token, is_loopback, served_origins
from wanmock.mockserver.netguard import PROTOCOL, PROTOCOLS, NetLimits, descriptor_budget
from wanmock.mockserver.scrub import install_access_log_filter, mask_userinfo, url_password, with_password
from wanmock.schemas import catalog

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from wanmock.mockserver.store import TaskStore

STORES = ("memory", "sqlite", "redis", "rediss")
# The event loop: asyncio by default. At full load uvloop answers about as many requests a
# second (polls up to a fifth more), but serves connections unevenly: its p99 is several times
# asyncio's, its slowest requests over ten times (docs/PERFORMANCE.md, "The latency tail").
LOOPS = ("asyncio", "uvloop")
DEFAULT_LOOP = "asyncio"
# Workers on one port: one socket each, bound with SO_REUSEPORT, where the kernel spreads new
# connections over them (Linux). Sharing the parent's socket, the first worker to wake took
# every waiting connection (64 and 0 of 64 in a wrk run).
BALANCED_PORTS = sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")
OPTIONS_VARIABLE = "WANMOCK_SERVE_OPTIONS"
WORKERS_NEED_A_SHARED_STORE = "workers need a shared store: --store sqlite:///... or redis://..."
REDIS_PASSWORD_VARIABLE = "WANMOCK_REDIS_PASSWORD"


def root_providers(providers: tuple[str, ...]) -> list[str]:
    """Those of ``providers`` that are also served at the root when several share the port (the
    manifests' ``root``), in the order given."""
    return [name for name in providers if catalog().provider(name).at_root]


def _listed(names: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else "".join(names)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the mock server",
        description=f"Serve every provider under /<provider>/ ({_listed(root_providers(all_providers()))} also "
        "at the root), or one provider at the root. GET /__admin/health answers 200 when ready.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="the port (default 8000); 0 picks a free one (printed)")
    parser.add_argument(
        "--provider",
        default="all",
        choices=("all", *all_providers()),
        help="one provider at the root, or all (default)",
    )
    parser.add_argument(
        "--timing",
        default="fast",
        choices=TIMINGS,
        help="instant, fast (default: 1 s queued, 3 s running) or realistic",
    )
    parser.add_argument("--seed", type=int, help="make task ids and timings reproducible")
    parser.add_argument("--keys", type=Path, help="a file of accepted API keys, one per line")
    parser.add_argument(
        "--store",
        default="memory",
        help="where tasks, the journal, fault rules and the manual clock live: memory (default, this "
        "process), sqlite:///PATH (survives restarts; shared by workers), redis://HOST:PORT/DB (shared by hosts)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes on one socket (more than 1 needs --store sqlite:///... or redis://...)",
    )
    parser.add_argument(
        "--clock",
        default="system",
        choices=("system", "manual"),
        help="manual: time moves only through POST /__admin/clock/advance",
    )
    parser.add_argument(
        "--max-body-bytes", type=int, default=ServerConfig.max_body_bytes, help="the request size cap (default 32 MiB)"
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=("critical", "error", "warning", "info", "debug"),
        help="uvicorn's log level (default warning)",
    )
    parser.add_argument("--cassette", type=Path, help="replay DIR/cassette.json (from `wanmock record`) instead")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE.toml",
        help="settings from a TOML file: any ServerConfig field (see --list-settings), applied after the options",
    )
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one setting (repeatable), applied after --config: e.g. rate_limits.modellix.rpm=100",
    )
    parser.add_argument(
        "--list-settings", action="store_true", help="print every setting --config and --set accept, and exit"
    )
    parser.add_argument(
        "--loop",
        choices=LOOPS,
        default=DEFAULT_LOOP,
        help=f"the event loop (default {DEFAULT_LOOP}: at full load uvloop answers up to a fifth more polls a "
        "second, but its p99 is several times longer; docs/PERFORMANCE.md)",
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="log one line per request (off by default: it costs time; with --workers also pass --log-level info)",
    )
    security = parser.add_argument_group("security and limits (docs/SECURITY.md)")
    security.add_argument(
        "--admin-token",
        help=f"every /__admin call must send it in X-Wanmock-Admin-Token (default: ${ADMIN_TOKEN_VARIABLE}); "
        "required to bind beyond loopback",
    )
    security.add_argument(
        "--admin-port", type=int, help="serve /__admin only on this port, bound to 127.0.0.1 (0: a free one)"
    )
    security.add_argument(
        "--public-url",
        help="the origin clients reach this server at (result URLs point there; /__admin accepts its Host)",
    )
    security.add_argument(
        "--tasks-per-key",
        action="store_true",
        help="a task is seen only with a key of the account that created it (on when --keys groups keys)",
    )
    security.add_argument(
        "--header-timeout",
        type=float,
        default=NetLimits.header_timeout,
        metavar="SECONDS",
        help="close a connection whose request headers are not complete in this time (default %(default)s)",
    )
    security.add_argument(
        "--body-timeout",
        type=float,
        default=NetLimits.body_timeout,
        metavar="SECONDS",
        help="close a connection whose request body does not arrive in this time (default %(default)s)",
    )
    security.add_argument(
        "--max-connections",
        type=int,
        default=NetLimits.max_connections,
        help="open connections at most (kept below the file-descriptor limit); more are answered 503",
    )
    parser.set_defaults(handler=run)


EPILOG = """\
examples:
  wanmock serve                                          every provider on http://127.0.0.1:8000
  wanmock serve --provider dashscope --port 9000         one provider, at the root
  wanmock serve --port 0 --timing realistic --seed 42 --clock manual --keys keys.txt
  wanmock serve --host 0.0.0.0 --admin-token T --max-body-bytes 1048576 --log-level info --access-log
  wanmock serve --host 0.0.0.0 --admin-port 9001 --public-url http://ci-mock:8000   /__admin on 127.0.0.1
  wanmock serve --keys keys.txt --tasks-per-key          each key sees only its own tasks
  wanmock serve --header-timeout 5 --body-timeout 60 --max-connections 500
  wanmock serve --store sqlite:///wanmock.db --workers 4
  wanmock serve --loop uvloop                            more polls a second at full load, a longer tail
  wanmock serve --cassette recordings/dashscope --clock manual
  wanmock serve --config wanmock.toml --set timing=instant --set rate_limits.modellix.rpm=100
  wanmock serve --list-settings                          every setting of --config and --set

Ctrl-C stops the server (exit 130). Documentation: docs/MOCK_SERVER.md.
"""


class OneLineDrops(logging.Filter):
    """A connection a ``drop`` fault rule broke is logged as one line, not as uvicorn's
    "Exception in ASGI application" with a 30-line traceback: it is what the user asked for."""

    def filter(self, record: logging.LogRecord) -> bool:
        from wanmock.mockserver.http import ConnectionDropped

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ConnectionDropped):
            record.msg, record.args = "connection dropped by a fault rule (%s)", (str(error),)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


def quiet_drops() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, OneLineDrops) for f in logger.filters):
        logger.addFilter(OneLineDrops())


def read_keys(path: Path) -> frozenset[str]:
    return read_accounts(path)[0]


def read_accounts(path: Path) -> tuple[frozenset[str], dict[str, str]]:
    """A keys file: one key a line, or ``ACCOUNT KEY`` to group keys into accounts (each
    account then sees only its own tasks). ``#`` starts a comment line."""
    keys: set[str] = set()
    accounts: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        words = line.split()
        if not words or line.lstrip().startswith("#"):
            continue
        if len(words) > 2:
            raise ValueError(f"{path}, line {number}: a line is KEY or ACCOUNT KEY")
        keys.add(words[-1])
        if len(words) == 2:
            accounts[words[1]] = words[0]
    if not keys:
        raise ValueError(f"{path} lists no key")
    return frozenset(keys), accounts


def store_url(url: str) -> str:
    """The --store URL, with the Redis password from $WANMOCK_REDIS_PASSWORD when it names none
    (so the password need not be on the command line)."""
    password = os.environ.get(REDIS_PASSWORD_VARIABLE)
    if password and url.partition("://")[0] in ("redis", "rediss") and url_password(url) is None:
        return with_password(url, password)
    return url


def net_limits(args: argparse.Namespace) -> NetLimits:
    default = NetLimits()
    return NetLimits(
        header_timeout=getattr(args, "header_timeout", default.header_timeout),
        body_timeout=getattr(args, "body_timeout", default.body_timeout),
        body_idle_timeout=min(default.body_idle_timeout, getattr(args, "body_timeout", default.body_timeout)),
        max_connections=descriptor_budget(getattr(args, "max_connections", default.max_connections)),
    )


def uvicorn_config(app: Any, args: argparse.Namespace, *, taskless: bool = False, **extra: Any) -> Any:
    """uvicorn's Config with wanmock's connection limits (wanmock.mockserver.netguard); with
    ``taskless``, requests run without a task each (for an app whose code that needs a task
    enters one first: create_app's)."""
    import uvicorn

    limits = net_limits(args)
    stack = http_stack(args)
    stack["http"] = PROTOCOLS.get(stack.get("http", "h11"), PROTOCOL)  # the same parser, guarded
    config = uvicorn.Config(
        app,
        log_level=args.log_level,
        lifespan="on",
        limit_concurrency=limits.max_connections,
        backlog=min(2048, limits.max_connections),
        **stack,
        **extra,
    )
    config.wanmock_limits = limits  # type: ignore[attr-defined]  # read by the guarded protocols
    config.wanmock_taskless = taskless  # type: ignore[attr-defined]
    return config


def mock_config(app: Any, args: argparse.Namespace) -> Any:
    """uvicorn's Config for the mock's own app (create_app's): without a task per request on the
    memory store, whose requests seldom wait; a shared store's always do (a trip to the store's
    thread), so they keep uvicorn's task each."""
    return uvicorn_config(app, args, taskless=app.state.wanmock.io.direct)


def config_from(args: argparse.Namespace) -> ServerConfig:
    """The configuration the options describe, then ``--config FILE`` and each ``--set`` applied."""
    config = _options_config(args)
    if getattr(args, "config", None) is None and not getattr(args, "settings", None):
        return config  # the settings reader (and TOML) only when asked
    from wanmock.mockserver import settings

    values: dict[str, Any] = {}
    if getattr(args, "config", None) is not None:
        values.update(settings.read_file(args.config))
    for assignment in getattr(args, "settings", None) or []:
        key, value = settings.parse_assignment(assignment)
        values[key] = value
    return settings.apply(config, values) if values else config


def _options_config(args: argparse.Namespace) -> ServerConfig:
    store = args.store.partition("://")[0].partition("?")[0]
    if store not in STORES:
        raise ValueError(f"unsupported --store {args.store!r}; supported: memory, sqlite:///PATH, redis://HOST:PORT/DB")
    keys, accounts = read_accounts(args.keys) if args.keys else (None, {})
    origins = getattr(args, "served_origins", None)
    return ServerConfig(
        providers=all_providers() if args.provider == "all" else (args.provider,),
        timing=args.timing,
        seed=args.seed,
        keys=keys,
        clock=ManualClock() if args.clock == "manual" else SystemClock(),
        max_body_bytes=args.max_body_bytes,
        admin_token=admin_token(getattr(args, "admin_token", None)),
        origins=tuple(origins) if origins else None,
        public_url=getattr(args, "public_url", None),
        admin_port=getattr(args, "admin_port_bound", None),
        accounts=accounts,
        tasks_per_key=bool(accounts) or getattr(args, "tasks_per_key", False),
    )


def listen(host: str, port: int, *, shared_port: bool = False) -> socket.socket:
    """A bound TCP socket. Created with IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted
    connections only for such sockets, and without it keep-alive answers wait ~40 ms for a
    delayed ACK (Nagle). ``shared_port``: with SO_REUSEPORT where the kernel balances
    connections over the sockets of one port (Linux), so that each worker can listen on a socket
    of its own (``own_listening_sockets``)."""
    shared = shared_port and BALANCED_PORTS
    if shared:  # first without SO_REUSEPORT: a port another server listens on (even one with
        # SO_REUSEPORT, such as another `wanmock serve --workers`) is refused, never shared
        probe = _bound(host, port)
        port = probe.getsockname()[1]
        probe.close()
    return _bound(host, port, reuse_port=shared)


def _bound(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def encode_options(args: argparse.Namespace) -> str:
    """The parsed options as JSON for the workers (paths marked; the handler left out). An
    option of any other type fails here, at startup, rather than vanish in the workers."""

    def encode(value: Any) -> Any:
        if isinstance(value, Path):
            return {"__path__": str(value)}
        raise TypeError(f"cannot pass {value!r} to a worker")

    return json.dumps({k: v for k, v in vars(args).items() if not callable(v)}, default=encode)


def decode_options(text: str) -> argparse.Namespace:
    def decode(value: dict[str, Any]) -> Any:
        return Path(value["__path__"]) if set(value) == {"__path__"} else value

    return argparse.Namespace(**json.loads(text, object_hook=decode))


def build_app(args: argparse.Namespace, store: TaskStore | None = None) -> Starlette:
    """The app ``args`` describe, on ``store`` (opened from ``--store`` when not given). With a
    shared store, ``--clock manual`` keeps its "now" in the store (StoredManualClock)."""
    from wanmock.mockserver.app import create_app
    from wanmock.mockserver.store import store_from_url

    config = config_from(args)
    store = store if store is not None else store_from_url(store_url(args.store))
    if isinstance(store, SharedTime) and isinstance(config.clock, ManualClock):
        config.clock = StoredManualClock(store)
    media_dir = getattr(args, "media_dir", None)
    if media_dir is not None:
        config.media_dir = Path(media_dir)
    return create_app(config, store)


def own_listening_sockets() -> None:
    """In a worker: before uvicorn listens on the sockets the parent bound, each bound with
    SO_REUSEPORT is replaced (same descriptor number) by a socket of this worker's own on the
    same address, so the kernel balances connections over the workers."""
    import uvicorn

    startup = uvicorn.Server.startup
    if getattr(startup, "wanmock_own_sockets", False):
        return

    async def startup_on_own_sockets(self: Any, sockets: list[socket.socket] | None = None) -> None:
        for sock in sockets or ():
            if BALANCED_PORTS and sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT):
                host, port = sock.getsockname()[:2]
                own = _bound(host, port, reuse_port=True)
                os.dup2(own.fileno(), sock.fileno())
                own.close()
        await startup(self, sockets=sockets)

    startup_on_own_sockets.wanmock_own_sockets = True  # type: ignore[attr-defined]
    uvicorn.Server.startup = startup_on_own_sockets  # type: ignore[method-assign]


def app_from_env() -> Starlette:
    """uvicorn's app factory for each worker of ``wanmock serve --workers N``."""
    quiet_drops()
    own_listening_sockets()
    text = os.environ.get(OPTIONS_VARIABLE)
    if text is None:
        raise RuntimeError(f"{OPTIONS_VARIABLE} is not set: start workers through `wanmock serve --workers N`")
    args = decode_options(text)
    install_access_log_filter([admin_token(getattr(args, "admin_token", None))])
    return build_app(args)


def exposure_problem(args: argparse.Namespace) -> str | None:
    """Why the control plane would be reachable beyond this host without a token (None: fine)."""
    if is_loopback(args.host) or admin_token(getattr(args, "admin_token", None)):
        return None
    if getattr(args, "admin_port", None) is not None:
        return None  # /__admin is then on 127.0.0.1 only
    return (
        f"--host {args.host} would expose the control plane (/__admin: reset, fault rules, the journal) "
        f"beyond this machine; pass --admin-token TOKEN (or set {ADMIN_TOKEN_VARIABLE}), or keep /__admin "
        "on 127.0.0.1 with --admin-port PORT"
    )


def http_stack(args: argparse.Namespace) -> dict[str, Any]:
    """uvicorn's options for the HTTP stack: the event loop ``--loop`` names (asyncio unless
    asked), the httptools parser where installed (a default dependency), h11 otherwise; the
    access log only when asked. ``--loop uvloop`` without uvloop installed is a ValueError."""
    loop = getattr(args, "loop", DEFAULT_LOOP)
    if loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise ValueError("--loop uvloop: uvloop is not installed (pip install uvloop; it does not run on Windows)")
    stack: dict[str, Any] = {"access_log": bool(getattr(args, "access_log", False)), "loop": loop}
    if importlib.util.find_spec("httptools") is not None:
        stack["http"] = "httptools"
    return stack


def show_access_log(args: argparse.Namespace) -> None:
    """With --access-log, the access lines show whatever --log-level is (uvicorn logs them at info)."""
    if getattr(args, "access_log", False):
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import uvicorn
    from wanmock.mockserver.app import base_urls
    from wanmock.mockserver.store import StoreError, store_from_url

    quiet_drops()
    if getattr(args, "list_settings", False):
        from wanmock.mockserver.settings import markdown_table

        out.write(markdown_table())
        return 0
    try:
        config = config_from(args)
        replay = None
        if args.cassette is not None:  # the replay's machinery only when a cassette is served
            from wanmock.mockserver.replay import create_replay_app

            replay = create_replay_app(args.cassette, config.clock)
    except (OSError, ValueError) as exc:
        err.write(f"wanmock serve: {exc}\n")
        return 2
    if args.workers < 1 or (args.workers > 1 and args.cassette is not None):
        err.write("wanmock serve: --workers must be at least 1, and --cassette replays in one process\n")
        return 2
    if args.workers > 1 and args.store.partition("://")[0].partition("?")[0] == "memory":
        err.write(f"wanmock serve: {WORKERS_NEED_A_SHARED_STORE}\n")
        return 2
    problem = exposure_problem(args)
    if problem is not None:
        err.write(f"wanmock serve: {problem}\n")
        return 2
    try:
        http_stack(args)
    except ValueError as exc:
        err.write(f"wanmock serve: {exc}\n")
        return 2
    if args.header_timeout <= 0 or args.body_timeout <= 0 or args.max_connections < 1:
        err.write("wanmock serve: --header-timeout and --body-timeout must be positive, --max-connections >= 1\n")
        return 2
    try:
        store = store_from_url(store_url(args.store))
    except StoreError as exc:
        err.write(f"wanmock serve: {mask_userinfo(str(exc))}\n")
        return 2
    try:
        sock = listen(args.host, args.port, shared_port=args.workers > 1)
    except OSError as exc:
        store.close()
        err.write(f"wanmock serve: cannot listen on {args.host}:{args.port}: {exc.strerror}\n")
        return 2
    sockets = [sock]
    if getattr(args, "admin_port", None) is not None:
        try:
            admin_sock = listen("127.0.0.1", args.admin_port, shared_port=args.workers > 1)
        except OSError as exc:
            sock.close()
            store.close()
            err.write(f"wanmock serve: cannot listen on 127.0.0.1:{args.admin_port}: {exc.strerror}\n")
            return 2
        args.admin_port_bound = admin_sock.getsockname()[1]
        sockets.append(admin_sock)
    family = sock.family
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    origin = f"http://{shown}:{port}"
    args.served_origins = list(served_origins(host, port, getattr(args, "public_url", None)))
    if getattr(args, "admin_port_bound", None) is not None:
        args.served_origins += list(served_origins("127.0.0.1", args.admin_port_bound))
    config = config_from(args)
    install_access_log_filter([config.admin_token])
    if replay is not None:  # --cassette: the recorded answers, replayed on the clock
        store.close()  # a replay keeps no tasks in it
        out.write(replay.state.replay.banner(origin))
        out.flush()
        replaying = uvicorn_config(replay, args)
        show_access_log(args)
        uvicorn.Server(replaying).run(sockets=sockets)
        return 0
    out.write(f"wanmock serving {', '.join(config.providers)} ({config.timing} timing) on {origin}\n")
    for provider, url in base_urls(config, origin).items():
        out.write(f"  {provider:<10} {url}\n")
    at_root = root_providers(config.providers)
    if len(config.providers) > 1 and at_root:
        out.write(f"  ({_listed(at_root)} also at {origin}/)\n")
    admin_origin = f"http://127.0.0.1:{args.admin_port_bound}" if config.admin_port is not None else origin
    guarded = " (admin token required)" if config.admin_token else ""
    out.write(f"  control    {admin_origin}/__admin/health{guarded}\n")
    out.write(f"  dashboard  {admin_origin}/__admin/ui/{' (#token=... in the URL)' if guarded else ''}\n")
    if args.workers > 1:
        out.write(f"  ({args.workers} workers sharing {mask_userinfo(args.store)})\n")
    out.flush()
    if args.workers > 1:
        return run_workers(args, store, sockets)
    try:
        server = uvicorn.Server(mock_config(build_app(args, store), args))
        show_access_log(args)
        server.run(sockets=sockets)
    finally:
        store.close()
    return 0


def run_workers(args: argparse.Namespace, store: TaskStore, sockets: list[socket.socket]) -> int:
    """uvicorn's supervisor with ``args.workers`` processes on ``sock``; they share ``--store``
    (its schema is ready: the parent opened it) and one directory of rendered MP4s."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    store.close()
    media_dir = tempfile.mkdtemp(prefix="wanmock-media-")
    os.environ[OPTIONS_VARIABLE] = encode_options(argparse.Namespace(**vars(args), media_dir=media_dir))
    config = uvicorn_config("wanmock.mockserver.serve:app_from_env", args, factory=True, workers=args.workers)
    supervisor: Any = Multiprocess
    import inspect

    if "target" in inspect.signature(Multiprocess).parameters:  # older uvicorn wants the worker's target
        supervisor = functools.partial(supervisor, target=uvicorn.Server(config).run)
    try:
        supervisor(config, sockets=sockets).run()
    finally:
        for sock in sockets:
            sock.close()
        shutil.rmtree(media_dir, ignore_errors=True)
    return 0
