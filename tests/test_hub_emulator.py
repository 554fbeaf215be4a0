"""The offline Hub emulator, driven by the unchanged huggingface_hub client.

The client gets `endpoint=hub.url` on every call rather than HF_ENDPOINT, which it reads only
at import; the CLI test runs the server in a subprocess and reads its counts from a stats file.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub.constants
import pytest
from click.testing import CliRunner
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import ModelInfo, RepoFile, RepoFolder

import volcache.testing
from tests.faults._support import faults_trial
from volcache.cli import cli
from volcache.testing import Faults, HubEmulator, Stats, minilm_folder, mirror_root_with, write_random_repo

# model.safetensors is LFS by suffix and size, tokenizer.json by size (>= 10 KiB), sub/extra.bin by
# suffix only; vocab.txt, config.json and notes.md are plain git files.
FILES = {
    "model.safetensors": 200_000,
    "tokenizer.json": 30_000,
    "vocab.txt": 2_000,
    "sub/extra.bin": 1_000,
    "sub/deep/notes.md": 50,
}
LFS = {"model.safetensors", "tokenizer.json", "sub/extra.bin"}
ALL_FILES = {*FILES, "config.json"}
MiB = 1024 * 1024
HUGE = 24 * MiB  # the client keeps downloaded bytes in 10 MiB chunks: resuming needs more than one


def sha256_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def git_sha1_of(path: str | Path) -> str:
    data = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def raw(hub: HubEmulator, method: str, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """One request without the client's retries, to see exactly what the emulator answers."""
    host, port = hub.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request(method, path, headers=headers or {})
    return conn.getresponse()


@pytest.fixture(autouse=True)
def _online(monkeypatch: pytest.MonkeyPatch) -> None:
    # The emulator is local: a HF_HUB_OFFLINE=1 inherited from the shell must not block it.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture(scope="module")
def repo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_repo(tmp_path_factory.mktemp("tiny"), FILES)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, repo_dir: Path) -> Path:
    big = write_random_repo(tmp_path_factory.mktemp("big"), {"big.safetensors": 1_000_000})
    huge = write_random_repo(tmp_path_factory.mktemp("huge"), {"huge.safetensors": HUGE})
    repos = {"acme/tiny": repo_dir, "solo": repo_dir, "acme/big": big, "acme/huge": huge}
    return mirror_root_with(tmp_path_factory.mktemp("mirror"), repos)


@pytest.fixture
def hub(root: Path) -> Iterator[HubEmulator]:
    with HubEmulator(root) as emulator:
        yield emulator


def test_public_api() -> None:
    assert volcache.testing.__all__ == [
        "DEFAULT_LFS_THRESHOLD",
        "WEIGHT_SUFFIXES",
        "Faults",
        "HubEmulator",
        "Stats",
        "minilm_folder",
        "mirror_root_with",
        "write_random_repo",
    ]


# -- the real client against it ------------------------------------------------------------------


def test_snapshot_download_writes_the_real_cache_layout(hub: HubEmulator, repo_dir: Path, tmp_path: Path) -> None:
    sha = hub.commit_sha("acme/tiny")

    folder = Path(snapshot_download("acme/tiny", cache_dir=tmp_path, endpoint=hub.url))

    storage = tmp_path / "models--acme--tiny"
    assert folder == storage / "snapshots" / sha
    assert (storage / "refs" / "main").read_text() == sha
    for name in ALL_FILES:
        link = folder / name
        assert link.is_symlink()
        blob = Path(os.path.realpath(link))
        assert blob.parent == storage / "blobs"
        # The blob is named by the ETag: sha256 for LFS files, the git blob sha1 for the others.
        expected = sha256_of(repo_dir / name) if name in LFS else git_sha1_of(repo_dir / name)
        assert blob.name == expected
        assert blob.read_bytes() == (repo_dir / name).read_bytes()


def test_second_snapshot_download_makes_no_file_downloads(hub: HubEmulator, tmp_path: Path) -> None:
    snapshot_download("acme/tiny", cache_dir=tmp_path, endpoint=hub.url)
    assert hub.stats.file_requests == len(ALL_FILES)
    assert hub.stats.per_file == {f"acme/tiny/{name}": 1 for name in ALL_FILES}
    assert hub.stats.bytes_per_file["acme/tiny/model.safetensors"] == FILES["model.safetensors"]
    assert hub.stats.bytes_served == sum(hub.stats.bytes_per_file.values())

    hub.reset_stats()
    snapshot_download("acme/tiny", cache_dir=tmp_path, endpoint=hub.url)

    assert hub.stats.file_requests == 0
    assert hub.stats.bytes_served == 0
    assert hub.stats.log == [("GET", "/api/models/acme/tiny/revision/main", 200)]


