"""The cassette format: what ``wanmock record`` writes and ``wanmock serve --cassette`` replays.

A cassette is one file, ``DIR/cassette.json``::

    {
      "provider": "dashscope",
      "recorded_at": "2026-05-01T12:00:00Z",          # UTC, when the recording ended
      "wanmock_version": "0.1.0",
      "cassette_version": 1,
      "base_url": "https://dashscope.aliyuncs.com",   # what request paths are relative to
      "interactions": [                               # every exchange, in the order sent
        {
          "request": {"method": "POST", "path": "/api/v1/services/...",   # relative to base_url
                      "query": {"name": "value"}, "headers": {...}, "body": {...} | "text" | null},
          "response": {"status": 200, "headers": {...}, "body": {...} | "text" | null},
          "elapsed": 12.5,      # seconds since the submit of its task (0 for the submit itself);
                                # for an exchange with no recorded task, since the recording began
          "task_id": "..." | null,                    # the task a submit created or a poll named
          "endpoint": "submit" | "poll" | "other",
          "probe": "refused-key" | "invalid-body" | "unknown-task" | "paid"
        }
      ],
      "tasks": {"<task id>": {"kind": "t2v", "submit": 3, "polls": [4, 5, 6]}}
    }

``tasks`` holds each task a submit created (a 200 answer with a task id): the index of its
submit interaction and the indexes of its polls in the order sent, so ``polls`` read with their
``elapsed`` is the ordered sequence of answers the provider gave over the task's life (retried
polls included). ``probe`` says why an exchange was sent. An exchange that got no answer (a
transport error) is not kept. Secrets are written as ``<redacted>`` (see the recorder).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wanmock.schemas import catalog

CASSETTE_FILE = "cassette.json"
CASSETTE_VERSION = 1
REDACTED = "<redacted>"


def write_cassette(directory: Path, cassette: Mapping[str, Any]) -> Path:
    """Write ``DIR/cassette.json`` whole or not at all (a temporary file renamed over it), so a
    recording interrupted between two exchanges (``wanmock record`` writes after each) stays readable."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CASSETTE_FILE
    partial = directory / (CASSETTE_FILE + ".partial")
    partial.write_text(json.dumps(cassette, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return path


class Cassette:
    """A cassette file, read and indexed: tasks by kind, the recorded probe answers.

    Raises OSError or ValueError when ``directory/cassette.json`` cannot be read."""

    def __init__(self, directory: Path) -> None:
        path = directory / CASSETTE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not JSON: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("interactions"), list):
            raise ValueError(f"{path} is not a wanmock cassette (no interactions)")
        if data.get("provider") not in catalog().providers:
            raise ValueError(f"{path}: unknown provider {data.get('provider')!r}")
        self.path = path
        self.provider: str = data["provider"]
        self.base_url = str(data.get("base_url") or catalog().provider(self.provider).base_url).rstrip("/")
        self.interactions: list[dict[str, Any]] = data["interactions"]
        self.tasks: dict[str, dict[str, Any]] = dict(data.get("tasks") or {})
        self.by_kind: dict[str, list[str]] = {}
        for task_id, task in sorted(self.tasks.items(), key=lambda item: int(item[1]["submit"])):
            if self.answers(task_id):
                self.by_kind.setdefault(str(task["kind"]), []).append(task_id)
        self.refused = self.probe("refused-key")
        self.invalid = self.probe("invalid-body")
        self.unknown = next(
            (
                (str(i["task_id"]), i["response"])
                for i in self.interactions
                if i.get("endpoint") == "poll" and i.get("response") and i.get("task_id") not in self.tasks
            ),
            None,
        )

    def probe(self, label: str) -> Mapping[str, Any] | None:
        """The recorded refusal of the free probe ``label`` (an answer with status >= 400)."""
        found = (i["response"] for i in self.interactions if i.get("probe") == label and i.get("response"))
        return next((r for r in found if int(r["status"]) >= 400), None)

    def answers(self, task_id: str) -> list[tuple[float, Mapping[str, Any]]]:
        """(elapsed, recorded response) of each poll of a recorded task, in the order sent."""
        picked = (self.interactions[i] for i in self.tasks[task_id]["polls"])
        return [(float(i["elapsed"]), i["response"]) for i in picked if i.get("response")]

    def submission(self, task_id: str) -> Mapping[str, Any]:
        """The submit interaction that created a recorded task."""
        return self.interactions[int(self.tasks[task_id]["submit"])]
