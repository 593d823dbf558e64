"""Request-validation throughput: jsonschema alone vs the jsonschema-rs gate the loader uses.

Run:  python benchmarks/validation.py [--seconds 1.0]

Prints validations per second for realistic request bodies: a typical text-to-video body and
an image-to-video body carrying a 1 MB base64 data URI, valid and invalid.
"""

from __future__ import annotations

import argparse
import base64
import os
import time
from collections.abc import Callable
from typing import Any

from wanmock.schemas import catalog


def rate(fn: Callable[[], Any], seconds: float) -> float:
    """Calls per second of ``fn`` measured over about ``seconds``."""
    fn()
    calls, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            fn()
        calls += 50
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = parser.parse_args()
    data_uri = "data:image/png;base64," + base64.b64encode(os.urandom(750_000)).decode()
    bodies: list[tuple[str, str, str, dict[str, Any]]] = [
        (
            "dashscope",
            "t2v",
            "typical t2v body",
            {
                "model": "wan2.7-t2v",
                "input": {
                    "prompt": "A cat running in the moonlight, cinematic, multi-shot. " * 8,
                    "negative_prompt": "blurry, low quality",
                },
                "parameters": {
                    "resolution": "1080P",
                    "ratio": "16:9",
                    "duration": 10,
                    "prompt_extend": True,
                    "watermark": False,
                    "seed": 42,
                },
            },
        ),
        (
            "dashscope",
            "i2v",
            "i2v, 3 media items",
            {
                "model": "wan2.7-i2v",
                "input": {
                    "prompt": "Bring it to life",
                    "media": [
                        {"type": "first_frame", "url": "https://example.com/a.png"},
                        {"type": "last_frame", "url": "https://example.com/b.png"},
                        {"type": "driving_audio", "url": "https://example.com/c.mp3"},
                    ],
                },
                "parameters": {"resolution": "720P", "duration": 5},
            },
        ),
        (
            "modellix",
            "i2v",
            f"i2v, {len(data_uri) / 1e6:.1f} MB data URI",
            {
                "first_frame": data_uri,
                "prompt": "Bring it to life",
                "duration": 5,
            },
        ),
        (
            "dashscope",
            "t2v",
            "invalid t2v (3 errors)",
            {
                "model": "wan2.7-t2v",
                "input": {"prompt": "x"},
                "parameters": {"duration": 16, "resolution": "480P", "seed": -1},
            },
        ),
    ]
    cat = catalog()
    columns = ("jsonschema is_valid", "jsonschema-rs gate", "loader validate()")
    print(f"{'body':<30}" + "".join(f" {c:>20}" for c in columns))
    for provider, kind, label, body in bodies:
        schema = cat.load(provider, "submit", kind)
        ref = rate(lambda s=schema, b=body: s.reference.is_valid(b), args.seconds)
        fast = rate(lambda s=schema, b=body: s.fast.is_valid(b), args.seconds)
        full = rate(lambda p=provider, k=kind, b=body: cat.validate(p, "submit", b, kind=k), args.seconds)
        print(f"{label:<30} {ref:>18,.0f}/s {fast:>18,.0f}/s {full:>18,.0f}/s")


if __name__ == "__main__":
    main()
