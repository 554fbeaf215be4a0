"""`MODEL_VARIANT` reaches the loader: a repo whose weights are only `model.fp16.safetensors` loads."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import make_settings
from volcache.testing.models import build_tiny_causal_lm
from volcache.worker import JobContext, _load


def test_a_variant_only_checkpoint_loads_with_model_variant(tmp_path: Path) -> None:
    import transformers

    plain = build_tiny_causal_lm(tmp_path / "plain")
    variant = tmp_path / "variant"
    transformers.AutoModelForCausalLM.from_pretrained(plain).save_pretrained(variant, variant="fp16")
    transformers.AutoTokenizer.from_pretrained(plain).save_pretrained(variant)
    assert (variant / "model.fp16.safetensors").is_file() and not (variant / "model.safetensors").exists()

    settings = make_settings(tmp_path / "volume", MODEL_VARIANT="fp16", VOLCACHE_LOAD="mmap", VOLCACHE_DEVICE="cpu")
    ctx = _load.load_context(variant, "text-generation", settings)
    assert ctx.read_kwargs["variant"] == "fp16"
    task = _load.load_task(ctx)
    request = task.decode({"prompt": "hello", "max_new_tokens": 2})
    (out,) = task.run(request, _job())
    assert out["usage"]["completion_tokens"] <= 2

    assert "variant" not in _load.load_context(plain, "text-generation", make_settings(tmp_path / "v2")).read_kwargs


def _job() -> JobContext:
    return JobContext("j", "tiny")
