"""Result-video rendering cost: encode time and file size per output size, and cached lookups.

Run:  python benchmarks/media.py [--repeat 1] [--lookups 2000]

For 720P (1280x720) and 1080P (1920x1080) at 16:9, 5 s and 15 s, with audio: the time to
render the MP4 with a cold MediaCache, its size in bytes, and the mean time of a cached
``MediaCache.path_for`` for the same spec. Takes well under a minute.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from wanmock.mockserver.media import MediaCache, VideoSpec, probe

SIZES = {"720P": (1280, 720), "1080P": (1920, 1080)}
DURATIONS = (5, 15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=1, help="cold renders per spec (best kept)")
    parser.add_argument("--lookups", type=int, default=2000, help="cached lookups per spec")
    args = parser.parse_args()
    print(f"{'spec':<22} {'render s':>9} {'bytes':>10} {'cached lookup us':>17}  probe")
    for label, (width, height) in SIZES.items():
        for duration in DURATIONS:
            spec = VideoSpec(width, height, duration, audio=True)
            best = float("inf")
            for _ in range(args.repeat):
                with (
                    tempfile.TemporaryDirectory() as directory,
                    MediaCache(Path(directory)) as cache,
                ):
                    start = time.perf_counter()
                    path = cache.path_for(spec)
                    best = min(best, time.perf_counter() - start)
                    size = path.stat().st_size
                    info = probe(path)
                    start = time.perf_counter()
                    for _ in range(args.lookups):
                        cache.path_for(spec)
                    lookup = (time.perf_counter() - start) / args.lookups
            name = f"{label} {width}x{height} {duration}s"
            checked = f"{info['width']}x{info['height']} {info['duration']:.2f}s"
            checked += f" {info['video_codec']}+{info['audio_codec']}"
            print(f"{name:<22} {best:>9.3f} {size:>10,} {lookup * 1e6:>17.1f}  {checked}")


if __name__ == "__main__":
    main()