def test_commit_revision_and_allow_patterns(hub: HubEmulator, tmp_path: Path) -> None:
    sha = hub.commit_sha("acme/tiny")

    folder = snapshot_download(
        "acme/tiny", revision=sha, allow_patterns=["*.json"], cache_dir=tmp_path, endpoint=hub.url
    )

    assert sorted(p.name for p in Path(folder).iterdir()) == ["config.json", "tokenizer.json"]
    assert set(hub.stats.per_file) == {"acme/tiny/config.json", "acme/tiny/tokenizer.json"}
    # A commit sha needs no resolving: the client skips the revision call.
    assert not any("/revision/" in path for _, path, _ in hub.stats.log)


def test_repo_info_sha_is_the_commit_sha(hub: HubEmulator, repo_dir: Path) -> None:
    api = HfApi(endpoint=hub.url)

    info = api.repo_info("acme/tiny")

    assert isinstance(info, ModelInfo)
    assert info.sha == hub.commit_sha("acme/tiny")
    assert api.repo_info("acme/tiny", revision=info.sha).sha == info.sha
    assert info.id == "acme/tiny" and info.private is False and info.gated is False
    assert {s.rfilename for s in info.siblings or []} == ALL_FILES
    # Deterministic: sha1 over the sorted (path, sha256) pairs, whatever the repo is called.
    pairs = sorted((name, sha256_of(repo_dir / name)) for name in ALL_FILES)
    assert info.sha == hashlib.sha1("".join(f"{p}\0{h}\n" for p, h in pairs).encode()).hexdigest()
    assert api.repo_info("solo").sha == info.sha


def test_repo_info_with_files_metadata(hub: HubEmulator, repo_dir: Path) -> None:
    siblings = {s.rfilename: s for s in HfApi(endpoint=hub.url).model_info("solo", files_metadata=True).siblings or []}

    assert siblings["vocab.txt"].size == FILES["vocab.txt"]
    assert siblings["vocab.txt"].lfs is None
    lfs = siblings["model.safetensors"].lfs
    assert lfs is not None and lfs.sha256 == sha256_of(repo_dir / "model.safetensors")


def test_tree_listing_sizes_and_lfs_hashes(hub: HubEmulator, repo_dir: Path) -> None:
    api = HfApi(endpoint=hub.url)

    entries = {e.path: e for e in api.list_repo_tree("acme/tiny", recursive=True)}

    assert set(entries) == ALL_FILES | {"sub", "sub/deep"}
    assert isinstance(entries["sub/deep"], RepoFolder)
    for name in ALL_FILES:
        entry = entries[name]
        assert isinstance(entry, RepoFile)
        assert entry.size == (repo_dir / name).stat().st_size
        if name in LFS:
            assert entry.lfs is not None and entry.lfs.sha256 == sha256_of(repo_dir / name)
            assert entry.lfs.size == entry.size
        else:
            assert entry.lfs is None and entry.blob_id == git_sha1_of(repo_dir / name)
    top = {e.path for e in api.list_repo_tree("acme/tiny")}
    assert top == {"config.json", "model.safetensors", "tokenizer.json", "vocab.txt", "sub"}
    assert {e.path for e in api.list_repo_tree("acme/tiny", "sub")} == {"sub/extra.bin", "sub/deep"}
    paths = {e.path for e in api.get_paths_info("acme/tiny", ["vocab.txt", "sub", "missing.txt"])}
    assert paths == {"vocab.txt", "sub"}


def test_lfs_threshold_is_configurable(root: Path) -> None:
    with HubEmulator(root, lfs_threshold=1_000_000) as hub:
        entries = {e.path: e for e in HfApi(endpoint=hub.url).list_repo_tree("acme/tiny", recursive=True)}
        sha = hub.commit_sha("acme/tiny")
    with HubEmulator(root) as hub:
        assert hub.commit_sha("acme/tiny") == sha  # the commit does not depend on the threshold

    tokenizer, weights = entries["tokenizer.json"], entries["model.safetensors"]
    assert isinstance(tokenizer, RepoFile) and tokenizer.lfs is None
    assert isinstance(weights, RepoFile) and weights.lfs is not None  # a weight suffix is always LFS


