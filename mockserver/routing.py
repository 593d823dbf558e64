"""Match a request to a manifest endpoint: a pure router, strict by default.

Path templates come from each provider's manifest: ``{task_id}`` matches one segment,
``{model}`` a model id that may contain ``/``. Nothing else matches: an unmatched path is a
404 and a known path with the wrong method a 405, both in the provider's own shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import chain
from typing import Any

from wanmock.schemas import Endpoint, Provider

PLACEHOLDERS = {"task_id": r"[^/]+", "model": r"[^?#]+?"}


@dataclass(frozen=True)
class Route:
    endpoint: Endpoint
    template: str
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class Match:
    endpoint: Endpoint
    params: dict[str, str]


@dataclass(frozen=True)
class WrongMethod:
    allowed: tuple[str, ...]


def compile_template(template: str) -> re.Pattern[str]:
    out, pos = "", 0
    for found in re.finditer(r"\{(\w+)\}", template):
        out += re.escape(template[pos : found.start()])
        out += f"(?P<{found.group(1)}>{PLACEHOLDERS[found.group(1)]})"
        pos = found.end()
    return re.compile("^" + out + re.escape(template[pos:]) + "$")


MATCHES_KEPT = 4096  # (method, path) matches a router remembers: a client polls one path many times
PATH_KEPT = 256  # a longer path is matched every time, never kept


class Router:
    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.routes = [
            Route(endpoint, template, compile_template(template))
            for endpoint in provider.endpoints.values()
            for template in endpoint.paths
        ]
        # A submit path such as /api/v1/{model}/async must win over /api/v1/{model}.
        self.routes.sort(key=lambda r: -len(r.template))
        # (method, path) -> (route index, name, value, name, value...): flat tuples of strings,
        # which the collector stops tracking, however many paths are kept
        self._seen: dict[tuple[str, str], tuple[Any, ...]] = {}

    def match(self, method: str, path: str) -> Match | WrongMethod | None:
        kept = self._seen.get((method, path))
        if kept is not None:
            endpoint = self.routes[kept[0]].endpoint
            if len(kept) == 3:  # one placeholder: most paths
                return Match(endpoint, {kept[1]: kept[2]})
            return Match(endpoint, dict(zip(kept[1::2], kept[2::2], strict=True)))
        allowed: list[str] = []
        for index, route in enumerate(self.routes):
            found = route.pattern.match(path)
            if found is None:
                continue
            if route.endpoint.method == method or (method == "HEAD" and route.endpoint.method == "GET"):
                params = found.groupdict()
                if len(path) <= PATH_KEPT:
                    if len(self._seen) >= MATCHES_KEPT:
                        self._seen.clear()
                    self._seen[(method, path)] = (index, *chain.from_iterable(params.items()))
                return Match(route.endpoint, params)
            allowed.append(route.endpoint.method)
        return WrongMethod(tuple(sorted(set(allowed)))) if allowed else None

    def claims(self, path: str) -> bool:
        """Whether any of this provider's templates matches ``path`` (for root dispatch)."""
        return any(r.pattern.match(path) for r in self.routes)
