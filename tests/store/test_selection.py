"""The selection rules on listings shaped like real repositories (same names and proportions)."""

from __future__ import annotations

import json

import pytest

from volcache._errors import SelectionError
from volcache.store.selection import Plan, RemoteFile, Selection, deciding_files, plan_selection

GB = 1000**3


def _listing(files: dict[str, int]) -> list[RemoteFile]:
    return [RemoteFile(path, size, "a" * 64, "a" * 64) for path, size in files.items()]


def _index(*shards: str) -> bytes:
    return json.dumps({"metadata": {}, "weight_map": {f"w{i}": s for i, s in enumerate(shards)}}).encode()


def _plan(files: dict[str, int], contents: dict[str, bytes], selection: Selection | None = None) -> Plan:
    selection = selection or Selection()
    listing = _listing(files)
    # the planner asks only for files it was given here, round by round
    seen: dict[str, bytes] = {}
    while wanted := deciding_files(listing, seen, selection):
        for path in wanted:
            seen[path] = contents[path]
    return plan_selection(listing, seen, selection, model="org/x")


def _kept(plan: Plan) -> list[str]:
    return sorted(f.path for f in plan.kept if f.is_weight)


def _reason(plan: Plan, path: str) -> str:
    return next(f.reason for f in plan.files if f.path == path)


MISTRAL = {
    "config.json": 600,
    "consolidated.safetensors": 14 * GB,
    "model-00001-of-00003.safetensors": 5 * GB,
    "model-00002-of-00003.safetensors": 5 * GB,
    "model-00003-of-00003.safetensors": 4 * GB,
    "model.safetensors.index.json": 24_000,
    "params.json": 200,
    "tokenizer.json": 1_900_000,
    "tokenizer.model.v3": 580_000,
    ".gitattributes": 1500,
}
MISTRAL_INDEX = _index(*(f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)))


def test_mistral_shards_from_the_index_and_no_consolidated_copy() -> None:
    plan = _plan(MISTRAL, {"model.safetensors.index.json": MISTRAL_INDEX})
    assert _kept(plan) == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert _reason(plan, "consolidated.safetensors") == "consolidated duplicate"
    assert plan.kept_weight_bytes * 2 == plan.total_weight_bytes
    assert "model.safetensors.index.json" in plan.kept_paths and ".gitattributes" not in plan.kept_paths


def test_index_naming_an_unlisted_shard_is_refused() -> None:
    files = dict(MISTRAL)
    del files["model-00003-of-00003.safetensors"]
    with pytest.raises(SelectionError, match=r"model-00003-of-00003\.safetensors"):
        _plan(files, {"model.safetensors.index.json": MISTRAL_INDEX})


def test_index_cannot_name_a_path_outside_its_folder() -> None:
    with pytest.raises(SelectionError, match="not a file beside the index"):
        _plan(MISTRAL, {"model.safetensors.index.json": _index("../../etc/passwd")})


def test_shard_not_named_by_the_index_is_skipped() -> None:
    files = {**MISTRAL, "model-extra.safetensors": GB}
    plan = _plan(files, {"model.safetensors.index.json": MISTRAL_INDEX})
    assert "model-extra.safetensors" not in plan.kept_paths


LLAMA = {
    "config.json": 800,
    "generation_config.json": 180,
    "model.safetensors": 2_470_000_000,
    "original/consolidated.00.pth": 2_470_000_000,
    "original/params.json": 220,
    "original/tokenizer.model": 2_180_000,
    "tokenizer.json": 9_000_000,
}


def test_single_file_and_original_duplicate() -> None:
    plan = _plan(LLAMA, {})
    assert _kept(plan) == ["model.safetensors"]
    assert {_reason(plan, p) for p in LLAMA if p.startswith("original/")} == {"original-format duplicate"}