def test_missing_things_raise_the_client_errors(hub: HubEmulator, tmp_path: Path) -> None:
    api = HfApi(endpoint=hub.url)
    with pytest.raises(RepositoryNotFoundError):
        api.repo_info("acme/nothing")
    with pytest.raises(RepositoryNotFoundError):
        api.repo_info("acme")  # an org folder is not a repo
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("nobody/nothing", "config.json", cache_dir=tmp_path, endpoint=hub.url)
    with pytest.raises(RevisionNotFoundError):
        api.repo_info("acme/tiny", revision="v2")
    with pytest.raises(RevisionNotFoundError):
        snapshot_download("acme/tiny", revision="0" * 40, cache_dir=tmp_path, endpoint=hub.url)
    with pytest.raises(LookupError):
        hub.commit_sha("acme/nothing")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("acme/tiny", "missing.txt", cache_dir=tmp_path, endpoint=hub.url)
    # The commit on the 404 lets the client remember the miss.
    assert (tmp_path / "models--acme--tiny" / ".no_exist" / hub.commit_sha("acme/tiny") / "missing.txt").exists()


def test_repo_ids_cannot_escape_the_root(hub: HubEmulator) -> None:
    response = raw(hub, "GET", "/api/models/../acme/revision/main")
    assert response.status == 404
    assert response.getheader("X-Error-Code") == "RepoNotFound"


# -- the resolve endpoint ------------------------------------------------------------------------


def test_resolve_headers(hub: HubEmulator, repo_dir: Path) -> None:
    sha = hub.commit_sha("acme/tiny")

    lfs = raw(hub, "HEAD", "/acme/tiny/resolve/main/model.safetensors")
    plain = raw(hub, "HEAD", f"/acme/tiny/resolve/{sha}/vocab.txt")

    assert lfs.status == 200
    assert lfs.getheader("X-Repo-Commit") == sha
    assert lfs.getheader("ETag") == f'"{sha256_of(repo_dir / "model.safetensors")}"'
    assert lfs.getheader("X-Linked-Etag") == lfs.getheader("ETag")
    assert lfs.getheader("X-Linked-Size") == lfs.getheader("Content-Length") == str(FILES["model.safetensors"])
    assert lfs.getheader("Accept-Ranges") == "bytes"
    assert plain.getheader("ETag") == f'"{git_sha1_of(repo_dir / "vocab.txt")}"'
    assert plain.getheader("X-Linked-Etag") is None
    assert not any(name.lower().startswith("x-xet") for name, _ in lfs.getheaders() + plain.getheaders())
    assert hub.stats.file_requests == 0  # HEADs send no body


def test_range_requests(hub: HubEmulator, repo_dir: Path) -> None:
    data = (repo_dir / "model.safetensors").read_bytes()
    path = "/acme/tiny/resolve/main/model.safetensors"

    middle = raw(hub, "GET", path, {"Range": "bytes=10-19"})
    assert middle.status == 206
    assert middle.getheader("Content-Range") == f"bytes 10-19/{len(data)}"
    assert middle.read() == data[10:20]
    assert raw(hub, "GET", path, {"Range": "bytes=-5"}).read() == data[-5:]
    assert raw(hub, "GET", path, {"Range": "bytes=199990-"}).read() == data[199990:]
    too_far = raw(hub, "GET", path, {"Range": f"bytes={len(data)}-"})
    assert too_far.status == 416
    assert too_far.getheader("Content-Range") == f"bytes */{len(data)}"


# -- faults --------------------------------------------------------------------------------------


def test_delay(hub: HubEmulator) -> None:
    hub.faults.delay = 0.3
    began = time.monotonic()
    HfApi(endpoint=hub.url).repo_info("acme/tiny")
    assert time.monotonic() - began >= 0.3


