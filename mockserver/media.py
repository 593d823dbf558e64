"""Real, playable MP4 results: H.264 video (+ AAC audio) rendered with PyAV, cached, served.

A succeeded mock task's result URL serves a file from :class:`MediaCache`, rendered once per
:class:`VideoSpec` (size, duration, audio) and streamed by :func:`file_response` with HTTP
Range support so browsers and download clients can seek and resume.
"""

from __future__ import annotations

import heapq
import io
import math
import os
import re
import shutil
import tempfile
import threading
import time
import weakref
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypedDict

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.types import Receive, Scope, Send

if TYPE_CHECKING:  # PyAV is imported when a video is first rendered or probed: start-up stays fast
    import av
    from av.audio.stream import AudioStream
    from av.container import OutputContainer
    from av.video.stream import VideoStream

SAMPLE_RATE = 48_000
_AUDIO_FRAME = 1024  # AAC frame size; the tone below repeats exactly every frame
_TONE = array("f", (0.05 * math.sin(2 * math.pi * 10 * k / _AUDIO_FRAME) for k in range(1024)))
_TONE_BYTES = _TONE.tobytes()  # a quiet 468.75 Hz sine, float32 mono
_PALETTE = ((90, 240), (240, 110), (60, 60), (200, 200))  # (Cb, Cr): red, blue, green, magenta
_RENDER_VERSION = 1  # part of cached file names: bump when the rendered content changes


@dataclass(frozen=True)
class VideoSpec:
    """What a result video must look like: pixel size, length in seconds, sound or not."""

    width: int
    height: int
    duration: float
    audio: bool
    fps: int = 8  # a low frame rate keeps encoding fast; still a valid video

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0 or self.width % 2 or self.height % 2:
            raise ValueError(f"width and height must be positive and even: {self!r}")
        if not (self.duration > 0 and math.isfinite(self.duration)) or self.fps <= 0:
            raise ValueError(f"duration and fps must be positive: {self!r}")

    @property
    def filename(self) -> str:
        sound = "audio" if self.audio else "mute"
        return f"v{_RENDER_VERSION}-{self.width}x{self.height}-{self.duration:.3f}s-{self.fps}fps-{sound}.mp4"


class ProbeResult(TypedDict):
    width: int
    height: int
    duration: float
    video_codec: str
    audio: bool
    audio_codec: str | None


_Packets: TypeAlias = "Iterator[tuple[float, list[av.Packet[Any]]]]"  # (seconds, packets)


def _add_video_stream(container: OutputContainer, spec: VideoSpec) -> VideoStream:
    options = {"preset": "ultrafast"}
    try:
        stream = container.add_stream("libx264", rate=spec.fps, options=options)
    except ValueError:  # UnknownCodecError: let FFmpeg pick its default H.264 encoder
        stream = container.add_stream("h264", rate=spec.fps, options=options)
    stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
    stream.gop_size = 2 * spec.fps  # a keyframe every two seconds, so players can seek
    return stream