def test_pickles_only_when_no_safetensors_and_their_index() -> None:
    files = {
        "config.json": 1,
        "pytorch_model-00001-of-00002.bin": 10,
        "pytorch_model-00002-of-00002.bin": 10,
        "pytorch_model.bin.index.json": 1,
        "training_args.bin": 1,
    }
    index = _index("pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin")
    plan = _plan(files, {"pytorch_model.bin.index.json": index})
    assert _kept(plan) == ["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"]


def _sdxl() -> tuple[dict[str, int], dict[str, bytes]]:
    files = {
        "model_index.json": 600,
        "sd_xl_base_1.0.safetensors": 6_940_000_000,
        "sd_xl_base_1.0_0.9vae.safetensors": 6_940_000_000,
        "sd_xl_offset_example-lora_1.0.safetensors": 49_600_000,
        "scheduler/scheduler_config.json": 480,
        "tokenizer/vocab.json": 1_060_000,
        "tokenizer_2/vocab.json": 1_060_000,
        "text_encoder/config.json": 560,
        "text_encoder/model.safetensors": 492_000_000,
        "text_encoder/model.fp16.safetensors": 246_000_000,
        "text_encoder/openvino_model.bin": 492_000_000,
        "text_encoder/model.onnx": 492_000_000,
        "text_encoder_2/config.json": 570,
        "text_encoder_2/model.safetensors": 2_780_000_000,
        "text_encoder_2/model.fp16.safetensors": 1_390_000_000,
        "unet/config.json": 1_680,
        "unet/diffusion_pytorch_model.safetensors": 10_270_000_000,
        "unet/diffusion_pytorch_model.fp16.safetensors": 5_140_000_000,
        "unet/diffusion_pytorch_model.bin": 10_270_000_000,
        "unet/diffusion_pytorch_model.onnx": 10_270_000_000,
        "vae/config.json": 640,
        "vae/diffusion_pytorch_model.safetensors": 335_000_000,
        "vae/diffusion_pytorch_model.fp16.safetensors": 167_000_000,
        "vae_1_0/diffusion_pytorch_model.safetensors": 335_000_000,
        "vae_decoder/model.onnx": 198_000_000,
    }
    components = {
        "_class_name": "StableDiffusionXLPipeline",
        "_diffusers_version": "0.19.0",
        "force_zeros_for_empty_prompt": True,
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "image_encoder": [None, None],
    }
    return files, {"model_index.json": json.dumps(components).encode()}


def test_sdxl_fp16_reads_the_components_variant_only() -> None:
    files, contents = _sdxl()
    plan = _plan(files, contents, Selection(variant="fp16"))
    assert _kept(plan) == [
        "text_encoder/model.fp16.safetensors",
        "text_encoder_2/model.fp16.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/diffusion_pytorch_model.fp16.safetensors",
    ]
    assert plan.kept_weight_bytes < 7 * GB < 35 * GB < plan.total_weight_bytes
    assert _reason(plan, "sd_xl_base_1.0.safetensors") == "root checkpoint or LoRA beside the diffusers layout"
    assert _reason(plan, "vae_1_0/diffusion_pytorch_model.safetensors") == "not a component in model_index.json"
    assert _reason(plan, "unet/diffusion_pytorch_model.bin") == "pickled duplicate of the safetensors"
    assert _reason(plan, "unet/diffusion_pytorch_model.onnx") == "onnx export"
    assert _reason(plan, "unet/diffusion_pytorch_model.safetensors") == "plain weights; variant fp16 chosen"


def test_sdxl_without_variant_reads_the_plain_files() -> None:
    files, contents = _sdxl()
    plan = _plan(files, contents)
    assert _kept(plan) == [
        "text_encoder/model.safetensors",
        "text_encoder_2/model.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
    ]
    assert _reason(plan, "unet/diffusion_pytorch_model.fp16.safetensors") == "variant fp16, not asked for"


