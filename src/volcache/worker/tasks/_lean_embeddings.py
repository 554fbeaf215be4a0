"""A sentence-transformers model built from its `modules.json` with transformers, tokenizers and torch alone.

`import sentence_transformers` pulls in scipy, scikit-learn, sympy and more: on a 2-core worker it
takes longer than torch and transformers together, and a worker only needs the three modules
almost every embeddings model declares: Transformer → Pooling → (Normalize). `plan()` reads the
snapshot's small JSON files and says whether this path can serve the model; `build()` loads the
transformer with `AutoModel`, the tokenizer from `tokenizer.json`, and applies the declared
pooling and normalisation as sentence-transformers does (same sort, same padding, same maths).
Anything else (a Dense layer, prompts, a Router, custom code) raises `Unsupported`, and the task
falls back to sentence-transformers itself. The equality is asserted in
tests/worker/test_lean_embeddings.py against `SentenceTransformer.encode`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import _bert
from .base import heavy

log = logging.getLogger("volcache.worker")

# Module types are sentence-transformers classes, by the names its versions have saved in
# modules.json (2.x `models.Pooling`, 6.x `sentence_transformer.modules.pooling.Pooling`...): the
# class name says what the module is.
_PACKAGE = "sentence_transformers."
_TRANSFORMER_CONFIGS = (
    "sentence_bert_config.json",
    "sentence_roberta_config.json",
    "sentence_distilbert_config.json",
    "sentence_camembert_config.json",
    "sentence_albert_config.json",
    "sentence_xlm-roberta_config.json",
    "sentence_xlnet_config.json",
)
# Keys of the Transformer's config that change nothing on this path when they hold these values.
_BENIGN = {
    "transformer_task": ("feature-extraction",),
    "module_output_name": ("token_embeddings",),
    "model_args": ({},),
    "tokenizer_args": ({},),
    "config_args": ({},),
    "processing_kwargs": ({},),
    "backend": ("torch",),
}
_LEGACY_POOLING = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "lasttoken")


class Unsupported(Exception):
    """This snapshot needs sentence-transformers itself; the message says why (for the log)."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the snapshot's JSON files declare, as far as this path needs it."""

    transformer: Path  # the folder of the Transformer module (config.json, weights, tokenizer)
    max_seq_length: int | None  # None: the tokenizer's model_max_length, capped at the model's positions
    do_lower_case: bool
    pooling: tuple[str, ...]  # pooling modes, their vectors concatenated in this order
    normalize: bool  # a Normalize module ends the pipeline


