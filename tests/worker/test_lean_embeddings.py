"""The lean embeddings path gives sentence-transformers' vectors, and says when it cannot.

The comparisons run in one subprocess (torch, transformers and sentence-transformers stay out
of the test process): the real all-MiniLM-L6-v2 and a tiny random BERT, every pooling mode, with
and without a Normalize module, a RoBERTa that goes through transformers' `AutoModel`, and a
model with a Dense layer that falls back to sentence-transformers, each checked against
`SentenceTransformer.encode` on the same texts, normalised and not.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import subprocess_env
from volcache.worker.tasks import _lean_embeddings as lean

TEXTS = [
    "A man is eating food.",
    "The weights are stored once, on the network volume.",
    "ÜBER Café naïve façade — déjà vu",
    "",
    "x",
    "hello world " * 200,  # truncated at max_seq_length
    "RunPod serverless scales workers out and in; they share the volume.",
]

_COMPARE = r"""
import json, sys
from pathlib import Path
import numpy as np
from sentence_transformers import SentenceTransformer
from volcache.worker.tasks import _lean_embeddings as lean
from volcache.worker.tasks.embeddings import EmbeddingsTask
from volcache.worker._schemas import Limits
from volcache.worker.tasks.base import LoadContext

texts = json.loads(sys.argv[1])
out = {}
for folder in sys.argv[2:]:
    kwargs = {"variant": "v1"} if folder.endswith("-variant") else {}  # MODEL_VARIANT=v1
    reference = SentenceTransformer(folder, device="cpu", local_files_only=True, model_kwargs=kwargs or None)
    try:
        model = lean.build(lean.plan(Path(folder)), "cpu", kwargs)
        kind = type(model.encoder.model).__name__
    except lean.Unsupported as why:
        model, kind = None, f"unsupported: {why}"
    row = {"kind": kind}
    if model is not None:
        for normalize in (False, True):
            a = model.encode(texts, batch_size=3, normalize_embeddings=normalize)
            b = reference.encode(texts, batch_size=3, normalize_embeddings=normalize, convert_to_numpy=True)
            cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
            row[str(normalize)] = {"min_cosine": float(cos.min()), "max_abs": float(np.abs(a - b).max()),
                                   "shape": list(a.shape), "norms": [float(x) for x in np.linalg.norm(a, axis=1)]}
        lean_tokens = model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)["input_ids"]
        st_tokens = reference.tokenizer(texts, truncation=True, max_length=reference.max_seq_length)["input_ids"]
        row["same_tokens"] = lean_tokens == st_tokens
        row["dimension"] = [model.get_embedding_dimension(), reference.get_embedding_dimension()]
    ctx = LoadContext(path=Path(folder), model="m", task="embeddings", settings=None, device="cpu",
                      limits=Limits(), strategy="mmap", read_kwargs=kwargs)
    task = EmbeddingsTask.load(ctx)
    got = np.array(task.embed(texts, normalize=True).vectors)
    want = reference.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    row["task"] = {"model": type(task.model).__name__, "max_abs": float(np.abs(got - want).max())}
    out[folder] = row
print("RESULT " + json.dumps(out))
"""

_BUILD = r"""
import json, sys
from pathlib import Path
import torch, transformers
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer import modules as models
from volcache.testing.models import build_tiny_sentence_transformer, word_tokenizer

base = Path(sys.argv[1])
tiny = build_tiny_sentence_transformer(base / "tiny")
tok = word_tokenizer()
config = transformers.RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64, max_position_embeddings=140, pad_token_id=tok.pad_token_id)
torch.manual_seed(1)
roberta = base / "roberta"
transformers.RobertaModel(config).eval().save_pretrained(roberta)
tok.save_pretrained(roberta)
for name in ("modules.json", "sentence_bert_config.json"):
    (roberta / name).write_text((tiny / name).read_text())
(roberta / "1_Pooling").mkdir()
(roberta / "1_Pooling" / "config.json").write_text((tiny / "1_Pooling" / "config.json").read_text())
torch.manual_seed(2)
dense = SentenceTransformer(modules=[models.Transformer(str(tiny), max_seq_length=128),
                                     models.Pooling(32, "mean"), models.Dense(32, 16)], device="cpu")