def test_variant_falls_back_to_plain_files_per_component() -> None:
    files, contents = _sdxl()
    del files["vae/diffusion_pytorch_model.fp16.safetensors"]
    plan = _plan(files, contents, Selection(variant="fp16"))
    assert "vae/diffusion_pytorch_model.safetensors" in plan.kept_paths
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in plan.kept_paths


def test_flux_sharded_component_with_its_own_index_and_no_root_checkpoint() -> None:
    files = {
        "model_index.json": 500,
        "flux1-dev.safetensors": 23_800_000_000,
        "ae.safetensors": 335_000_000,
        "transformer/config.json": 400,
        "transformer/diffusion_pytorch_model-00001-of-00003.safetensors": 9_960_000_000,
        "transformer/diffusion_pytorch_model-00002-of-00003.safetensors": 9_950_000_000,
        "transformer/diffusion_pytorch_model-00003-of-00003.safetensors": 3_870_000_000,
        "transformer/diffusion_pytorch_model.safetensors.index.json": 120_000,
        "text_encoder_2/model-00001-of-00002.safetensors": 4_990_000_000,
        "text_encoder_2/model-00002-of-00002.safetensors": 4_530_000_000,
        "text_encoder_2/model.safetensors.index.json": 19_900,
        "text_encoder/model.safetensors": 246_000_000,
        "vae/diffusion_pytorch_model.safetensors": 168_000_000,
    }
    model_index = {
        k: v
        for k, v in {
            "_class_name": "FluxPipeline",
            "transformer": ["diffusers", "FluxTransformer2DModel"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "text_encoder_2": ["transformers", "T5EncoderModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        }.items()
    }
    t_shards = [f"diffusion_pytorch_model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    contents = {
        "model_index.json": json.dumps(model_index).encode(),
        "transformer/diffusion_pytorch_model.safetensors.index.json": _index(*t_shards),
        "text_encoder_2/model.safetensors.index.json": _index(
            "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
        ),
    }
    plan = _plan(files, contents)
    assert "flux1-dev.safetensors" not in plan.kept_paths and "ae.safetensors" not in plan.kept_paths
    assert plan.kept_weight_bytes == plan.total_weight_bytes - 23_800_000_000 - 335_000_000


GGUF = {
    "README.md": 9000,
    "tiny-Q4_K_M.gguf": 4_920_000_000,
    "tiny-Q8_0.gguf": 8_540_000_000,
    "tiny-F16-00001-of-00002.gguf": 8_000_000_000,
    "tiny-F16-00002-of-00002.gguf": 8_060_000_000,
}


def test_gguf_without_a_choice_lists_the_quantizations() -> None:
    with pytest.raises(SelectionError) as err:
        _plan(GGUF, {})
    message = str(err.value)
    assert "\n" not in message and "MODEL_FILE" in message
    for shown in (
        "Q4_K_M 4.9 GB (tiny-Q4_K_M.gguf)",
        "Q8_0 8.5 GB",
        "F16 16.1 GB (tiny-F16-00001-of-00002.gguf, 2 parts)",
    ):
        assert shown in message


@pytest.mark.parametrize(
    ("pattern", "kept"),
    [
        ("*Q4_K_M.gguf", ["tiny-Q4_K_M.gguf"]),
        ("*F16*", ["tiny-F16-00001-of-00002.gguf", "tiny-F16-00002-of-00002.gguf"]),
        ("tiny-F16.gguf", ["tiny-F16-00001-of-00002.gguf", "tiny-F16-00002-of-00002.gguf"]),
    ],
)
def test_model_file_picks_one_quantization_with_every_split_part(pattern: str, kept: list[str]) -> None:
    plan = _plan(GGUF, {}, Selection(file=pattern))
    assert _kept(plan) == kept and "README.md" in plan.kept_paths


def test_model_file_matching_nothing_lists_the_choices() -> None:
    with pytest.raises(SelectionError, match=r"matches no weight file.*Q8_0"):
        _plan(GGUF, {}, Selection(file="*Q2_K*"))


def test_model_file_on_a_sharded_repo_keeps_configs_and_drops_the_other_index() -> None:
    plan = _plan(MISTRAL, {"model.safetensors.index.json": MISTRAL_INDEX}, Selection(file="consolidated.safetensors"))
    assert _kept(plan) == ["consolidated.safetensors"]
    assert {"config.json", "tokenizer.json", "params.json"} <= plan.kept_paths
    assert _reason(plan, "model.safetensors.index.json") == "index of other weights"


def test_sentence_transformers_modules_and_exports() -> None:
    files = {
        "modules.json": 350,
        "config.json": 600,
        "config_sentence_transformers.json": 120,
        "model.safetensors": 90_900_000,
        "pytorch_model.bin": 90_900_000,
        "onnx/model.onnx": 90_400_000,
        "onnx/model_qint8_avx512.onnx": 23_000_000,
        "openvino/openvino_model.bin": 90_300_000,
        "openvino/openvino_model.xml": 211_000,
        "1_Pooling/config.json": 190,
        "2_Normalize/.keep": 0,
        "3_Dense/model.safetensors": 1_000_000,
        "tokenizer.json": 466_000,
        "tf_model.h5": 91_000_000,
    }
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    plan = _plan(files, {"modules.json": json.dumps(modules).encode()})
    assert _kept(plan) == ["model.safetensors"]
    assert _reason(plan, "3_Dense/model.safetensors") == "not a module in modules.json"
    assert _reason(plan, "openvino/openvino_model.xml") == "openvino export"
    assert {"1_Pooling/config.json", "tokenizer.json", "modules.json"} <= plan.kept_paths


def test_include_still_adds_and_no_weights_is_refused() -> None:
    plan = _plan(LLAMA, {}, Selection(include=("original/*",)))
    assert "original/consolidated.00.pth" in plan.kept_paths
    with pytest.raises(SelectionError, match="no weight file"):
        _plan({"README.md": 10, "onnx/model.onnx": 100}, {})


def test_deciding_files_ask_only_for_what_decides() -> None:
    files, contents = _sdxl()
    files["unet/diffusion_pytorch_model.safetensors.index.json"] = 100
    files["unet/diffusion_pytorch_model.safetensors.index.fp16.json"] = 100
    files["vae_1_0/diffusion_pytorch_model.safetensors.index.json"] = 100
    listing = _listing(files)
    assert deciding_files(listing, {}, Selection()) == ["model_index.json"]
    assert deciding_files(listing, contents, Selection()) == ["unet/diffusion_pytorch_model.safetensors.index.json"]
    assert deciding_files(listing, contents, Selection(variant="fp16")) == [
        "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
        "unet/diffusion_pytorch_model.safetensors.index.json",
    ]


def test_selection_keys_and_labels() -> None:
    assert Selection().key == "" and Selection().label == "default"
    assert Selection(variant="fp16").label == "fp16" and len(Selection(variant="fp16").key) == 12
    assert Selection(variant="fp16").key != Selection(variant="bf16").key
    assert Selection.from_json(Selection(None, "*Q4*", ("a",)).to_json()) == Selection(None, "*Q4*", ("a",))
    with pytest.raises(SelectionError):
        Selection(variant="../x")


def test_settings_read_model_variant_and_model_file() -> None:
    from volcache import Settings
    from volcache._errors import ConfigError

    settings = Settings.from_env({"MODEL_VARIANT": "fp16", "MODEL_FILE": "*Q4_K_M.gguf"})
    assert (settings.variant, settings.model_file) == ("fp16", "*Q4_K_M.gguf")
    assert Settings.from_env({}).variant is None and Settings.from_env({}).model_file is None
    with pytest.raises(ConfigError, match="MODEL_VARIANT"):
        Settings.from_env({"MODEL_VARIANT": "fp16/../x"})
