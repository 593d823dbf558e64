"""Every ``ServerConfig`` setting, by name, for ``wanmock serve --config FILE.toml`` and ``--set``.

The settings are read from the dataclasses themselves (``ServerConfig``, its ``Options`` and
``RateLimit``), so a field added there is settable and listed without touching this module.
A setting's name is its field name; ``Options`` fields are also reachable without the
``options.`` prefix, and a rate limit is ``rate_limits.<provider>.rpm`` / ``.concurrency``::

    # wanmock.toml
    timing = "realistic"
    seed = 42
    keys = ["test-key", "other-key"]
    [options]
    modellix_tasks_per_key = true
    retention_seconds = {modellix = 604800}
    [rate_limits.dashscope]
    rpm = 100

``wanmock serve --set timing=realistic --set rate_limits.modellix.rpm=100`` does the same on the
command line; the value is read as a TOML value (``true``, ``42``, ``"text"``, ``["a", "b"]``) and
as a plain string when it is not one. What each setting means comes from the comment above (or
beside) its field; ``wanmock serve --list-settings`` prints the table docs/MOCK_SERVER.md shows.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wanmock.mockserver.clock import ManualClock, SystemClock
from wanmock.mockserver.config import Options, RateLimit, ServerConfig

# Fields that are objects, not values: the clock is chosen by name; the options and rate limits
# are reached through their own settings.
NOT_A_VALUE = {"options", "rate_limits"}


class SettingError(ValueError):
    """A setting that does not exist or a value of the wrong type (a usage error)."""


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str  # "timing", "options.i2v_ratio", "rate_limits.<provider>.rpm"
    kind: str  # the type, as written in the dataclass
    default: str
    help: str


def _comments(cls: type) -> dict[str, str]:
    """The comment above each field of ``cls`` (or beside it), read from its source."""
    lines = textwrap.dedent(inspect.getsource(cls)).splitlines()
    found: dict[str, str] = {}
    previous = ""
    for node in ast.parse("\n".join(lines)).body[0].body:  # type: ignore[attr-defined]
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        line = lines[node.lineno - 1]
        beside = line.partition("  # ")[2].strip()
        above: list[str] = []
        index = node.lineno - 2
        while index >= 0 and lines[index].strip().startswith("#"):
            above.insert(0, lines[index].strip().lstrip("#").strip())
            index -= 1
        # A field right below another, with no comment of its own, shares the comment of the group.
        grouped = index == node.lineno - 2 and index >= 0 and lines[index].startswith("    ") and ":" in lines[index]
        found[node.target.id] = " ".join(above) or beside or (previous if grouped else "")
        previous = found[node.target.id]
    return found


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _show(value: Any) -> str:
    if isinstance(value, SystemClock):
        return "system"
    if isinstance(value, tuple | frozenset):
        return ", ".join(sorted(map(str, value))) or "—"
    if value is None or value == {}:
        return "—"
    return str(value)


def _kind(hint: Any) -> str:
    text = getattr(hint, "__name__", None) if not typing.get_args(hint) else None
    return text or str(hint).replace("typing.", "").replace("wanmock.mockserver.config.", "")


def settings() -> list[Setting]:
    """Every setting, in the order of the dataclasses."""
    found: list[Setting] = []
    hints, comments = _hints(ServerConfig), _comments(ServerConfig)
    for f in dataclasses.fields(ServerConfig):
        if f.name in NOT_A_VALUE:
            continue
        kind = "system | manual" if f.name == "clock" else _kind(hints[f.name])
        found.append(Setting(f.name, kind, _show(_default(f)), comments.get(f.name, "")))
    hints, comments = _hints(Options), _comments(Options)
    for f in dataclasses.fields(Options):
        found.append(Setting(f"options.{f.name}", _kind(hints[f.name]), _show(_default(f)), comments.get(f.name, "")))
    for f in dataclasses.fields(RateLimit):
        found.append(
            Setting(
                f"rate_limits.<provider>.{f.name}",
                _kind(_hints(RateLimit)[f.name]),
                "—",
                _comments(RateLimit).get(f.name) or (RateLimit.__doc__ or "").strip(),
            )
        )
    return found


def markdown_table() -> str:
    """The settings as the Markdown table docs/MOCK_SERVER.md shows."""
    rows = ["| setting | type | default | meaning |", "|---|---|---|---|"]
    for s in settings():
        cells = [f"`{s.name}`", f"`{s.kind}`".replace("|", "\\|"), f"`{s.default}`" if s.default != "—" else "—"]
        rows.append("| " + " | ".join([*cells, s.help.replace("|", "\\|") or "—"]) + " |")
    return "\n".join(rows) + "\n"


# -- reading values ---------------------------------------------------------------------------------


def parse_assignment(text: str) -> tuple[str, Any]:
    """``key=value`` from ``--set``: the value as TOML, or the plain string when it is not TOML."""
    key, equals, raw = text.partition("=")
    if not equals or not key.strip():
        raise SettingError(f"--set needs key=value, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value


def read_file(path: Path) -> dict[str, Any]:
    """The settings of a TOML file, flattened to dotted names."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingError(f"{path} is not TOML: {exc}") from exc
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key == "options" and isinstance(value, dict):
            flat.update({f"options.{k}": v for k, v in value.items()})
        elif key == "rate_limits" and isinstance(value, dict):
            for provider, limits in value.items():
                if not isinstance(limits, dict):
                    raise SettingError(f"{path}: rate_limits.{provider} must be a table of rpm and concurrency")
                flat.update({f"rate_limits.{provider}.{k}": v for k, v in limits.items()})
        else:
            flat[key] = value
    return flat


