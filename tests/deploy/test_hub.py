"""The RunPod Hub listing cannot start a broken worker: every value its form offers parses.

The Hub turns `.runpod/hub.json` into a form; what the user picks becomes the worker's
environment on top of the image's `ENV`. A value `Settings` rejects makes the worker exit at
start, so every default, every preset, every option and both ends of every number's range are
parsed here with `Settings.from_env`, on top of the Dockerfile's own environment. Variables that
today's `Settings` does not read are ignored by it, as the worker ignores them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from tests.deploy._image import DOCKERFILE, BaseImage, final_env, parse, read_constraints
from volcache import Settings

HUB = json.loads((REPO_ROOT / ".runpod/hub.json").read_text(encoding="utf-8"))
TESTS = json.loads((REPO_ROOT / ".runpod/tests.json").read_text(encoding="utf-8"))
ENV = HUB["config"]["env"]
INPUTS = {entry["key"]: entry["input"] for entry in ENV if "input" in entry}
PRESETS = HUB["config"]["presets"]
# Names other sessions and the listing's users rely on: renaming one is a change to announce.
STABLE_PRESETS = {
    "all-MiniLM-L6-v2 (embeddings)",
    "Qwen2.5-0.5B-Instruct (chat)",
    "SDXL-Turbo (text-to-image)",
}
INPUT_TYPES = {"string", "number", "boolean", "huggingface"}


def as_env(value: Any, spec: dict[str, Any] | None = None) -> str:
    """How a form value reaches the environment: text as it is, numbers in decimal, booleans by choice."""
    if isinstance(value, bool):
        spec = spec or {}
        return str(spec.get("trueValue", "true") if value else spec.get("falseValue", "false"))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def image_env() -> dict[str, str]:
    return final_env(parse(DOCKERFILE.read_text(encoding="utf-8")))


def defaults() -> dict[str, str]:
    return {key: as_env(spec["default"], spec) for key, spec in INPUTS.items() if "default" in spec}


def start_settings(form: dict[str, str]) -> Settings:
    """The settings a worker of this listing starts with: image ENV, then the form's values."""
    return Settings.from_env(env={**image_env(), **form})


def form_values() -> Iterator[tuple[str, str]]:
    """Every value the form lets one pick, except free text: options, booleans, number bounds."""
    for key, spec in INPUTS.items():
        for option in spec.get("options", []):
            yield key, as_env(option["value"])
        if spec["type"] == "boolean":
            yield key, as_env(True, spec)
            yield key, as_env(False, spec)
        if spec["type"] == "number":
            yield key, as_env(spec["min"])
            yield key, as_env(spec["max"])


def test_the_listing_has_what_the_hub_requires() -> None:
    assert {"title", "description", "type", "category", "config", "iconUrl"} <= set(HUB)
    assert HUB["type"] == "serverless" and HUB["category"] in {"audio", "embedding", "language", "video", "image"}
    assert re.fullmatch(r"https://\S+", HUB["iconUrl"])
    config = HUB["config"]
    assert config["runsOn"] == "GPU" and config["gpuCount"] >= 1 and config["gpuIds"]
    assert isinstance(config["containerDiskInGb"], int) and config["containerDiskInGb"] > 0
    keys = [entry["key"] for entry in ENV]
    assert keys[0] == "MODEL_NAME" and len(keys) == len(set(keys))


def test_every_input_is_well_formed() -> None:
    for key, spec in INPUTS.items():
        assert {"name", "type", "description"} <= set(spec), key
        assert spec["type"] in INPUT_TYPES, f"{key}: type {spec['type']!r}"
        options = spec.get("options")
        if options is not None:
            values = [option["value"] for option in options]
            assert values and all({"label", "value"} <= set(o) for o in options), key
            assert len(values) == len(set(values)), f"{key}: an option twice"
            assert spec.get("default") in values, f"{key}: the default {spec.get('default')!r} is not an option"
        if spec["type"] == "number":
            assert isinstance(spec.get("min"), int | float) and isinstance(spec.get("max"), int | float), key
            assert 0 < spec["min"] <= spec["max"], f"{key}: min {spec['min']} max {spec['max']}"
            if "default" in spec:
                assert spec["min"] <= spec["default"] <= spec["max"], key


def test_the_model_is_picked_from_the_hugging_face_hub() -> None:
    assert INPUTS["MODEL_NAME"]["type"] == "huggingface"
    assert INPUTS["MODEL_NAME"]["default"] == Settings().model


def test_closed_sets_are_options_not_free_text() -> None:
    """A setting with a handful of valid values is a choice in the form, so no typo can reach it."""
    for key in ("MODEL_TASK", "MODEL_VARIANT", "VOLCACHE_LOAD", "VOLCACHE_DTYPE"):
        assert INPUTS[key].get("options"), f"{key} is free text"
    assert {o["value"] for o in INPUTS["VOLCACHE_LOAD"]["options"]} == {"auto", "mmap", "read", "prefetch"}
    assert "MODEL_ENGINE" not in INPUTS  # the Hub's image has transformers only; vLLM is Dockerfile.vllm


