"""wanmock.mockserver.media: real MP4s (size, duration, audio), the render cache, and Range serving."""

from __future__ import annotations

import asyncio
import gc
import os
import tempfile
import threading
from pathlib import Path

import av
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message
from wanmock.mockserver import media
from wanmock.mockserver.media import MediaCache, VideoSpec, file_response, probe, render_mp4

# ---------------------------------------------------------------------------------------------
# Rendering and probing


@pytest.mark.parametrize(
    "spec",
    [
        VideoSpec(320, 240, 2, audio=True),
        VideoSpec(1104, 832, 3, audio=False),
        VideoSpec(720, 1280, 2, audio=True),
        VideoSpec(320, 240, 5.02, audio=True),
        VideoSpec(320, 240, 1.3, audio=False, fps=4),
    ],
    ids=str,
)
def test_rendered_mp4_has_the_requested_size_duration_and_audio(spec: VideoSpec, tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    render_mp4(spec, target)
    info = probe(target)
    assert (info["width"], info["height"]) == (spec.width, spec.height)
    assert info["video_codec"] == "h264"
    assert abs(info["duration"] - spec.duration) <= 1 / spec.fps
    assert info["audio"] is spec.audio
    assert info["audio_codec"] == ("aac" if spec.audio else None)


def test_rendered_mp4_is_faststart_decodable_and_moving(tmp_path: Path) -> None:
    spec = VideoSpec(320, 240, 2, audio=True)
    target = tmp_path / "out.mp4"
    render_mp4(spec, target)
    data = target.read_bytes()
    assert data[4:8] == b"ftyp"
    assert 0 < data.index(b"moov") < data.index(b"mdat")  # moov first: browsers can stream
    with av.open(str(target)) as container:
        video = container.streams.video[0]
        assert video.codec_context.pix_fmt == "yuv420p"
        lumas = [bytes(frame.planes[0]) for frame in container.decode(video)]
    assert len(lumas) == round(spec.duration * spec.fps)
    assert len(set(lumas)) == len(lumas)  # every frame differs: the picture moves
    with av.open(str(target)) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.sample_rate in (44_100, 48_000)
        assert sum(frame.samples for frame in container.decode(audio)) >= 2 * 44_100


def test_rendering_is_deterministic(tmp_path: Path) -> None:
    """Byte-identical output: a file replaced by another process's render of the same spec
    never changes under a reader (same size, same bytes)."""
    spec = VideoSpec(320, 240, 2, audio=True)
    render_mp4(spec, tmp_path / "a.mp4")
    render_mp4(spec, tmp_path / "b.mp4")
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def test_probe_reads_bytes_as_well_as_paths(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    render_mp4(VideoSpec(160, 120, 1, audio=False), target)
    assert probe(target.read_bytes()) == probe(target) == probe(str(target))


@pytest.mark.parametrize(
    ("width", "height", "duration", "fps"),
    [(321, 240, 2, 8), (320, 0, 2, 8), (320, 240, 0, 8), (320, 240, float("nan"), 8), (2, 2, 1, 0)],
)
def test_video_spec_rejects_unencodable_values(width: int, height: int, duration: float, fps: int) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        VideoSpec(width, height, duration, audio=False, fps=fps)


# ---------------------------------------------------------------------------------------------
# MediaCache


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[VideoSpec]:
    """Counts real renders made through MediaCache."""
    calls: list[VideoSpec] = []
    real = media.render_mp4

    def counting(spec: VideoSpec, target: Path) -> None:
        calls.append(spec)
        real(spec, target)

    monkeypatch.setattr(media, "render_mp4", counting)
    return calls


@pytest.fixture
def fake_renders(monkeypatch: pytest.MonkeyPatch) -> list[VideoSpec]:
    """Replaces rendering with writing 1000 bytes, so sizes are exact and tests fast."""
    calls: list[VideoSpec] = []

    def fake(spec: VideoSpec, target: Path) -> None:
        calls.append(spec)
        target.write_bytes(bytes(1000))

    monkeypatch.setattr(media, "render_mp4", fake)
    return calls


def _spec(seconds: int) -> VideoSpec:
    return VideoSpec(64, 64, seconds, audio=False)


def test_cache_renders_each_spec_once(tmp_path: Path, renders: list[VideoSpec]) -> None:
    spec = VideoSpec(160, 120, 1, audio=True)
    with MediaCache(tmp_path) as cache:
        first = cache.path_for(spec)
        second = cache.path_for(spec)
        other = cache.path_for(VideoSpec(160, 120, 1, audio=False))
    assert first == second != other
    assert first.parent == tmp_path
    assert renders == [spec, VideoSpec(160, 120, 1, audio=False)]
    assert probe(first)["audio"]
    assert not probe(other)["audio"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, other.name])


def test_cache_reuses_files_already_in_its_directory(tmp_path: Path, fake_renders: list[VideoSpec]) -> None:
    MediaCache(tmp_path).path_for(_spec(1))
    assert MediaCache(tmp_path).path_for(_spec(1)).exists()
    assert fake_renders == [_spec(1)]


def test_cache_evicts_least_recently_used_beyond_max_bytes(tmp_path: Path, fake_renders: list[VideoSpec]) -> None:
    cache = MediaCache(tmp_path, max_bytes=2500)
    a, b = cache.path_for(_spec(1)), cache.path_for(_spec(2))
    assert cache.path_for(_spec(1)) == a  # a hit: `a` is now more recent than `b`
    c = cache.path_for(_spec(3))
    assert a.exists()
    assert c.exists()
    assert not b.exists()
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 2500
    assert cache.path_for(_spec(2)) == b  # rendered again; now `a` is the oldest and goes
    assert b.exists()
    assert fake_renders == [_spec(1), _spec(2), _spec(3), _spec(2)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([b.name, c.name])


def test_cache_never_evicts_the_file_it_returns(tmp_path: Path, fake_renders: list[VideoSpec]) -> None:
    cache = MediaCache(tmp_path, max_bytes=10)
    cache.path_for(_spec(1))
    latest = cache.path_for(_spec(2))
    assert [p.name for p in tmp_path.iterdir()] == [latest.name]


def test_cache_renders_to_a_hidden_temporary_file_then_moves_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    final = tmp_path / _spec(1).filename
    seen: list[Path] = []

    def render(spec: VideoSpec, target: Path) -> None:
        seen.append(target)
        assert not final.exists()  # readers never see a file that is still being written
        target.write_bytes(b"complete")

    monkeypatch.setattr(media, "render_mp4", render)
    assert MediaCache(tmp_path).path_for(_spec(1)) == final
    assert seen[0].parent == tmp_path  # same filesystem, so os.replace is atomic
    assert not seen[0].name.endswith(".mp4")  # never counted or served as a cache entry
    assert not seen[0].exists()
    assert final.read_bytes() == b"complete"


def test_a_cache_of_its_own_makes_its_directory_when_first_needed_and_removes_it(
    tmp_path: Path, fake_renders: list[VideoSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An app that never renders leaves no directory; one that is never closed (run without its
    lifespan, as httpx's ASGITransport runs an app) leaves none once the cache is collected."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where mkdtemp makes them, here
    cache = MediaCache()
    assert list(tmp_path.iterdir()) == []
    made = cache.path_for(_spec(1)).parent
    assert made.parent == tmp_path
    assert made.name.startswith("wanmock-media-")
    assert cache.directory == made
    cache.close()
    assert not made.exists()
    cache.close()  # twice is harmless
    forgotten = MediaCache()
    directory = forgotten.directory
    assert directory.is_dir()
    del forgotten
    gc.collect()
    assert not directory.exists()
    given = tmp_path / "given"
    with MediaCache(given) as kept:
        kept.path_for(_spec(1))
    assert (given / _spec(1).filename).exists()  # a directory it was given is not its to remove


def test_cache_leaves_nothing_behind_when_rendering_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(spec: VideoSpec, target: Path) -> None:
        target.write_bytes(b"half a file")
        raise RuntimeError("encoder crashed")

    monkeypatch.setattr(media, "render_mp4", broken)
    with pytest.raises(RuntimeError, match="encoder crashed"):
        MediaCache(tmp_path).path_for(_spec(1))
    assert list(tmp_path.iterdir()) == []


def _race(callers: list[MediaCache], spec: VideoSpec) -> set[Path]:
    barrier = threading.Barrier(len(callers))
    results: list[Path] = []
    errors: list[BaseException] = []

    def call(cache: MediaCache) -> None:
        try:
            barrier.wait()
            results.append(cache.path_for(spec))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(cache,)) for cache in callers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return set(results)


def test_concurrent_callers_get_one_valid_file(tmp_path: Path, renders: list[VideoSpec]) -> None:
    spec = VideoSpec(320, 240, 2, audio=True)
    cache = MediaCache(tmp_path)
    paths = _race([cache] * 8, spec)
    assert len(paths) == 1
    assert len(renders) == 1
    assert probe(paths.pop())["duration"] == pytest.approx(2, abs=1 / 8)
    assert len(list(tmp_path.iterdir())) == 1  # no temporary files left


def test_caches_sharing_a_directory_never_expose_a_partial_file(tmp_path: Path) -> None:
    """Separate caches stand in for separate processes: no shared lock, only os.replace."""
    spec = VideoSpec(320, 240, 2, audio=True)
    paths = _race([MediaCache(tmp_path) for _ in range(4)], spec)
    assert len(paths) == 1
    assert probe(paths.pop())["width"] == 320
    assert len(list(tmp_path.iterdir())) == 1


def test_close_removes_only_a_directory_the_cache_created(tmp_path: Path, fake_renders: list[VideoSpec]) -> None:
    owned = MediaCache()
    path = owned.path_for(_spec(1))
    assert path.exists()
    owned.close()
    assert not path.parent.exists()
    with pytest.raises(RuntimeError, match="closed"):
        owned.path_for(_spec(1))
    given = MediaCache(tmp_path)
    given.path_for(_spec(1))
    given.close()
    assert len(list(tmp_path.iterdir())) == 1


# ---------------------------------------------------------------------------------------------
# file_response

SIZE = 200_000  # more than three 64 KiB chunks


class Client:
    """A synchronous httpx client over ASGITransport (starlette's TestClient warns on httpx)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def request(self, method: str, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://mock") as client:
                return await client.request(method, url, headers=headers)

        return asyncio.run(send())

    def get(self, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.request("GET", url, headers)

    def head(self, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.request("HEAD", url, headers)


@pytest.fixture
def payload(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(SIZE)
    path = tmp_path / "video.mp4"
    path.write_bytes(data)
    return path, data


@pytest.fixture
def client(payload: tuple[Path, bytes]) -> Client:
    path = payload[0]

    def serve(request: Request) -> Response:
        return file_response(path, request, headers={"Cache-Control": "max-age=60"})

    app = Starlette(routes=[Route("/video.mp4", serve, methods=["GET", "HEAD"])])
    return Client(app)


def test_full_file_has_length_type_and_accept_ranges(client: Client, payload: tuple[Path, bytes]) -> None:
    response = client.get("/video.mp4")
    assert response.status_code == 200
    assert response.content == payload[1]
    assert response.headers["content-length"] == str(SIZE)
    assert response.headers["content-type"] == "video/mp4"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["cache-control"] == "max-age=60"


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, SIZE - 1),  # spans several chunks
        ("bytes=-10", SIZE - 10, SIZE - 1),
        ("bytes=70000-70000", 70_000, 70_000),
        ("bytes=-999999", 0, SIZE - 1),  # longer suffix than the file: all of it
        ("bytes=199990-300000", 199_990, SIZE - 1),  # end clipped to the file
        ("Bytes = 5 - 9", 5, 9),
    ],
)
def test_single_range_gets_206_and_the_exact_slice(
    client: Client, payload: tuple[Path, bytes], header: str, start: int, end: int
) -> None:
    response = client.get("/video.mp4", headers={"Range": header})
    assert response.status_code == 206
    assert response.content == payload[1][start : end + 1]
    assert response.headers["content-range"] == f"bytes {start}-{end}/{SIZE}"
    assert response.headers["content-length"] == str(end - start + 1)
    assert response.headers["content-type"] == "video/mp4"


@pytest.mark.parametrize("header", [f"bytes={SIZE}-", f"bytes={SIZE + 5}-{SIZE + 9}", "bytes=-0"])
def test_unsatisfiable_range_gets_416(client: Client, header: str) -> None:
    response = client.get("/video.mp4", headers={"Range": header})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{SIZE}"


@pytest.mark.parametrize(
    "header",
    ["bytes=abc", "items=0-5", "bytes=9-5", "bytes=", "bytes=-", "0-99", "bytes=0-1,5-6"],
)
def test_malformed_or_multi_range_is_ignored(client: Client, payload: tuple[Path, bytes], header: str) -> None:
    response = client.get("/video.mp4", headers={"Range": header})
    assert response.status_code == 200
    assert response.content == payload[1]
    assert response.headers["content-length"] == str(SIZE)


def test_head_answers_the_same_headers_without_a_body(client: Client) -> None:
    whole = client.head("/video.mp4")
    assert whole.status_code == 200
    assert whole.content == b""
    assert whole.headers["content-length"] == str(SIZE)
    assert whole.headers["accept-ranges"] == "bytes"
    part = client.head("/video.mp4", headers={"Range": "bytes=0-99"})
    assert part.status_code == 206
    assert part.content == b""
    assert part.headers["content-length"] == "100"
    assert part.headers["content-range"] == f"bytes 0-99/{SIZE}"


def test_if_range_with_a_stale_validator_serves_the_whole_file(client: Client) -> None:
    etag = client.head("/video.mp4").headers["etag"]
    fresh = client.get("/video.mp4", headers={"Range": "bytes=0-9", "If-Range": etag})
    stale = client.get("/video.mp4", headers={"Range": "bytes=0-9", "If-Range": '"old"'})
    assert (fresh.status_code, len(fresh.content)) == (206, 10)
    assert (stale.status_code, len(stale.content)) == (200, SIZE)


def _request(headers: list[tuple[bytes, bytes]]) -> Request:
    scope = {"type": "http", "method": "GET", "path": "/", "headers": headers}
    return Request(scope)


def _body_messages(path: Path, headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    """Calls file_response's ASGI app directly and returns each body message it sends."""
    request = _request(headers)
    bodies: list[bytes] = []

    async def receive() -> Message:
        await asyncio.sleep(3600)  # the client never disconnects
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            bodies.append(message["body"])

    asyncio.run(file_response(path, request)(request.scope, receive, send))
    return bodies


@pytest.mark.parametrize(("headers", "start"), [([], 0), ([(b"range", b"bytes=10-")], 10)], ids=["200", "206"])
def test_body_is_streamed_in_bounded_chunks(
    payload: tuple[Path, bytes], headers: list[tuple[bytes, bytes]], start: int
) -> None:
    path, data = payload
    bodies = _body_messages(path, headers)
    assert len(bodies) >= 4
    assert max(map(len, bodies)) <= 64 * 1024
    assert b"".join(bodies) == data[start:]


def test_missing_file_fails_before_any_response_starts(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        file_response(tmp_path / "gone.mp4", _request([]))


def test_a_rendered_video_downloads_in_ranges_and_plays(tmp_path: Path) -> None:
    cache = MediaCache(tmp_path)
    spec = VideoSpec(320, 240, 2, audio=True)

    def serve(request: Request) -> Response:
        return file_response(cache.path_for(spec), request)

    client = Client(Starlette(routes=[Route("/v.mp4", serve, methods=["GET", "HEAD"])]))
    size = int(client.head("/v.mp4").headers["content-length"])
    parts = [client.get("/v.mp4", headers={"Range": f"bytes={i}-{i + 4095}"}).content for i in range(0, size, 4096)]
    assert probe(b"".join(parts)) == probe(cache.path_for(spec))