def plan(snapshot: Path) -> Plan:
    """The lean plan for the sentence-transformers snapshot at `snapshot`; `Unsupported` where there is none."""
    modules = _json(snapshot / "modules.json")
    if not isinstance(modules, list) or not modules:
        raise Unsupported("modules.json lists no modules")
    kinds = [_kind(m) for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or kinds[2:] not in ([], ["Normalize"]):
        raise Unsupported(f"modules {' → '.join(kinds)} (this path knows Transformer → Pooling → Normalize)")
    _check_prompts(snapshot)
    folder = _inside(snapshot, str(modules[0].get("path") or ""))
    config = _transformer_config(folder)
    pooling = _pooling_modes(_object(_inside(snapshot, str(modules[1].get("path") or "")) / "config.json"))
    if not (folder / "tokenizer.json").is_file():
        raise Unsupported("no tokenizer.json (a slow tokenizer)")
    max_seq_length = config.get("max_seq_length")
    if max_seq_length is not None and not isinstance(max_seq_length, int):
        raise Unsupported(f"max_seq_length {max_seq_length!r} is not an integer")
    return Plan(folder, max_seq_length, bool(config.get("do_lower_case", False)), pooling, len(kinds) == 3)


def _kind(module: Any) -> str:
    name = str(module.get("type", "")) if isinstance(module, dict) else ""
    kind = name.rsplit(".", 1)[-1]
    if not name.startswith(_PACKAGE):
        raise Unsupported(f"module type {name or '?'}")
    return kind


def _check_prompts(snapshot: Path) -> None:
    path = snapshot / "config_sentence_transformers.json"
    if not path.is_file():
        return
    config = _object(path)
    if config.get("default_prompt_name"):
        raise Unsupported(f"a default prompt ({config['default_prompt_name']})")
    if config.get("truncate_dim"):
        raise Unsupported(f"truncate_dim {config['truncate_dim']}")


def _transformer_config(folder: Path) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for name in _TRANSFORMER_CONFIGS:
        if (folder / name).is_file():
            config = _object(folder / name)
            break
    for key, value in config.items():
        if key in ("max_seq_length", "do_lower_case"):
            continue
        if value not in _BENIGN.get(key, ()) and value is not None:
            raise Unsupported(f"Transformer setting {key}={value!r}")
    if (folder / "adapter_config.json").is_file():
        raise Unsupported("a PEFT adapter")
    return config


def _pooling_modes(config: Mapping[str, Any]) -> tuple[str, ...]:
    if "pooling_mode" in config:
        raw = config["pooling_mode"]
        modes = (raw,) if isinstance(raw, str) else tuple(raw)
    else:
        modes = tuple(mode for key, mode in _LEGACY_POOLING.items() if config.get(key))
    if config.get("include_prompt") is False:
        raise Unsupported("pooling that excludes prompts")
    unknown = [m for m in modes if m not in POOLING_MODES]
    if not modes or unknown:
        raise Unsupported(f"pooling {', '.join(map(str, unknown or modes)) or 'none'}")
    return modes


def _inside(snapshot: Path, relative: str) -> Path:
    """A module's folder; a path out of the snapshot (`..`, absolute) is refused, not followed."""
    folder = (snapshot / relative) if relative else snapshot
    if relative.startswith("/") or ".." in Path(relative).parts:
        raise Unsupported(f"module path {relative!r} leaves the snapshot")
    return folder


def _object(path: Path) -> dict[str, Any]:
    value = _json(path)
    if not isinstance(value, dict):
        raise Unsupported(f"{path.name} is not a JSON object")
    return value


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Unsupported(f"cannot read {path.name} ({exc})") from None


class LeanTokenizer:
    """`tokenizer.json` through the `tokenizers` library: truncation and right padding as sentence-transformers asks.

    Called like a transformers tokenizer for the token count (`tokenizer(texts, truncation=..., max_length=...)`).
    """

    def __init__(self, folder: Path, max_length: int, do_lower_case: bool) -> None:
        tokenizers = heavy("tokenizers")
        self._tok = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
        if do_lower_case:
            normalizers = heavy("tokenizers.normalizers")
            current = self._tok.normalizer
            if current is None or "Lowercase" not in repr(current):
                steps = [normalizers.Lowercase(), *([current] if current is not None else [])]
                self._tok.normalizer = normalizers.Sequence(steps)
        self.max_length = max_length
        self.pad_id, self.pad_token = _pad_token(folder, self._tok)
        self._tok.no_truncation()
        self._tok.no_padding()

    def encode(self, texts: Sequence[str]) -> tuple[list[list[int]], list[list[int]], list[list[int]] | None]:
        """Ids, attention mask and token types (None where the model has none), padded to the longest."""
        self._tok.enable_truncation(self.max_length, strategy="longest_first")
        self._tok.enable_padding(direction="right", pad_id=self.pad_id, pad_token=self.pad_token)
        try:
            encoded = self._tok.encode_batch(list(texts))
        finally:
            self._tok.no_truncation()
            self._tok.no_padding()
        return [e.ids for e in encoded], [e.attention_mask for e in encoded], [e.type_ids for e in encoded]

    def __call__(self, texts: Sequence[str], truncation: bool = False, max_length: int | None = None) -> dict[str, Any]:
        if truncation:
            self._tok.enable_truncation(max_length or self.max_length, strategy="longest_first")
        try:
            encoded = self._tok.encode_batch(list(texts))
        finally:
            self._tok.no_truncation()
        return {"input_ids": [e.ids for e in encoded]}


def _pad_token(folder: Path, tok: Any) -> tuple[int, str]:
    """The pad token the tokenizer's config names (transformers' rule), else the tokenizer.json's own."""
    name: Any = None
    for file in ("tokenizer_config.json", "special_tokens_map.json"):
        if (folder / file).is_file():
            name = _object(folder / file).get("pad_token")
            if isinstance(name, dict):
                name = name.get("content")
            if name:
                break
    padding = tok.padding or {}
    name = name or padding.get("pad_token")
    pad_id = tok.token_to_id(name) if name else None
    if pad_id is None:
        raise Unsupported("no pad token")
    return int(pad_id), str(name)


class Encoder:
    """The Transformer module's forward pass: token ids in, the last hidden state out.

    The plain-torch BERT where the checkpoint is one (no transformers import), else transformers'
    `AutoModel`.
    """

    def __init__(self, model: Any, hidden_size: int, takes_token_types: bool) -> None:
        self.model = model
        self.hidden_size = hidden_size
        self.takes_token_types = takes_token_types

    def __call__(self, inputs: dict[str, Any]) -> Any:
        if isinstance(self.model, _bert.BertEncoder):
            return self.model(**inputs)
        return self.model(**inputs, return_dict=True).last_hidden_state


class LeanSentenceModel:
    """Transformer → Pooling → Normalize with `encode` as sentence-transformers' (the arguments the task uses)."""

    def __init__(self, encoder: Encoder, tokenizer: LeanTokenizer, plan: Plan, device: str) -> None:
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.plan = plan
        self.device = device
        self.max_seq_length = tokenizer.max_length
        self._dimension = encoder.hidden_size * len(plan.pooling)

    def get_embedding_dimension(self) -> int:
        return self._dimension

    def encode(
        self,
        sentences: Sequence[str],
        batch_size: int = 32,
        normalize_embeddings: bool = False,
        convert_to_numpy: bool = True,
        show_progress_bar: bool = False,
    ) -> Any:
        """One vector per sentence, as a float32 numpy array (rows in the order given)."""
        torch, np = heavy("torch"), heavy("numpy")
        # Longest first, as sentence-transformers batches: similar lengths pad less.
        order = sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))
        rows: list[Any] = [None] * len(sentences)
        with torch.inference_mode():
            for start in range(0, len(order), max(1, batch_size)):
                batch = order[start : start + batch_size]
                vectors = self._embed([sentences[i] for i in batch], normalize_embeddings)
                for i, row in zip(batch, vectors.float().cpu().numpy(), strict=True):
                    rows[i] = row
        dim = self._dimension
        return np.stack(rows) if rows else np.zeros((0, dim), dtype=np.float32)

    def _embed(self, texts: list[str], normalize: bool) -> Any:
        torch = heavy("torch")
        ids, mask, types = self.tokenizer.encode(texts)
        inputs = {
            "input_ids": torch.tensor(ids, device=self.device),
            "attention_mask": torch.tensor(mask, device=self.device),
        }
        if self.encoder.takes_token_types and types is not None:
            inputs["token_type_ids"] = torch.tensor(types, device=self.device)
        tokens = self.encoder(inputs)
        vectors = torch.cat([pool(mode, tokens, inputs["attention_mask"]) for mode in self.plan.pooling], dim=-1)
        if self.plan.normalize or normalize:
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=-1)
        return vectors