def test_the_defaults_start_the_default_model() -> None:
    settings = start_settings(defaults())
    assert settings.model == INPUTS["MODEL_NAME"]["default"] and settings.revision == "main"
    assert str(settings.volume) == "/runpod-volume" and settings.load == "auto"
    assert (settings.concurrency, settings.max_batch) == (1, 64)


@pytest.mark.parametrize("key, value", list(form_values()), ids=lambda v: str(v))
def test_every_value_the_form_offers_parses(key: str, value: str) -> None:
    start_settings({**defaults(), key: value})


@pytest.mark.parametrize("preset", PRESETS, ids=[p["name"] for p in PRESETS])
def test_every_preset_starts(preset: dict[str, Any]) -> None:
    values = preset["defaults"]
    unknown = sorted(set(values) - set(INPUTS))
    assert not unknown, f"{preset['name']} sets {unknown}, which the form does not show"
    for key, value in values.items():
        spec = INPUTS[key]
        if "options" in spec:
            assert value in [o["value"] for o in spec["options"]], f"{preset['name']}: {key}={value!r}"
        if spec["type"] == "number":
            assert spec["min"] <= value <= spec["max"], f"{preset['name']}: {key}={value}"
    settings = start_settings({**defaults(), **{k: as_env(v, INPUTS[k]) for k, v in values.items()}})
    assert settings.model == values["MODEL_NAME"] and settings.task == values.get("MODEL_TASK")


def test_preset_names_stay_stable() -> None:
    assert {p["name"] for p in PRESETS} == STABLE_PRESETS


def test_the_hub_tests_run_the_default_listing_with_time_for_a_first_download() -> None:
    config = TESTS["config"]
    Settings.from_env(env={**image_env(), **{e["key"]: e["value"] for e in config["env"]}})
    assert config["allowedCudaVersions"] == HUB["config"]["allowedCudaVersions"]
    # The first test downloads the model onto an empty volume; RunPod's own workers allow 300 s.
    assert all(t["timeout"] >= 300_000 for t in TESTS["tests"]), [t["timeout"] for t in TESTS["tests"]]


def test_every_allowed_cuda_runs_the_base_images_cuda() -> None:
    """A CUDA X.Y runtime runs on drivers for X.Y and later; 13.0 drivers still run 12.x builds."""
    base = BaseImage.from_dockerfile()
    allowed = [tuple(int(p) for p in v.split(".")) for v in HUB["config"]["allowedCudaVersions"]]
    assert all(version >= base.cuda for version in allowed), (base.cuda, allowed)
    assert (13, 0) in allowed and base.cuda in allowed


def test_the_hub_readme_tells_a_user_what_they_deploy() -> None:
    text = (REPO_ROOT / ".runpod/README.md").read_text(encoding="utf-8")
    for needed in ("network volume", "/runpod-volume", "CUDA", "container disk", "MODEL_NAME", "MODEL_REVISION"):
        assert needed in text, needed
    for preset in PRESETS:
        assert preset["name"] in text, f".runpod/README.md does not present {preset['name']}"
    for cuda in HUB["config"]["allowedCudaVersions"]:
        assert cuda in text, cuda


def image_has_vllm() -> bool:
    """Whether the image the Hub builds (the root Dockerfile) can run the vLLM engine."""
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE.read_text(encoding="utf-8"), re.MULTILINE)
    return "vllm" in read_constraints() or (base is not None and "vllm" in base.group(1))


def test_every_preset_runs_on_the_image_the_hub_builds() -> None:
    """The Hub builds only the root Dockerfile, which has no vLLM (vLLM 0.32 needs torch 2.13 and
    transformers < 5.20): a vLLM preset would stop at start, so the vLLM engine ships as `Dockerfile.vllm`."""
    engines = {p["name"]: p["defaults"].get("MODEL_ENGINE", "") for p in PRESETS}
    needs_vllm = sorted(name for name, engine in engines.items() if engine == "vllm")
    assert not needs_vllm or image_has_vllm(), f"presets {needs_vllm} need vLLM, which the Hub's image lacks"


_PIPELINE_CHECK = """
import sys
from transformers.pipelines import check_task
for task in sys.argv[1:]:
    check_task(task)
"""
DIFFUSERS_TASKS = {"text-to-image", "image-to-image"}  # registered by the image issue (14)


def test_every_task_option_names_a_task_the_worker_serves() -> None:
    """Each task in the form is a volcache task or a transformers pipeline task (checked by transformers)."""
    from volcache.worker.tasks import TASKS

    offered = [o["value"] for o in INPUTS["MODEL_TASK"]["options"] if o["value"]]
    registered = {key for key in TASKS if isinstance(key, str)}
    missing = sorted(DIFFUSERS_TASKS - registered)
    pipelines = [t for t in offered if t not in registered and t not in DIFFUSERS_TASKS]
    proc = subprocess.run([sys.executable, "-c", _PIPELINE_CHECK, *pipelines], capture_output=True, text=True)
    assert proc.returncode == 0, f"not a transformers pipeline task: {proc.stderr.strip().splitlines()[-1]}"
    if missing:
        pytest.skip(f"{missing} are offered but not registered yet (the image issue registers them)")
