from __future__ import annotations

import pytest

from volcache import UnsafeRepoPath
from volcache.store.selection import RemoteFile, check_listing, check_repo_id, select_needed

SHA = "a" * 64
OID = "b" * 40


def _f(path: str, size: int = 10) -> RemoteFile:
    return RemoteFile(path, size, SHA if path.endswith((".safetensors", ".bin", ".onnx", ".gguf")) else None, OID)


def _paths(files: list[RemoteFile]) -> list[str]:
    return sorted(f.path for f in files)


def test_prefers_safetensors_and_skips_other_runtimes() -> None:
    listing = [
        _f(p)
        for p in [
            "config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack",
            "onnx/model.onnx", "openvino/openvino_model.xml", "model.Q4.gguf", "tokenizer.json",
            "1_Pooling/config.json", ".gitattributes", "rust_model.ot",
        ]
    ]  # fmt: skip
    assert _paths(select_needed(listing)) == ["1_Pooling/config.json", "config.json", "model.safetensors",
                                              "tokenizer.json"]  # fmt: skip


def test_keeps_bin_when_no_safetensors_and_include_wins() -> None:
    listing = [_f("config.json"), _f("pytorch_model.bin"), _f("onnx/model.onnx")]
    assert _paths(select_needed(listing)) == ["config.json", "pytorch_model.bin"]
    assert "onnx/model.onnx" in _paths(select_needed(listing, include=["onnx/*"]))


@pytest.mark.parametrize("path", ["../evil", "/etc/passwd", "a/../../b", "a//b", "./x", "a\\b", "~root/x", ""])
def test_hostile_paths_are_refused(path: str) -> None:
    with pytest.raises(UnsafeRepoPath):
        check_listing([RemoteFile(path, 1, None, OID)])


def test_absurd_sizes_and_bad_hashes_are_refused() -> None:
    with pytest.raises(UnsafeRepoPath, match="impossible size"):
        check_listing([RemoteFile("x.bin", 10**16, SHA, SHA)])
    with pytest.raises(UnsafeRepoPath, match="impossible size"):
        check_listing([RemoteFile("x.bin", -1, SHA, SHA)])
    with pytest.raises(UnsafeRepoPath, match="sha256"):
        check_listing([RemoteFile("x.bin", 1, "../../x", OID)])


@pytest.mark.parametrize("repo", ["../x", "a/b/c", "a/..", "", "/abs", "org/na me"])
def test_bad_repo_ids(repo: str) -> None:
    with pytest.raises(UnsafeRepoPath):
        check_repo_id(repo)