def test_cut_after_ends_the_body_early_and_the_client_resumes(hub: HubEmulator, repo_dir: Path, tmp_path: Path) -> None:
    hub.faults = Faults(cut_after=80_000)
    response = raw(hub, "GET", "/acme/tiny/resolve/main/model.safetensors")
    with pytest.raises(http.client.IncompleteRead) as cut:
        response.read()
    assert len(cut.value.partial) == 80_000
    hub.faults.cut_after = 12 * MiB
    hub.reset_stats()

    path = hf_hub_download("acme/huge", "huge.safetensors", cache_dir=tmp_path, endpoint=hub.url)

    assert sha256_of(path) == Path(path).resolve().name
    # Each cut loses the bytes past the last whole 10 MiB chunk; the client resumes from there.
    assert hub.stats.per_file == {"acme/huge/huge.safetensors": 3}
    assert [status for method, _, status in hub.stats.log if method == "GET"] == [200, 206, 206]
    assert hub.stats.bytes_served == 12 * MiB + 12 * MiB + (HUGE - 20 * MiB)


def test_corrupt_bytes_keep_the_size_so_only_a_hash_check_sees_them(
    hub: HubEmulator, repo_dir: Path, tmp_path: Path
) -> None:
    hub.faults = Faults(corrupt=True, only="*.safetensors")

    folder = Path(snapshot_download("acme/tiny", cache_dir=tmp_path, endpoint=hub.url))

    weights = folder / "model.safetensors"
    assert weights.stat().st_size == FILES["model.safetensors"]
    # huggingface_hub 2.4.0 checks the size only: the blob is named by a sha256 it does not have.
    assert sha256_of(weights) != Path(os.path.realpath(weights)).name
    assert (folder / "vocab.txt").read_bytes() == (repo_dir / "vocab.txt").read_bytes()


def test_bandwidth_caps_each_download(hub: HubEmulator, tmp_path: Path) -> None:
    hub.faults = Faults(bandwidth=2_000_000)
    began = time.monotonic()

    hf_hub_download("acme/big", "big.safetensors", cache_dir=tmp_path, endpoint=hub.url)

    assert time.monotonic() - began >= 0.5 * (1_000_000 / 2_000_000)
    assert hub.stats.bytes_served == 1_000_000


def test_status_answers_every_request(hub: HubEmulator, tmp_path: Path) -> None:
    hub.faults = Faults(status=503)
    with pytest.raises(HfHubHTTPError) as failure:
        HfApi(endpoint=hub.url).repo_info("acme/tiny")
    assert failure.value.response.status_code == 503
    # snapshot_download does not retry its first call: it looks in the (empty) cache and gives up.
    with pytest.raises(LocalEntryNotFoundError):
        snapshot_download("acme/tiny", cache_dir=tmp_path, endpoint=hub.url)
    assert {status for _, _, status in hub.stats.log} == {503}


def test_fail_first_then_succeed(hub: HubEmulator, tmp_path: Path) -> None:
    hub.faults = Faults(fail_first=2)

    hf_hub_download("acme/tiny", "config.json", cache_dir=tmp_path, endpoint=hub.url)

    # HEAD fails, the client retries it with backoff (fails, sleeps 1 s, succeeds), then GETs.
    assert [(method, status) for method, _, status in hub.stats.log] == [
        ("HEAD", 503),
        ("HEAD", 503),
        ("HEAD", 200),
        ("GET", 200),
    ]
    hub.faults.fail_first = 1  # changing it arms it again
    assert raw(hub, "GET", "/api/models/acme/tiny").status == 503
    assert raw(hub, "GET", "/api/models/acme/tiny").status == 200


def test_only_limits_faults_to_matching_files(hub: HubEmulator) -> None:
    hub.faults = Faults(status=500, only="sub/*")
    assert raw(hub, "GET", "/api/models/acme/tiny").status == 200
    assert raw(hub, "HEAD", "/acme/tiny/resolve/main/vocab.txt").status == 200
    assert raw(hub, "HEAD", "/acme/tiny/resolve/main/sub/extra.bin").status == 500


def test_tree_override_is_served_verbatim(hub: HubEmulator, tmp_path: Path) -> None:
    hostile = [{"type": "file", "path": "../../evil.sh", "oid": "0" * 40, "size": 5}]
    hub.faults = Faults(tree_override=hostile)

    assert [e.path for e in HfApi(endpoint=hub.url).list_repo_tree("acme/tiny", recursive=True)] == ["../../evil.sh"]
    # The unchanged client refuses the path before it writes anything.
    with pytest.raises(ValueError, match="evil"):
        snapshot_download("acme/tiny", cache_dir=tmp_path, endpoint=hub.url)


