"""Tiny random models for tests, built offline in a second: no download, no network.

Each builder writes a complete Hugging Face model folder (config, safetensors weights, a fast
tokenizer) that transformers, sentence-transformers and `volcache.worker` load like a real one:

- `build_tiny_sentence_transformer`: a 2-layer BERT with mean pooling and normalisation, in the
  sentence-transformers layout (`modules.json`, `1_Pooling/`), task ``embeddings``;
- `build_tiny_causal_lm`: a 2-layer Llama with a word-level tokenizer and a chat template, task
  ``text-generation``;
- `build_tiny_text_classifier`: a BERT sequence classifier with labels NEGATIVE/POSITIVE, task
  ``text-classification`` (a transformers pipeline task).

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
    "build_tiny_sentence_transformer",
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
