"""Start-up: the phase order, task detection, handler choice, disk facts, and a light import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.conftest import REPO_ROOT, make_settings, subprocess_env
from volcache import ConfigError, ModelStore, Resolution, Settings
from volcache.cli import cli
from volcache.worker import STARTED_PREFIX, StartupReport, Worker, _load, detect_task, normalize_task
from volcache.worker import _startup as startup
from volcache.worker._startup import disk_facts, runs_once, snapshot_bytes, tree_bytes, weight_bytes
from volcache.worker.tasks.base import LoadContext


def test_prepare_runs_the_phases_in_the_contract_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    settings = make_settings(tmp_path / "volume", MODEL_TASK="embeddings")
    snapshot = tmp_path / "snap"
    snapshot.mkdir()

    class Store:
        hold = ModelStore.hold  # the real recipe, over this fake's look-ups

        def __init__(self, s: Settings) -> None:
            self.settings = s
            calls.append("store")

        def resolve(self) -> Resolution:
            calls.append("ensure")
            return Resolution("org/name", "main", snapshot, "volume", "a" * 40, 10)

        def find_local(self, model: str, revision: str, selection: object = None) -> Resolution:
            calls.append("recheck")  # after the in-use marker: a prune may have run meanwhile
            return Resolution(model, revision, snapshot, "volume", "a" * 40, 10)

        def mark_used(self, resolution: Resolution) -> None:
            calls.append("mark_used")

    class Task:
        name = "embeddings"

        def warmup(self) -> None:
            calls.append("warmup")

    def load(ctx: LoadContext) -> Task:
        calls.append(f"load {ctx.task} {ctx.path.name}")
        return Task()

    monkeypatch.setattr(startup, "pin", lambda s: calls.append("pin"))

    def cleanup(paths: object, volume: Path, protected: object = ()) -> _Report:
        calls.append("cleanup")
        return _Report()

    monkeypatch.setattr(startup, "remove_stale_caches", cleanup)
    monkeypatch.setattr(startup, "ModelStore", Store)
    monkeypatch.setattr(startup, "go_offline", lambda: calls.append("offline"))
    monkeypatch.setattr(startup, "load_task", load)
    monkeypatch.setattr(_load, "resolve_device", lambda requested: "cpu")
    worker, report = startup.prepare(settings)
    for held in startup._HELD:
        held.release()
    startup._HELD.clear()
    assert calls == [
        "pin", "cleanup", "store", "ensure", "recheck", "mark_used", "offline", "load embeddings snap", "warmup"
    ]  # fmt: skip
    assert isinstance(worker, Worker)
    assert list(report.timings) == ["pin", "cleanup", "ensure", "load", "warmup", "total"]
    line = report.log_line()
    assert line.startswith(STARTED_PREFIX)
    parsed = StartupReport.parse("12:00:00 INFO " + line)
    assert parsed["source"] == "volume" and parsed["disk"]["model_bytes"] == 10
    assert set(parsed["disk"]) == {"volume_bytes", "model_bytes", "container_disk_weight_bytes", "free_bytes"}


class _Report:
    bytes_freed = 0


@pytest.mark.parametrize(
    ("argv", "env", "once"),
    [
        (["--rp_serve_api", "--rp_api_port", "8000"], {}, False),
        (["--test_input", "{}"], {}, True),
        (["--test_input={}"], {"RUNPOD_WEBHOOK_GET_JOB": "https://api/job-take/x"}, True),
        ([], {}, True),  # local: RunPod's SDK runs test_input.json once
        ([], {"RUNPOD_WEBHOOK_GET_JOB": "https://api/job-take/x"}, False),
        ([], {"RUNPOD_REALTIME_PORT": "8080"}, True),
    ],
)
def test_the_handler_streams_except_where_the_sdk_calls_it_once(
    tmp_path: Path, argv: list[str], env: dict[str, str], once: bool
) -> None:
    assert runs_once(argv, make_settings(tmp_path, **env)) is once


def write_config(folder: Path, **config: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    ("architectures", "task"),
    [
        (["LlamaForCausalLM"], "text-generation"),
        (["GPT2LMHeadModel"], "text-generation"),
        (["BertForSequenceClassification"], "text-classification"),
        (["RobertaForTokenClassification"], "token-classification"),
        (["BertForMaskedLM"], "fill-mask"),
    ],
)
def test_task_detection_from_the_config(tmp_path: Path, architectures: list[str], task: str) -> None:
    assert detect_task(write_config(tmp_path, architectures=architectures)) == task


def test_a_sentence_transformers_folder_is_embeddings(tmp_path: Path) -> None:
    folder = write_config(tmp_path, architectures=["BertModel"])
    (folder / "modules.json").write_text("[]")
    assert detect_task(folder) == "embeddings"


@pytest.mark.parametrize("config", [{"architectures": ["T5ForConditionalGeneration"]}, {}, None])
def test_an_undetectable_task_says_to_set_model_task(tmp_path: Path, config: dict[str, Any] | None) -> None:
    folder = write_config(tmp_path, **config) if config is not None else tmp_path
    with pytest.raises(ConfigError, match="set MODEL_TASK to embeddings, text-generation"):
        detect_task(folder, "org/name")


def test_task_aliases() -> None:
    assert normalize_task(" Sentence_Similarity ") == "embeddings"
    assert normalize_task("chat") == "text-generation"
    assert normalize_task("text-classification") == "text-classification"


def test_disk_facts_count_weights_once_and_never_follow_links(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    repo = volume / "models/hub/models--org--name"
    (repo / "blobs").mkdir(parents=True)
    (repo / "snapshots/abc").mkdir(parents=True)
    (repo / "blobs/deadbeef").write_bytes(b"w" * 1000)
    (repo / "snapshots/abc/model.safetensors").symlink_to(repo / "blobs/deadbeef")
    scratch = tmp_path / "tmp-models"
    scratch.mkdir()
    (scratch / "pytorch_model.bin").write_bytes(b"x" * 50)
    (scratch / "notes.txt").write_bytes(b"y" * 7)
    (scratch / "link.safetensors").symlink_to(repo / "blobs/deadbeef")
    assert tree_bytes(volume / "models/hub") == 1000
    assert snapshot_bytes(repo / "snapshots/abc") == 1000
    assert weight_bytes(scratch) == 50
    settings = make_settings(volume, VOLCACHE_STALE_CACHES=str(scratch), VOLCACHE_EPHEMERAL=str(tmp_path / "eph"))
    facts = disk_facts(settings, Resolution("org/name", "main", repo / "snapshots/abc", "volume", "abc", 0))
    assert (facts.volume_bytes, facts.model_bytes, facts.container_disk_weight_bytes) == (1000, 1000, 50)
    assert facts.free_bytes > 0


def test_importing_the_worker_imports_no_heavy_library(tmp_path: Path) -> None:
    code = (
        "import sys, runpy; import volcache.worker, volcache.cli._serve, volcache.demo; "
        "runpy.run_path('handler.py', run_name='not_main'); "
        "heavy = ('torch', 'transformers', 'sentence_transformers', 'huggingface_hub', 'runpod'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    env = subprocess_env(tmp_path / "volume")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_volcache_serve_help_lists_runpods_flags() -> None:
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0
    assert "--test_input" in result.output and "--rp_serve_api" in result.output


def test_a_startup_error_is_one_line_and_exit_status_1(tmp_path: Path) -> None:
    env = subprocess_env(tmp_path / "volume", MODEL_NAME="/does/not/exist", HOME=str(tmp_path / "home"))
    for command in (["-m", "volcache.worker"], ["-m", "volcache", "serve"]):
        proc = subprocess.run(
            [sys.executable, *command, "--test_input", '{"input": {}}'], env=env, capture_output=True, text=True
        )
        assert proc.returncode == 1
        assert proc.stderr.strip().splitlines()[-1] == (
            "volcache: error: /does/not/exist looks like a local path but is not a folder."
        )


def test_offline_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    class Constants:
        HF_HUB_OFFLINE = False

    monkeypatch.setitem(sys.modules, "huggingface_hub.constants", Constants)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    startup.go_offline()
    assert Constants.HF_HUB_OFFLINE is True and os.environ["HF_HUB_OFFLINE"] == "1"