def _convert(name: str, hint: Any, value: Any) -> Any:
    """``value`` (from TOML) as the field's type, or SettingError saying what was expected."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None or (isinstance(value, str) and value.lower() == "none" and type(None) in args):
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(name, arg, value)
            except SettingError as exc:
                errors.append(str(exc))
        raise SettingError(errors[0] if errors else f"{name}: cannot be {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif hint is Path:
        if isinstance(value, str):
            return Path(value)
    elif origin in (tuple, frozenset):
        items = [value] if isinstance(value, str) else value
        if isinstance(items, list) and all(isinstance(i, str) for i in items):
            return tuple(items) if origin is tuple else frozenset(items)
    elif origin is dict:
        if isinstance(value, dict):
            return {str(k): _convert(f"{name}.{k}", args[1], v) for k, v in value.items()}
    else:
        return value
    raise SettingError(f"{name} must be {_kind(hint)}, not {value!r}")


def apply(config: ServerConfig, values: Mapping[str, Any]) -> ServerConfig:
    """A copy of ``config`` with ``values`` (dotted names) set; validated by ServerConfig itself."""
    fields: dict[str, Any] = {}
    options: dict[str, Any] = {}
    rate_limits = dict(config.rate_limits)
    server_hints, option_hints = _hints(ServerConfig), _hints(Options)
    for name, value in values.items():
        parts = name.split(".")
        if parts[0] == "rate_limits" and len(parts) == 3 and parts[2] in _hints(RateLimit):
            current = rate_limits.get(parts[1], RateLimit())
            converted = _convert(name, _hints(RateLimit)[parts[2]], value)
            rate_limits[parts[1]] = dataclasses.replace(current, **{parts[2]: converted})
        elif name == "clock":
            if value not in ("system", "manual"):
                raise SettingError(f"clock must be system or manual, not {value!r}")
            fields["clock"] = ManualClock() if value == "manual" else SystemClock()
        elif len(parts) == 1 and parts[0] in server_hints and parts[0] not in NOT_A_VALUE:
            fields[name] = _convert(name, server_hints[name], value)
        elif (len(parts) == 2 and parts[0] == "options" and parts[1] in option_hints) or (
            len(parts) == 1 and parts[0] in option_hints
        ):
            options[parts[-1]] = _convert(name, option_hints[parts[-1]], value)
        else:
            known = ", ".join(s.name for s in settings())
            raise SettingError(f"unknown setting {name!r}; known: {known}")
    if rate_limits != config.rate_limits:
        fields["rate_limits"] = rate_limits
    if options:
        fields["options"] = dataclasses.replace(config.options, **options)
    try:
        return dataclasses.replace(config, **fields)
    except (TypeError, ValueError) as exc:
        raise SettingError(str(exc)) from exc