def pool(mode: str, tokens: Any, attention_mask: Any) -> Any:
    """One pooling mode of sentence-transformers' `Pooling` (right padding, no prompt), the same maths."""
    torch = heavy("torch")
    if mode == "cls":
        first = attention_mask.to(torch.int).argmax(dim=1)
        return torch.gather(tokens, 1, first.view(-1, 1, 1).expand(-1, 1, tokens.shape[-1])).squeeze(1)
    if mode == "max":
        mask = attention_mask.unsqueeze(-1).expand_as(tokens).to(tokens.dtype)
        return tokens.masked_fill(mask == 0, float("-inf")).max(dim=1).values
    if mode in ("mean", "mean_sqrt_len_tokens"):
        accumulate = torch.float32 if tokens.dtype in (torch.float16, torch.bfloat16) else tokens.dtype
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        total = (tokens * mask).sum(dim=1, dtype=accumulate)
        count = torch.clamp(mask.sum(dim=1, dtype=accumulate), min=1e-9)
        return (total / (count if mode == "mean" else torch.sqrt(count))).to(tokens.dtype)
    if mode == "lasttoken":
        seq_len = tokens.shape[1]
        values, indices = attention_mask.flip(1).max(1)
        indices = torch.where(values == 0, seq_len - 1, indices)
        gather = (seq_len - indices - 1).view(-1, 1, 1).expand(-1, 1, tokens.shape[-1])
        mask = attention_mask.unsqueeze(-1).expand_as(tokens).to(tokens.dtype)
        return torch.gather(tokens * mask, 1, gather).squeeze(1)
    raise Unsupported(f"pooling {mode}")


def build(plan: Plan, device: str, model_kwargs: Mapping[str, object]) -> LeanSentenceModel:
    """Load the planned model onto `device`, its weights placed there as they are read.

    `model_kwargs` are transformers' `from_pretrained` arguments for the load strategy, the
    variant and the placement (`disable_mmap`, `variant`, `device_map`, `dtype`); the plain-torch
    BERT honours the first two and places its tensors on `device` itself.
    """
    encoder, positions = _encoder(plan.transformer, device, model_kwargs)
    max_length = plan.max_seq_length or _model_max_length(plan.transformer, positions)
    return LeanSentenceModel(encoder, LeanTokenizer(plan.transformer, max_length, plan.do_lower_case), plan, device)


def _encoder(folder: Path, device: str, model_kwargs: Mapping[str, object]) -> tuple[Encoder, int | None]:
    try:
        variant = model_kwargs.get("variant")
        bert = _bert.load(
            folder,
            device,
            read_whole=bool(model_kwargs.get("disable_mmap")),
            variant=str(variant) if variant else None,
        )
    except _bert.NotBert as why:
        log.info("volcache: the embeddings encoder loads with transformers (%s)", why)
    else:
        config = bert.config
        return Encoder(bert, config.hidden_size, bert.takes_token_types), config.max_position_embeddings
    transformers = heavy("transformers")
    model = transformers.AutoModel.from_pretrained(str(folder), local_files_only=True, **model_kwargs)
    model.eval()
    takes_types = "token_type_ids" in _forward_parameters(model)
    positions = getattr(model.config, "max_position_embeddings", None)
    return Encoder(model, int(model.config.hidden_size), takes_types), positions


def _model_max_length(folder: Path, positions: int | None) -> int:
    """sentence-transformers' rule without `max_seq_length`: the tokenizer's limit, capped at the positions."""
    limit: Any = None
    if (folder / "tokenizer_config.json").is_file():
        limit = _object(folder / "tokenizer_config.json").get("model_max_length")
    candidates = [int(v) for v in (limit, positions) if isinstance(v, int | float) and 0 < v < 1e9]
    if not candidates:
        raise Unsupported("no maximum sequence length")
    return min(candidates)


def _forward_parameters(model: Any) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


__all__ = ["LeanSentenceModel", "LeanTokenizer", "Plan", "Unsupported", "build", "plan", "pool"]
