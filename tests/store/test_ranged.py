"""Several streams per large file (store/ranged.py, issue 16 item 3).

A file larger than `VOLCACHE_DOWNLOAD_PART` is fetched in ranged parts on up to
`VOLCACHE_DOWNLOAD_STREAMS` streams at once, each written in place into one staged file, then
verified like any download. Here: the streams really run at once and serve each byte once; a
server that ignores `Range`, cuts streams or corrupts bytes; answers that lie about the range or
send more than asked; Xet-stored files going through huggingface_hub; the token never sent off-host.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import itertools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from volcache import ConfigError, IntegrityError, ModelStore, Settings
from volcache._errors import HostileAnswer
from volcache.store import ranged
from volcache.testing import Faults, HubEmulator, write_random_repo

BIG = "org/big"
SIZE = 3_000_000
PART = "256KiB"


@pytest.fixture
def big_hub(tmp_path: Path) -> Iterator[HubEmulator]:
    write_random_repo(tmp_path / "mirror" / "org" / "big", {"model.safetensors": SIZE}, seed=7)
    with HubEmulator(tmp_path / "mirror") as emulator:
        yield emulator


def _store(volume: Path, hub: HubEmulator, streams: int = 4) -> ModelStore:
    return ModelStore(
        make_settings(volume, HF_ENDPOINT=hub.url, VOLCACHE_DOWNLOAD_STREAMS=streams, VOLCACHE_DOWNLOAD_PART=PART)
    )


def _weight_gets(hub: HubEmulator) -> list[tuple[str, str, int]]:
    return [e for e in hub.stats.log if e[0] == "GET" and e[1].endswith("/model.safetensors")]


def _source_sha256(tmp_path: Path) -> str:
    return hashlib.sha256((tmp_path / "mirror/org/big/model.safetensors").read_bytes()).hexdigest()


def _check_verified(volume: Path, tmp_path: Path) -> None:
    snapshot = next((volume / "models/hub/models--org--big/snapshots").iterdir())
    assert hashlib.sha256((snapshot / "model.safetensors").read_bytes()).hexdigest() == _source_sha256(tmp_path)
    blobs = volume / "models/hub/models--org--big/blobs"
    leftovers = [p.name for p in blobs.iterdir() if p.name.startswith(".") or p.name.endswith(".incomplete")]
    assert leftovers == [], f"staging left behind: {leftovers}"


def test_spans_cover_the_file_once_in_order() -> None:
    for size, streams, part in [
        (1, 8, 10),
        (100, 1, 10),
        (10_000_000, 8, 1 << 20),
        (1000, 8, 1),
        (90_868_376, 8, 8 << 20),
    ]:
        spans = ranged.spans(size, streams, part)
        assert spans[0][0] == 0 and spans[-1][1] == size - 1
        assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(spans)), spans
        assert len(spans) <= streams * 4
        assert len(spans) <= streams or len(spans) % streams == 0, "the streams must finish together"
        assert len(spans) == 1 or all(last - first + 1 >= part for first, last in spans[:-1])
    assert ranged.spans(0, 8, 10) == []
    assert len(ranged.spans(90_868_376, 8, 8 << 20)) == 8  # all-MiniLM-L6-v2: one part per stream, not 11
    assert len(ranged.spans(300_000_000, 8, 8 << 20)) == 32  # four per stream
    assert len(ranged.spans(5_000_000, 8, 8 << 20)) == 1  # smaller than a part


def test_a_large_file_comes_on_several_streams_at_once_each_byte_once(
    volume: Path, big_hub: HubEmulator, tmp_path: Path
) -> None:
    big_hub.faults = Faults(bandwidth=2_000_000)  # slow streams, so the parts overlap in time
    resolution = _store(volume, big_hub).resolve(BIG)
    assert resolution.source == "download"
    _check_verified(volume, tmp_path)
    gets = _weight_gets(big_hub)
    assert len(gets) > 4 and {status for *_, status in gets} == {206}, gets
    # 4 streams of the weights at once (config.json, or a stream's handler finishing as the next
    # part begins, may add one)
    assert big_hub.stats.most_streams >= 4, "the parts must be fetched at once, on the streams asked for"
    assert big_hub.stats.bytes_per_file[f"{BIG}/model.safetensors"] == SIZE, "each byte must be served once"


@pytest.mark.parametrize(
    "env",
    [{"VOLCACHE_DOWNLOAD_STREAMS": "1", "VOLCACHE_DOWNLOAD_PART": PART}, {"VOLCACHE_DOWNLOAD_PART": "8MiB"}],
    ids=["one stream asked", "file smaller than a part"],
)
def test_one_stream_when_asked_or_when_the_file_is_small(
    env: dict[str, str], volume: Path, big_hub: HubEmulator, tmp_path: Path
) -> None:
    ModelStore(make_settings(volume, HF_ENDPOINT=big_hub.url, **env)).resolve(BIG)
    _check_verified(volume, tmp_path)
    assert [status for *_, status in _weight_gets(big_hub)] == [200]


def test_a_server_that_ignores_range_gets_one_stream(volume: Path, big_hub: HubEmulator, tmp_path: Path) -> None:
    big_hub.faults = Faults(ignore_range=True)
    assert _store(volume, big_hub).resolve(BIG).source == "download"
    _check_verified(volume, tmp_path)
    # The ranged try learns it from its first answer and stops; one whole-file GET follows.
    assert len(_weight_gets(big_hub)) == 2, _weight_gets(big_hub)


def test_cut_streams_resume_where_they_stopped(volume: Path, big_hub: HubEmulator, tmp_path: Path) -> None:
    big_hub.faults = Faults(cut_after=100_000)  # every answer, every time
    assert _store(volume, big_hub).resolve(BIG).source == "download"
    _check_verified(volume, tmp_path)
    assert big_hub.stats.bytes_per_file[f"{BIG}/model.safetensors"] == SIZE, "a resumed part refetched bytes"


def test_corrupt_bytes_are_refused_and_nothing_is_kept(
    volume: Path, big_hub: HubEmulator, tmp_path: Path, fast_retries: None
) -> None:
    big_hub.faults = Faults(corrupt=True, only="*.safetensors")
    store = _store(volume, big_hub)
    with pytest.raises(IntegrityError, match=r"model\.safetensors"):
        store.resolve(BIG)
    blobs = volume / "models/hub/models--org--big/blobs"
    config = next(f for f in store.hub.list(BIG, "main").files if f.path == "config.json")
    assert [p.name for p in blobs.iterdir()] == [config.oid], (
        "only config.json may be kept: a corrupt or partial weight file was left"
    )
    big_hub.faults = Faults()
    assert store.resolve(BIG).source == "download"
    _check_verified(volume, tmp_path)


def test_an_xet_file_goes_through_huggingface_hub(
    volume: Path, big_hub: HubEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    real = huggingface_hub.get_hf_file_metadata

    def xet_metadata(*args: Any, **kwargs: Any) -> Any:
        meta = real(*args, **kwargs)
        return type(meta)(meta.commit_hash, meta.etag, meta.location, meta.size, xet_file_data=object())  # type: ignore[arg-type]

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", xet_metadata)
    _store(volume, big_hub).resolve(BIG)
    _check_verified(volume, tmp_path)
    assert [status for *_, status in _weight_gets(big_hub)] == [200], "hf_xet splits Xet files itself"


def test_the_token_goes_only_to_the_hub_host() -> None:
    on_hub = ranged.headers_for("https://hf.co/a/resolve/x/f", "https://hf.co/api/f", "hf_secret")
    on_cdn = ranged.headers_for("https://hf.co/a/resolve/x/f", "https://cdn.example/f?sig=1", "hf_secret")
    assert on_hub.get("authorization") == "Bearer hf_secret"
    assert all("hf_secret" not in v for v in on_cdn.values()), on_cdn
    assert on_cdn["Accept-Encoding"] == "identity"


# -- answers that lie about the range: a bare server, since the emulator always tells the truth --
Answer = Callable[[int, int], tuple[int, dict[str, str], bytes]]


@dataclasses.dataclass
class Served:
    """One bare server: its URL, and the Authorization header of each request it got."""

    url: str
    authorizations: list[str | None] = dataclasses.field(default_factory=list)


@pytest.fixture
def liar() -> Iterator[Callable[..., Served]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def serve(answer: Answer, host: str = "127.0.0.1") -> Served:
        served = Served("")

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                served.authorizations.append(self.headers.get("Authorization"))
                first, last = (int(n) for n in self.headers["Range"].removeprefix("bytes=").split("-"))
                status, headers, body = answer(first, last)
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        server = http.server.ThreadingHTTPServer((host, 0), Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        served.url = f"http://{host}:{server.server_address[1]}/f"
        return served

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def _honest(first: int, last: int) -> tuple[int, dict[str, str], bytes]:
    return 206, {"Content-Range": f"bytes {first}-{last}/1000"}, b"x" * (last - first + 1)


LIES: dict[str, Answer] = {
    "another span": lambda a, b: (206, {"Content-Range": f"bytes {a + 1}-{b + 1}/1000"}, b"x" * (b - a + 1)),
    "another total size": lambda a, b: (206, {"Content-Range": f"bytes {a}-{b}/5000"}, b"x" * (b - a + 1)),
    "more bytes than asked": lambda a, b: (206, {"Content-Range": f"bytes {a}-{b}/1000"}, b"x" * 3 * (b - a + 1)),
}


@pytest.mark.parametrize("lie", list(LIES))
def test_an_answer_that_lies_about_its_range_is_refused(lie: str, liar: Callable[..., Served], tmp_path: Path) -> None:
    url = liar(LIES[lie]).url
    dest = tmp_path / "staged"
    with pytest.raises(HostileAnswer, match=r"refusing|more bytes"):
        ranged.download(ranged.Source(url, {}), dest, 1000, streams=4, part=100, label="f")
    assert dest.stat().st_size == 1000, "bytes may only land inside the staged file, never past its size"


def test_the_whole_file_for_a_range_means_one_stream(liar: Callable[..., Served], tmp_path: Path) -> None:
    url = liar(lambda a, b: (200, {}, b"x" * 1000)).url
    with pytest.raises(ranged.RangesRefused):
        ranged.download(ranged.Source(url, {}), tmp_path / "staged", 1000, streams=4, part=100, label="f")


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"VOLCACHE_DOWNLOAD_STREAMS": "0"}, "must be greater than 0"),
        ({"VOLCACHE_DOWNLOAD_STREAMS": "500"}, "more than 64"),
        ({"VOLCACHE_DOWNLOAD_STREAMS": "many"}, "not a number"),
        ({"VOLCACHE_DOWNLOAD_PART": "1KB"}, "below 64KiB"),
        ({"VOLCACHE_DOWNLOAD_PART": "big"}, "not a size"),
    ],
)
def test_bad_stream_settings_are_one_clear_error(volume: Path, env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        make_settings(volume, **env)


def test_the_defaults(volume: Path) -> None:
    s: Settings = make_settings(volume)
    assert (s.download_streams, s.download_part) == (8, 8 * 1024**2)


def test_the_hash_follows_the_parts_in_order_whatever_order_they_land(big_hub: HubEmulator, tmp_path: Path) -> None:
    big_hub.faults = Faults(cut_after=70_000, bandwidth=3_000_000)  # parts finish out of order, resumed
    url = f"{big_hub.url}/{BIG}/resolve/{big_hub.commit_sha(BIG)}/model.safetensors"
    hasher = hashlib.sha256()
    ranged.download(
        ranged.Source(url, {}), tmp_path / "staged", SIZE, streams=6, part=100_000, label="f", hasher=hasher
    )
    assert hasher.hexdigest() == _source_sha256(tmp_path)


def test_a_redirect_to_another_host_drops_the_token(liar: Callable[..., Served], tmp_path: Path) -> None:
    cdn = liar(_honest, host="localhost")  # "localhost", not 127.0.0.1: another host
    hub = liar(lambda a, b: (302, {"Location": cdn.url}, b""))
    hasher = hashlib.sha256()
    headers = {"Authorization": "Bearer hf_secret"}
    ranged.download(
        ranged.Source(hub.url, headers), tmp_path / "staged", 1000, streams=2, part=100, label="f", hasher=hasher
    )
    assert set(hub.authorizations) == {"Bearer hf_secret"}, "the Hub's own host gets the token"
    assert cdn.authorizations and set(cdn.authorizations) == {None}, (
        f"the token reached another host: {cdn.authorizations}"
    )
    assert hasher.hexdigest() == hashlib.sha256(b"x" * 1000).hexdigest()