def _video_packets(stream: VideoStream, spec: VideoSpec) -> _Packets:
    import av

    count = max(1, round(spec.duration * spec.fps))
    bar = max(2, spec.width // 10 // 2 * 2)
    for index in range(count):
        # A bright bar sweeping left to right over a grey field whose tint changes each second.
        frame = av.VideoFrame(spec.width, spec.height, "yuv420p")
        luma, cb, cr = frame.planes
        x = (spec.width - bar) * index // max(1, count - 1)
        row = b"\x50" * x + b"\xeb" * bar + b"\x50" * (luma.line_size - x - bar)
        luma.update(row * spec.height)
        u, v = _PALETTE[index // spec.fps % len(_PALETTE)]
        cb.update(bytes([u]) * cb.buffer_size)
        cr.update(bytes([v]) * cr.buffer_size)
        frame.pts, frame.time_base = index, Fraction(1, spec.fps)
        yield index / spec.fps, stream.encode(frame)
    yield math.inf, stream.encode(None)


def _audio_packets(container: OutputContainer, spec: VideoSpec) -> _Packets:
    stream = container.add_stream("aac", rate=SAMPLE_RATE, options={"aac_coder": "fast"})
    stream.layout = "mono"
    return _tone_packets(stream, spec)


def _tone_packets(stream: AudioStream, spec: VideoSpec) -> _Packets:
    import av

    total = round(spec.duration * SAMPLE_RATE)
    for start in range(0, total, _AUDIO_FRAME):
        samples = min(_AUDIO_FRAME, total - start)
        frame = av.AudioFrame(format="fltp", layout="mono", samples=samples)
        frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, start, Fraction(1, SAMPLE_RATE)
        frame.planes[0].update(_TONE_BYTES[: samples * 4])
        yield start / SAMPLE_RATE, stream.encode(frame)
    yield math.inf, stream.encode(None)


def render_mp4(spec: VideoSpec, target: Path) -> None:
    """Encode ``spec`` as an H.264 (+ AAC) MP4 at ``target``, moov atom first (faststart)."""
    import av

    with av.open(str(target), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        sources = [_video_packets(_add_video_stream(container, spec), spec)]
        if spec.audio:
            sources.append(_audio_packets(container, spec))  # adds its stream now
        # Interleave the streams by time so a progressive download can play as it arrives.
        for _, packets in heapq.merge(*sources, key=lambda item: item[0]):
            container.mux(packets)


def probe(source: str | os.PathLike[str] | bytes) -> ProbeResult:
    """Size, duration and codecs of an MP4, read back with PyAV (a path or the file's bytes)."""
    import av

    handle = io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source)
    with av.open(handle, "r") as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        if container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = max(float((s.duration or 0) * (s.time_base or 0)) for s in container.streams)
        return ProbeResult(
            width=video.codec_context.width,
            height=video.codec_context.height,
            duration=duration,
            video_codec=video.codec_context.name,
            audio=audio is not None,
            audio_codec=audio.codec_context.name if audio is not None else None,
        )


class MediaCache:
    """Rendered MP4s in one directory, keyed by spec, evicted least-recently-used first.

    Safe across threads (one render per spec per cache) and across processes sharing the
    directory (each render goes to a temporary file that ``os.replace`` moves into place;
    renders are byte-identical, so a racing replacement never changes what a reader sees).
    """

    def __init__(self, directory: Path | None = None, max_bytes: int = 512 * 1024 * 1024) -> None:
        self._directory = directory
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
        self._removal: weakref.finalize[Any, Any] | None = None
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._making = threading.Lock()
        self._spec_locks: dict[VideoSpec, threading.Lock] = {}
        self._closed = False

    @property
    def directory(self) -> Path:
        """Where the MP4s are. Without a directory given, a temporary one of the cache's own,
        made when first needed (an app that never renders leaves nothing behind) and removed
        when the cache is closed, collected, or the interpreter exits, whichever comes first
        (an app run without its lifespan, as httpx's ASGITransport runs it, never closes it)."""
        if self._directory is None:
            with self._making:
                if self._directory is None:
                    made = Path(tempfile.mkdtemp(prefix="wanmock-media-"))
                    self._removal = weakref.finalize(self, shutil.rmtree, made, True)
                    self._directory = made
        return self._directory

    def path_for(self, spec: VideoSpec) -> Path:
        """The MP4 for ``spec``, rendered on first use."""
        if self._closed:
            raise RuntimeError("MediaCache is closed")
        path = self.directory / spec.filename
        with self._lock:
            spec_lock = self._spec_locks.setdefault(spec, threading.Lock())
        with spec_lock:
            try:
                os.utime(path, ns=(time.time_ns(), time.time_ns()))  # mark recently used
                return path
            except FileNotFoundError:
                pass
            fd, name = tempfile.mkstemp(dir=self.directory, prefix=".render-", suffix=".part")
            os.close(fd)
            try:
                render_mp4(spec, Path(name))
                os.utime(name, ns=(time.time_ns(), time.time_ns()))
                os.replace(name, path)
            finally:
                Path(name).unlink(missing_ok=True)
        self._evict(keep=path)
        return path

    def _evict(self, keep: Path) -> None:
        with self._lock:
            entries = []
            for entry in os.scandir(self.directory):
                if entry.name.endswith(".mp4"):
                    try:
                        stat = entry.stat()
                    except FileNotFoundError:
                        continue
                    entries.append((stat.st_mtime_ns, entry.name, stat.st_size))
            total = sum(size for _, _, size in entries)
            for _, name, size in sorted(entries):
                if total <= self.max_bytes:
                    break
                if name != keep.name:
                    (self.directory / name).unlink(missing_ok=True)
                    total -= size

    def close(self) -> None:
        """Forget the cache; remove its directory if the cache created it."""
        self._closed = True
        if self._removal is not None:
            self._removal()  # once: the finalizer is then dead

    def __enter__(self) -> MediaCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SINGLE_RANGE = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", re.IGNORECASE)


def _is_single_range(value: str) -> bool:
    """True for one syntactically valid byte range (satisfiable or not)."""
    match = _SINGLE_RANGE.fullmatch(value)
    if match is None:
        return False
    first, last = match.groups()
    return bool(first or last) and not (first and last and int(last) < int(first))


class _FileResponse(FileResponse):
    """Starlette's FileResponse (which does the 206/416 work) minus two of its answers:
    a malformed Range gets 400 there and a multi-range gets multipart/byteranges; here both
    are ignored and the whole file is served with 200, as most static hosts do."""

    ignore_range = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.ignore_range:
            headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"range"]
            scope = {**scope, "headers": headers}
        await super().__call__(scope, receive, send)


def file_response(
    path: Path,
    request: Request,
    *,
    media_type: str = "video/mp4",
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Serve ``path`` with Content-Length, Accept-Ranges and single-range (206/416) support.

    Raises FileNotFoundError now, before any header is sent, if the file is missing.
    """
    response = _FileResponse(path, headers=headers, media_type=media_type, stat_result=path.stat())
    range_header = Headers(scope=request.scope).get("range")
    response.ignore_range = range_header is not None and not _is_single_range(range_header)
    return response