def test_stop_closes_the_server(root: Path) -> None:
    hub = HubEmulator(root).start()
    assert raw(hub, "GET", "/api/models/acme/tiny").status == 200
    hub.stop()
    hub.stop()  # twice is fine
    with pytest.raises(OSError):
        raw(hub, "GET", "/api/models/acme/tiny")


# -- across processes ----------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_cli_serves_in_a_subprocess_with_a_stats_file(root: Path, tmp_path: Path) -> None:
    stats_file = tmp_path / "stats.json"
    command = "import sys; from volcache.cli import main; sys.exit(main(sys.argv[1:]))"
    args = ["hub", "serve", str(root), "--port", "0", "--stats-file", str(stats_file)]
    server = subprocess.Popen([sys.executable, "-c", command, *args], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        url = line.split(" at ")[1].split()[0]
        assert line.strip() == f"Serving {root} as a Hugging Face Hub at {url} (set HF_ENDPOINT={url})"
        assert not url.endswith(":0")

        hf_hub_download("acme/tiny", "vocab.txt", cache_dir=tmp_path / "cache", endpoint=url)

        stats = Stats.read(stats_file)
        assert stats.per_file == {"acme/tiny/vocab.txt": 1}
        assert stats.bytes_served == FILES["vocab.txt"]
        assert [method for method, _, _ in stats.log] == ["HEAD", "GET"]
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0


def test_cli_rejects_a_missing_root(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["hub", "serve", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_cli_reports_a_taken_port(root: Path) -> None:
    with HubEmulator(root) as taken:
        port = taken.url.rsplit(":", 1)[1]
        result = CliRunner().invoke(cli, ["hub", "serve", str(root), "--port", port])
    assert result.exit_code == 1
    assert f"Cannot listen on 127.0.0.1:{port}" in result.output


# -- helpers -------------------------------------------------------------------------------------


def test_minilm_weights_served_through_symlinks(tmp_path: Path) -> None:
    try:
        folder = minilm_folder()
    except FileNotFoundError as missing:
        pytest.skip(str(missing))
    root = mirror_root_with(tmp_path, {"sentence-transformers/all-MiniLM-L6-v2": folder})
    assert (root / "sentence-transformers" / "all-MiniLM-L6-v2").is_symlink()

    with HubEmulator(root) as hub:
        snapshot = Path(
            snapshot_download(
                "sentence-transformers/all-MiniLM-L6-v2",
                allow_patterns=["*.json", "model.safetensors"],
                cache_dir=tmp_path / "cache",
                endpoint=hub.url,
            )
        )

    weights = snapshot / "model.safetensors"
    assert Path(os.path.realpath(weights)).name == sha256_of(folder / "model.safetensors")
    assert (snapshot / "1_Pooling" / "config.json").is_file()


def test_write_random_repo_is_deterministic(tmp_path: Path) -> None:
    first = write_random_repo(tmp_path / "a", {"w.bin": 4096, "x.bin": 10}, seed=7)
    second = write_random_repo(tmp_path / "b", {"w.bin": 4096}, seed=7)
    other_seed = write_random_repo(tmp_path / "c", {"w.bin": 4096}, seed=8)

    assert (first / "w.bin").read_bytes() == (second / "w.bin").read_bytes()  # other files do not matter
    assert (first / "w.bin").read_bytes() != (other_seed / "w.bin").read_bytes()
    assert (first / "w.bin").stat().st_size == 4096
    assert (first / "config.json").is_file()


@pytest.mark.parametrize("where", ["revision", "file"])
@faults_trial("12.11", "CR/LF in a request echoed in a header")
def test_a_request_cannot_inject_headers_through_an_error_message(hub: HubEmulator, where: str) -> None:
    """CR/LF in a revision or path is echoed in X-Error-Message: escaped, never a header of its own."""
    evil = "x%0D%0AX-Injected:%20yes%0D%0A%0D%0Abody"
    path = f"/api/models/acme/tiny/revision/{evil}" if where == "revision" else f"/acme/tiny/resolve/main/{evil}"
    resp = raw(hub, "GET", path)
    assert resp.status == 404
    assert resp.getheader("X-Injected") is None
    message = resp.getheader("X-Error-Message") or ""
    assert "\r" not in message and "\n" not in message
    if where == "revision":  # the message names the revision: its CR/LF are escaped, the JSON body keeps them
        assert "\\x0d\\x0a" in message and "\r\nX-Injected" in json.loads(resp.read())["error"]
