"""Tiny random models for tests, built offline in a second: no download, no network.

Each builder writes a complete Hugging Face model folder (config, safetensors weights, a fast
tokenizer) that transformers, sentence-transformers and `volcache.worker` load like a real one:

- `build_tiny_sentence_transformer`: a 2-layer BERT with mean pooling and normalisation, in the
  sentence-transformers layout (`modules.json`, `1_Pooling/`), task ``embeddings``;
- `build_tiny_causal_lm`: a 2-layer Llama with a word-level tokenizer and a chat template, task
  ``text-generation``;
- `build_tiny_text_classifier`: a BERT sequence classifier with labels NEGATIVE/POSITIVE, task
  ``text-classification`` (a transformers pipeline task);
- `build_tiny_sd_pipeline`: a diffusers Stable Diffusion (or, with `sdxl`, SDXL: two text
  encoders) pipeline with real fp16 variant files beside the fp32 ones, task ``text-to-image``;
- `build_tiny_flux_pipeline`: a diffusers FLUX-style pipeline (a transformer over packed latents,
  CLIP and T5 text encoders), with bf16 variant files, task ``text-to-image``;
- layouts as real repositories ship them, for loader-exact downloads: `build_tiny_sharded_lm`
  (shards, index and a consolidated duplicate), `build_tiny_lm_with_original` (an `original/`
  duplicate), `build_tiny_st_with_exports` (onnx/openvino exports), `build_tiny_diffusers_repo`
  (fp32 and fp16 components, root single-file checkpoint, pickled duplicate, onnx export) and
  `build_tiny_gguf_repo` (several quantizations, one split in parts).

The outputs are random but deterministic for a given `seed`. Serve a folder with the Hub emulator
(`mirror_root_with(tmp, {"org/name": folder})`) or load it in place as a local model path.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

__all__ = [
    "SPECIAL_TOKENS",
    "WORDS",
    "build_tiny_causal_lm",
    "build_tiny_diffusers_repo",
    "build_tiny_flux_pipeline",
    "build_tiny_gguf_repo",
    "build_tiny_lm_with_original",
    "build_tiny_sd_pipeline",
    "build_tiny_sentence_transformer",
    "build_tiny_sharded_lm",
    "build_tiny_st_with_exports",
    "build_tiny_text_classifier",
    "word_tokenizer",
]

# Lower-case English words: enough for readable test sentences, small enough for tiny embeddings.
_WORD_TEXT = """
    a about above after again all also an and any are as at be because been before being below
    between both but by can cat could day did do does dog down during each few for from further
    good had has have he her here hers him his how i if in into is it its just know like little
    long make man me more most my new no nor not now of off on once one only or other our out over
    own people same say see she should so some such than that the their them then there these they
    thing think this those through time to too two under until up use very want was way we well
    were what when where which while who why will with woman work world would year you your
    weather sunny today rain tomorrow stock market fell sharply prices kitten sleeping sofa sat
    mat bank river money hello world quick brown fox jumps lazy happy sad great terrible love hate
    movie film book read write code python model volume disk cache weights fast slow