dense.save(str(base / "dense"))
"""


def _run(code: str, *args: str, base: Path) -> subprocess.CompletedProcess[str]:
    env = subprocess_env(base / "unused-volume", HOME=str(base / "home"), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """MiniLM, the tiny BERT in every pooling variant, a RoBERTa and a model with a Dense layer."""
    from volcache.testing import minilm_folder

    base = tmp_path_factory.mktemp("lean")
    proc = _run(_BUILD, str(base), base=base)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folders = {"minilm": minilm_folder(), "tiny": base / "tiny", "roberta": base / "roberta", "dense": base / "dense"}
    variants: dict[str, dict[str, Any]] = {
        "cls": {"pooling_mode": "cls"},
        "max": {"pooling_mode": "max"},
        "sqrt": {"pooling_mode_mean_sqrt_len_tokens": True},
        "last": {"pooling_mode": "lasttoken"},
        "cls+mean": {"pooling_mode": ["cls", "mean"]},
    }
    for name, pooling in variants.items():
        folder = base / f"tiny-{name}"
        shutil.copytree(base / "tiny", folder)
        (folder / "1_Pooling" / "config.json").write_text(json.dumps({"embedding_dimension": 32, **pooling}))
        modules = json.loads((folder / "modules.json").read_text())
        if name in ("max", "cls+mean"):  # no Normalize module: the raw vectors must match too
            (folder / "modules.json").write_text(json.dumps(modules[:2]))
        folders[f"tiny-{name}"] = folder
    variant = base / "tiny-variant"  # only `model.v1.safetensors`, as the store leaves a MODEL_VARIANT repo
    shutil.copytree(base / "tiny", variant)
    (variant / "model.safetensors").rename(variant / "model.v1.safetensors")
    folders["tiny-variant"] = variant
    return folders


@pytest.fixture(scope="module")
def compared(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    base = tmp_path_factory.mktemp("compare")
    proc = _run(_COMPARE, json.dumps(TEXTS), *map(str, models.values()), base=base)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    by_folder = json.loads(line.removeprefix("RESULT "))
    return {name: by_folder[str(folder)] for name, folder in models.items()}


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    ["minilm", "tiny", "roberta", "tiny-cls", "tiny-max", "tiny-sqrt", "tiny-last", "tiny-cls+mean", "tiny-variant"],
)
def test_lean_vectors_equal_sentence_transformers(compared: dict[str, dict[str, Any]], name: str) -> None:
    row = compared[name]
    assert row["kind"] == ("RobertaModel" if name == "roberta" else "BertEncoder")
    for normalize in ("False", "True"):
        assert row[normalize]["min_cosine"] >= 0.9999, (name, normalize, row[normalize])
        assert row[normalize]["max_abs"] < 1e-4, (name, normalize, row[normalize])
        assert row[normalize]["shape"] == [len(TEXTS), row["dimension"][1]]
    assert row["same_tokens"]
    assert row["task"]["model"] == "LeanSentenceModel"  # EmbeddingsTask.load takes the lean path
    assert row["task"]["max_abs"] < 1e-4
    assert row["dimension"][0] == row["dimension"][1]
    # Normalised when asked, or when the model declares a Normalize module; raw otherwise.
    declared = name not in ("tiny-max", "tiny-cls+mean")
    assert all(abs(n - 1) < 1e-5 for n in row["True"]["norms"])
    raw_unit = all(abs(n - 1) < 1e-5 for n in row["False"]["norms"])
    assert raw_unit == declared


@pytest.mark.slow
def test_a_dense_layer_is_not_lean(compared: dict[str, dict[str, Any]]) -> None:
    """sentence-transformers 6 saves `base.modules.dense.Dense`: the task falls back to it, same vectors."""
    assert compared["dense"]["kind"].startswith("unsupported: modules Transformer → Pooling → Dense")
    assert compared["dense"]["task"]["model"] == "SentenceTransformer"
    assert compared["dense"]["task"]["max_abs"] < 1e-6


# -- the plan, from the JSON files alone (no torch) ------------------------------------------------
def _snapshot(tmp_path: Path, modules: list[dict[str, Any]], pooling: dict[str, Any] | None = None) -> Path:
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "1_Pooling").mkdir(exist_ok=True)
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling or {"pooling_mode_mean_tokens": True}))
    return tmp_path


def _modules(*types: str, paths: tuple[str, ...] = ("", "1_Pooling", "2_Normalize")) -> list[dict[str, Any]]:
    pairs = zip(types, paths, strict=False)
    return [{"idx": i, "name": str(i), "path": p, "type": t} for i, (t, p) in enumerate(pairs)]


OLD = ("sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling")
NEW = ("sentence_transformers.base.modules.Transformer", "sentence_transformers.sentence_transformer.modules.Pooling")


@pytest.mark.parametrize("names", [OLD, NEW])
def test_plan_reads_both_generations_of_module_names(tmp_path: Path, names: tuple[str, str]) -> None:
    folder = _snapshot(tmp_path, _modules(*names, "sentence_transformers.models.Normalize"))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 77, "do_lower_case": True}))
    plan = lean.plan(folder)
    assert plan == lean.Plan(folder, 77, True, ("mean",), True)


@pytest.mark.parametrize(
    ("modules", "pooling", "extra", "reason"),
    [
        (_modules(*OLD, "sentence_transformers.models.Dense"), None, {}, "Transformer → Pooling → Dense"),
        (_modules(*OLD, "my_package.Custom"), None, {}, "module type my_package.Custom"),
        (_modules(OLD[0]), None, {}, "modules Transformer"),
        (_modules(*OLD), {"pooling_mode": "weightedmean"}, {}, "pooling weightedmean"),
        (_modules(*OLD), {"pooling_mode": "mean", "include_prompt": False}, {}, "excludes prompts"),
        (_modules(*OLD, paths=("../elsewhere", "1_Pooling")), None, {}, "leaves the snapshot"),
        (_modules(*OLD), None, {"config_sentence_transformers.json": {"default_prompt_name": "query"}}, "prompt"),
        (_modules(*OLD), None, {"sentence_bert_config.json": {"model_args": {"trust_remote_code": 1}}}, "model_args"),
    ],
)
def test_plan_refuses_what_it_does_not_know(
    tmp_path: Path, modules: list[dict[str, Any]], pooling: dict[str, Any] | None, extra: dict[str, Any], reason: str
) -> None:
    folder = _snapshot(tmp_path, modules, pooling)
    for name, content in extra.items():
        (folder / name).write_text(json.dumps(content))
    with pytest.raises(lean.Unsupported, match=reason):
        lean.plan(folder)


def test_plan_needs_a_fast_tokenizer(tmp_path: Path) -> None:
    folder = _snapshot(tmp_path, _modules(*OLD))
    (folder / "tokenizer.json").unlink()
    with pytest.raises(lean.Unsupported, match=r"tokenizer\.json"):
        lean.plan(folder)