"""
WORDS = tuple(dict.fromkeys(_WORD_TEXT.split()))  # in order, each word once
SPECIAL_TOKENS = {
    "pad": "[PAD]",
    "unk": "[UNK]",
    "cls": "[CLS]",
    "sep": "[SEP]",
    "mask": "[MASK]",
    "bos": "<s>",
    "eos": "</s>",
}
_CHAT_ROLES = ("<|system|>", "<|user|>", "<|assistant|>")
# A Zephyr-like template; `messages` may hold system, user and assistant turns.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def word_tokenizer(*, chat: bool = False, model_max_length: int = 128) -> Any:
    """A fast word-level tokenizer over `WORDS` (a `PreTrainedTokenizerFast`), built in memory.

    With `chat`, the role markers are added tokens and `chat_template` is set; the BERT-style
    ``[CLS] text [SEP]`` framing is used otherwise.
    """
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel

    transformers = _heavy("transformers")

    specials = list(SPECIAL_TOKENS.values()) + (list(_CHAT_ROLES) if chat else [])
    vocab = {token: i for i, token in enumerate([*specials, *WORDS])}
    core = Tokenizer(WordLevel(vocab, unk_token=SPECIAL_TOKENS["unk"]))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    core.add_special_tokens(specials)
    if not chat:
        cls, sep = SPECIAL_TOKENS["cls"], SPECIAL_TOKENS["sep"]
        core.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}",
            pair=f"{cls} $A {sep} $B:1 {sep}:1",
            special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])],
        )
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=core,
        model_max_length=model_max_length,
        pad_token=SPECIAL_TOKENS["pad"],
        unk_token=SPECIAL_TOKENS["unk"],
        cls_token=SPECIAL_TOKENS["cls"],
        sep_token=SPECIAL_TOKENS["sep"],
        mask_token=SPECIAL_TOKENS["mask"],
        bos_token=SPECIAL_TOKENS["bos"],
        eos_token=SPECIAL_TOKENS["eos"],
    )
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_sentence_transformer(folder: str | Path, *, dim: int = 32, seed: int = 0) -> Path:
    """A random 2-layer BERT sentence embedder (`dim`-dimensional, normalised) at `folder`."""
    torch, transformers = _heavy("torch"), _heavy("transformers")
    out = _fresh(folder)
    tokenizer = word_tokenizer()
    config = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=dim,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * dim,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    transformers.BertModel(config).eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    pooling = {
        "word_embedding_dimension": dim,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    _write_json(out / "modules.json", modules)
    _write_json(out / "sentence_bert_config.json", {"max_seq_length": 128, "do_lower_case": False})
    _write_json(out / "1_Pooling" / "config.json", pooling)
    return out


def build_tiny_causal_lm(folder: str | Path, *, seed: int = 0, hidden_size: int = 32) -> Path:
    """A random 2-layer Llama with a word-level tokenizer and a chat template at `folder`.

    Two attention heads of `hidden_size / 2` each; vLLM's CPU attention needs a head size it
    supports (64 works, 16 does not), so the vLLM tests build it with `hidden_size=128`.

    The special tokens' output rows are zero, so greedy decoding never picks the end-of-sequence
    token: short generations run to `max_new_tokens`, which keeps streaming tests deterministic.
    """
    torch, transformers = _heavy("torch"), _heavy("transformers")
    out = _fresh(folder)
    tokenizer = word_tokenizer(chat=True)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        # Special tokens never win the arg-max: random text stays words, generation runs its length.
        for token_id in range(len(SPECIAL_TOKENS) + len(_CHAT_ROLES)):
            model.lm_head.weight[token_id].zero_()
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_tiny_text_classifier(folder: str | Path, *, seed: int = 0) -> Path:
    """A random BERT sentiment classifier (labels NEGATIVE and POSITIVE) at `folder`."""
    torch, transformers = _heavy("torch"), _heavy("transformers")
    out = _fresh(folder)
    tokenizer = word_tokenizer()
    config = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1},
    )
    torch.manual_seed(seed)
    transformers.BertForSequenceClassification(config).eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_tiny_sd_pipeline(
    folder: str | Path, *, variant_fp16: bool = True, sdxl: bool = False, width: int = 32, seed: int = 0
) -> Path:
    """A random Stable Diffusion-style diffusers pipeline at `folder` (SDXL-style with `sdxl`).

    The layout is the real one: `model_index.json`, one folder per component, safetensors
    weights; with `variant_fp16` each weight file also has its `.fp16.safetensors` twin in half
    precision (what `MODEL_VARIANT=fp16` selects). `width` is the UNet's first channel count:
    32 makes a ~1 MB pipeline for tests, a few hundred makes one of realistic read size for the
    benchmark. The VAE halves the image once (latents are a quarter of the pixels), so sizes are
    multiples of 8.
    """
    torch, transformers, diffusers = _heavy("torch"), _heavy("transformers"), _heavy("diffusers")
    out = _fresh(folder)
    tokenizer = _clip_tokenizer(out.parent / f".{out.name}-tokenizer")
    text_config = _tiny_clip_text_config(transformers, tokenizer)
    torch.manual_seed(seed)
    unet_extra: dict[str, Any] = {"cross_attention_dim": 32, "attention_head_dim": 2}
    if sdxl:  # the two encoders' hidden states are concatenated; pooled text + 6 size ids condition time
        unet_extra = {
            "cross_attention_dim": 64,
            "attention_head_dim": (2, 4),
            "use_linear_projection": True,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8,
            "transformer_layers_per_block": (1, 2),
            "projection_class_embeddings_input_dim": 6 * 8 + 32,
        }
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(width, 2 * width),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        norm_num_groups=min(32, width),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        **unet_extra,
    )
    vae = diffusers.AutoencoderKL(
        block_out_channels=[32, 32],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=32,
        sample_size=32,
    )
    scheduler = diffusers.EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading"
    )
    components: dict[str, Any] = {
        "unet": unet,
        "vae": vae,
        "scheduler": scheduler,
        "text_encoder": transformers.CLIPTextModel(text_config),
        "tokenizer": tokenizer,
    }
    if sdxl:
        components["text_encoder_2"] = transformers.CLIPTextModelWithProjection(text_config)
        components["tokenizer_2"] = tokenizer
        pipe = diffusers.StableDiffusionXLPipeline(**components, force_zeros_for_empty_prompt=True)
    else:
        pipe = diffusers.StableDiffusionPipeline(
            **components, safety_checker=None, feature_extractor=None, requires_safety_checker=False
        )
    pipe.save_pretrained(out, safe_serialization=True)
    if variant_fp16:
        pipe.to(torch.float16).save_pretrained(out, safe_serialization=True, variant="fp16")
    return out


def _tiny_clip_text_config(transformers: Any, tokenizer: Any) -> Any:
    """A 2-layer CLIP text encoder's config for `tokenizer` (hidden size 32)."""
    return transformers.CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        projection_dim=32,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_tiny_flux_pipeline(folder: str | Path, *, variant_bf16: bool = True, seed: int = 0) -> Path:
    """A random FLUX-style diffusers pipeline at `folder` (~1 MB): a 1+1-layer transformer, CLIP and T5 encoders.

    With `variant_bf16` each weight file has its `.bf16.safetensors` twin (`MODEL_VARIANT=bf16`).
    """
    torch, transformers, diffusers = _heavy("torch"), _heavy("transformers"), _heavy("diffusers")
    out = _fresh(folder)
    clip_tokenizer = _clip_tokenizer(out.parent / f".{out.name}-tokenizer")
    clip_config = _tiny_clip_text_config(transformers, clip_tokenizer)
    pieces = ["<pad>", "</s>", "<unk>", "▁", *(f"▁{w}" for w in WORDS), *map(chr, range(ord("a"), ord("z") + 1))]
    t5_tokenizer = transformers.T5Tokenizer(vocab=[(p, -float(i)) for i, p in enumerate(pieces)], extra_ids=0)
    t5_tokenizer.model_max_length = 64
    t5_config = transformers.T5Config(
        vocab_size=len(t5_tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=1, num_heads=4, pad_token_id=0
    )
    torch.manual_seed(seed)
    pipe = diffusers.FluxPipeline(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(),
        text_encoder=transformers.CLIPTextModel(clip_config),
        tokenizer=clip_tokenizer,
        text_encoder_2=transformers.T5EncoderModel(t5_config),
        tokenizer_2=t5_tokenizer,
        transformer=diffusers.FluxTransformer2DModel(
            patch_size=1,
            in_channels=4,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            pooled_projection_dim=32,
            axes_dims_rope=[4, 4, 8],
        ),
        vae=diffusers.AutoencoderKL(
            sample_size=32,
            in_channels=3,
            out_channels=3,
            block_out_channels=(4,),
            layers_per_block=1,
            latent_channels=1,
            norm_num_groups=1,
            use_quant_conv=False,
            use_post_quant_conv=False,
            shift_factor=0.0609,
            scaling_factor=1.5035,
        ),
    )
    pipe.save_pretrained(out, safe_serialization=True)
    if variant_bf16:
        pipe.to(torch.bfloat16).save_pretrained(out, safe_serialization=True, variant="bf16")
    return out


def _clip_tokenizer(scratch: Path) -> Any:
    """A CLIP tokenizer with no merges: every byte is a token (alone, and as the end of a word).

    CLIP's byte-level BPE marks the last piece of each word with `</w>`; with no merges every
    character is its own piece, which is enough to turn any prompt into ids offline.
    """
    transformers = _heavy("transformers")
    chars = _byte_characters()
    vocab = {tok: i for i, tok in enumerate([*chars, *(c + "</w>" for c in chars), "<|startoftext|>", "<|endoftext|>"])}
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        _write_json(scratch / "vocab.json", vocab)
        (scratch / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
        return transformers.CLIPTokenizer(str(scratch / "vocab.json"), str(scratch / "merges.txt"), model_max_length=77)
    finally:
        for name in ("vocab.json", "merges.txt"):
            (scratch / name).unlink(missing_ok=True)
        scratch.rmdir()


def _byte_characters() -> list[str]:
    """GPT-2's map of the 256 bytes to printable characters, which CLIP's byte-level BPE shares."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def _heavy(module: str) -> Any:
    """torch and transformers, imported when a model is built (typed loosely: their stubs are partial)."""
    return importlib.import_module(module)


def _fresh(folder: str | Path) -> Path:
    out = Path(folder)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; build tiny models into a new folder.")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


# -- layouts as real repositories ship them (for loader-exact selection) ----------------------------
def build_tiny_sharded_lm(folder: str | Path, *, seed: int = 0) -> Path:
    """`build_tiny_causal_lm` saved in shards with `model.safetensors.index.json`, plus the
    Mistral-style `consolidated.safetensors` (the same weights, one file) and `params.json`."""
    torch, transformers = _heavy("torch"), _heavy("transformers")
    from safetensors.torch import save_file

    out = _fresh(folder)
    with _scratch_model(build_tiny_causal_lm, seed) as tiny:
        model = transformers.AutoModelForCausalLM.from_pretrained(tiny)
        transformers.AutoTokenizer.from_pretrained(tiny).save_pretrained(out)
    torch.manual_seed(seed)
    model.save_pretrained(out, max_shard_size="40KB")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "consolidated.safetensors"), metadata={"format": "pt"})
    _write_json(out / "params.json", {"dim": 32, "n_layers": 2, "n_heads": 2, "vocab_size": model.config.vocab_size})
    return out


def build_tiny_lm_with_original(folder: str | Path, *, seed: int = 0) -> Path:
    """`build_tiny_causal_lm` (one `model.safetensors`) with Llama's `original/` duplicate: the same
    weights pickled as `original/consolidated.00.pth`, with `params.json` and `tokenizer.model`."""
    torch = _heavy("torch")
    out = build_tiny_causal_lm(folder, seed=seed)
    from safetensors.torch import load_file

    original = out / "original"
    original.mkdir()
    torch.save(load_file(str(out / "model.safetensors")), original / "consolidated.00.pth")
    _write_json(original / "params.json", {"dim": 32, "n_layers": 2, "n_heads": 2})
    (original / "tokenizer.model").write_bytes(_seeded_bytes(4096, seed))
    return out


def build_tiny_st_with_exports(folder: str | Path, *, seed: int = 0) -> Path:
    """`build_tiny_sentence_transformer` with what its Hub repos also hold: a pickled
    `pytorch_model.bin`, `onnx/` and `openvino/` exports, and a module folder modules.json omits.

    The export files are stand-ins of a realistic size (their loaders, onnxruntime and OpenVINO,
    are not what this worker runs); the pickle is the real state dict.
    """
    torch = _heavy("torch")
    from safetensors.torch import load_file

    out = build_tiny_sentence_transformer(folder, seed=seed)
    weights = load_file(str(out / "model.safetensors"))
    torch.save(weights, out / "pytorch_model.bin")
    size = (out / "model.safetensors").stat().st_size
    (out / "onnx").mkdir()
    (out / "onnx" / "model.onnx").write_bytes(_seeded_bytes(size, seed + 1))
    (out / "onnx" / "model_qint8_avx512.onnx").write_bytes(_seeded_bytes(size // 4, seed + 2))
    (out / "openvino").mkdir()
    (out / "openvino" / "openvino_model.bin").write_bytes(_seeded_bytes(size, seed + 3))
    (out / "openvino" / "openvino_model.xml").write_text("<net name='tiny' version='11'></net>\n")
    (out / "2_Dense").mkdir()
    torch.save({"linear.weight": torch.zeros(4, 4)}, out / "2_Dense" / "pytorch_model.bin")
    return out


def build_tiny_diffusers_repo(folder: str | Path, *, seed: int = 0) -> Path:
    """A tiny Stable Diffusion pipeline (UNet, VAE, CLIP text encoder, tokenizer, scheduler) in the
    layout of `stable-diffusion-xl-base-1.0`: plain fp32 components and real fp16 variants
    (`*.fp16.safetensors`), a root single-file checkpoint, a LoRA file, a pickled duplicate of the
    UNet (`diffusion_pytorch_model.bin`), an onnx export folder and a folder model_index omits.
    """
    torch, transformers = _heavy("torch"), _heavy("transformers")
    diffusers = _heavy("diffusers")
    from safetensors.torch import save_file

    out = _fresh(folder)
    torch.manual_seed(seed)
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, norm_num_groups=4, attention_head_dim=4,
    )  # fmt: skip
    vae = diffusers.AutoencoderKL(
        block_out_channels=[8, 16], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
    )  # fmt: skip
    tokenizer = _tiny_clip_tokenizer(out / "_tok")
    text_encoder = transformers.CLIPTextModel(
        transformers.CLIPTextConfig(
            bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=16, intermediate_size=32,
            num_attention_heads=2, num_hidden_layers=2, vocab_size=len(tokenizer), max_position_embeddings=77,
        )
    )  # fmt: skip
    scheduler = diffusers.DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, clip_sample=False
    )
    pipe = diffusers.StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    _remove_tree(out / "_tok")
    pipe.to(torch.float16).save_pretrained(out, variant="fp16")
    pipe.to(torch.float32).save_pretrained(out)  # second, so the configs are the fp32 ones
    merged = {f"{name}.{k}": v.contiguous() for name in ("unet", "vae", "text_encoder")
              for k, v in getattr(pipe, name).state_dict().items()}  # fmt: skip
    save_file(merged, str(out / "tiny-sd-v1-0.safetensors"))
    save_file({"lora.down.weight": torch.zeros(4, 16)}, str(out / "pytorch_lora_weights.safetensors"))
    torch.save(unet.state_dict(), out / "unet" / "diffusion_pytorch_model.bin")
    unet_bytes = (out / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size
    (out / "unet" / "model.onnx").write_bytes(_seeded_bytes(unet_bytes, seed + 1))  # an export stand-in
    (out / "vae_decoder").mkdir()
    (out / "vae_decoder" / "model.onnx").write_bytes(_seeded_bytes(unet_bytes // 2, seed + 2))
    return out


def build_tiny_gguf_repo(folder: str | Path, *, seed: int = 0) -> Path:
    """A llama.cpp repo: the same tiny tensors as GGUF files in F32 and Q8_0, and an F16 file
    split in two parts (`-00001-of-00002.gguf`, with the `split.*` keys llama.cpp writes)."""
    import numpy as np

    gguf = _heavy("gguf")
    out = _fresh(folder)
    rng = np.random.default_rng(seed)
    tensors = {f"blk.{i}.attn_q.weight": rng.standard_normal((64, 64), dtype=np.float32) for i in range(4)}
    tensors["token_embd.weight"] = rng.standard_normal((256, 64), dtype=np.float32)

    def write(path: Path, quant: Any, split: int = 0) -> None:
        writer = gguf.GGUFWriter(str(path), "llama", split_max_tensors=split)
        writer.add_name("tiny-llama")
        writer.add_block_count(4)
        writer.add_context_length(128)
        writer.add_embedding_length(64)
        for name, data in tensors.items():
            if quant == gguf.GGMLQuantizationType.F16:
                writer.add_tensor(name, data.astype(np.float16))
            elif quant == gguf.GGMLQuantizationType.F32:
                writer.add_tensor(name, data)
            else:
                writer.add_tensor(name, gguf.quants.quantize(data, quant), raw_dtype=quant)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    write(out / "tiny-llama-F32.gguf", gguf.GGMLQuantizationType.F32)
    write(out / "tiny-llama-Q8_0.gguf", gguf.GGMLQuantizationType.Q8_0)
    write(out / "tiny-llama-F16.gguf", gguf.GGMLQuantizationType.F16, split=3)
    (out / "README.md").write_text("# tiny-llama GGUF\n\nQuantizations: F32, Q8_0, F16 (split in two).\n")
    return out


def _tiny_clip_tokenizer(scratch: Path) -> Any:
    """A CLIP BPE tokenizer over lower-case letters and `WORDS`, built from files (no download)."""
    transformers = _heavy("transformers")
    letters = "abcdefghijklmnopqrstuvwxyz"
    tokens = ["<|startoftext|>", "<|endoftext|>", *letters, *(c + "</w>" for c in letters)]
    merges: list[str] = []
    for word in WORDS[:40]:  # merge a few whole words so prompts are not one token per letter
        if len(word) < 2 or not word.isalpha():
            continue
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:
            pair = f"{pieces[0]} {pieces[1]}"
            merged = pieces[0] + pieces[1]
            if pair not in merges:
                merges.append(pair)
                tokens.append(merged)
            pieces = [merged, *pieces[2:]]
    scratch.mkdir(parents=True, exist_ok=True)
    _write_json(scratch / "vocab.json", {t: i for i, t in enumerate(dict.fromkeys(tokens))})
    (scratch / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return transformers.CLIPTokenizer(
        str(scratch / "vocab.json"), str(scratch / "merges.txt"), model_max_length=77, pad_token="<|endoftext|>"
    )


class _scratch_model:
    """A tiny model built in a temporary folder for the duration of a `with` block."""

    def __init__(self, build: Any, seed: int) -> None:
        import tempfile

        self._tmp = tempfile.TemporaryDirectory(prefix="volcache-tiny-")
        self.path = build(Path(self._tmp.name) / "model", seed=seed)

    def __enter__(self) -> Path:
        return Path(self.path)

    def __exit__(self, *exc: object) -> None:
        self._tmp.cleanup()


def _remove_tree(folder: Path) -> None:
    for child in sorted(folder.rglob("*"), reverse=True):
        child.rmdir() if child.is_dir() else child.unlink()
    folder.rmdir()


def _seeded_bytes(size: int, seed: int) -> bytes:
    import random

    return random.Random(seed).randbytes(size)
