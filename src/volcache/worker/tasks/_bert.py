"""A BERT encoder in plain torch, over the checkpoint's own tensors: the embeddings models' common case.

Importing `transformers.modeling_utils` costs a cold worker seconds (it pulls in scipy, sympy
and torch's distributed and dynamo stacks); most sentence-transformers models (MiniLM, BGE, E5,
...) are a `BertModel`, whose forward pass is a few torch calls. `load()` reads the weights
with safetensors (memory-mapped, or onto the device as they are read) and `BertEncoder` runs
`BertModel`'s maths: embeddings → LayerNorm → N × (self-attention, feed-forward), returning the
last hidden state. Anything this does not know (another architecture, relative positions, an
unknown activation, a checkpoint that is not one safetensors file) raises `NotBert`, and the
caller uses transformers' `AutoModel` instead.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from .base import heavy

ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")


class NotBert(Exception):
    """The checkpoint is not one this encoder can run; the message says why."""


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """The `config.json` fields the forward pass reads."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    hidden_act: str
    layer_norm_eps: float
    max_position_embeddings: int

    @classmethod
    def read(cls, folder: Path) -> BertConfig:
        try:
            raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise NotBert(f"cannot read config.json ({exc})") from None
        if raw.get("model_type") != "bert":
            raise NotBert(f"model_type {raw.get('model_type')!r}")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise NotBert(f"position_embedding_type {raw['position_embedding_type']!r}")
        if raw.get("hidden_act") not in ACTIVATIONS:
            raise NotBert(f"hidden_act {raw.get('hidden_act')!r}")
        if raw.get("is_decoder") or raw.get("add_cross_attention"):
            raise NotBert("a decoder")
        try:
            return cls(
                hidden_size=int(raw["hidden_size"]),
                num_hidden_layers=int(raw["num_hidden_layers"]),
                num_attention_heads=int(raw["num_attention_heads"]),
                hidden_act=str(raw["hidden_act"]),
                layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
                max_position_embeddings=int(raw.get("max_position_embeddings", 512)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise NotBert(f"config.json lacks {exc}") from None


class BertEncoder:
    """`BertModel(...).last_hidden_state`, in inference mode, from a name → tensor mapping."""

    def __init__(self, config: BertConfig, weights: dict[str, Any]) -> None:
        self.config = config
        self.w = weights
        self.takes_token_types = "embeddings.token_type_embeddings.weight" in weights

    def __call__(self, input_ids: Any, attention_mask: Any, token_type_ids: Any | None = None) -> Any:
        torch = heavy("torch")
        functional = torch.nn.functional
        w, c = self.w, self.config
        length = input_ids.shape[1]
        hidden = functional.embedding(input_ids, w["embeddings.word_embeddings.weight"])
        hidden = hidden + w["embeddings.position_embeddings.weight"][:length].unsqueeze(0)
        if self.takes_token_types:
            types = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
            hidden = hidden + functional.embedding(types, w["embeddings.token_type_embeddings.weight"])
        hidden = self._norm(hidden, "embeddings.LayerNorm")
        keep = attention_mask.bool()[:, None, None, :]  # (batch, 1, 1, keys): True where a real token
        for i in range(c.num_hidden_layers):
            hidden = self._layer(hidden, keep, f"encoder.layer.{i}.")
        return hidden

    def _layer(self, hidden: Any, keep: Any, p: str) -> Any:
        torch = heavy("torch")
        functional = torch.nn.functional
        batch, length, size = hidden.shape
        heads = self.config.num_attention_heads

        def split(name: str) -> Any:
            x = self._linear(hidden, f"{p}attention.self.{name}")
            return x.view(batch, length, heads, size // heads).transpose(1, 2)

        context = functional.scaled_dot_product_attention(
            split("query"), split("key"), split("value"), attn_mask=keep, scale=1 / math.sqrt(size // heads)
        )
        context = context.transpose(1, 2).reshape(batch, length, size)
        attended = self._linear(context, f"{p}attention.output.dense") + hidden
        attended = self._norm(attended, f"{p}attention.output.LayerNorm")
        inner = self._act(self._linear(attended, f"{p}intermediate.dense"))
        return self._norm(self._linear(inner, f"{p}output.dense") + attended, f"{p}output.LayerNorm")

    def _linear(self, x: Any, name: str) -> Any:
        return heavy("torch").nn.functional.linear(x, self.w[f"{name}.weight"], self.w.get(f"{name}.bias"))

    def _norm(self, x: Any, name: str) -> Any:
        weight, bias = self.w[f"{name}.weight"], self.w[f"{name}.bias"]
        return heavy("torch").nn.functional.layer_norm(x, weight.shape, weight, bias, self.config.layer_norm_eps)

    def _act(self, x: Any) -> Any:
        functional = heavy("torch").nn.functional
        act = self.config.hidden_act
        if act == "relu":
            return functional.relu(x)
        return functional.gelu(x, approximate="none" if act == "gelu" else "tanh")


_REQUIRED = (
    "embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight",
    "embeddings.LayerNorm.weight",
    "embeddings.LayerNorm.bias",
)
_LAYER = (
    "attention.self.query.weight",
    "attention.self.key.weight",
    "attention.self.value.weight",
    "attention.output.dense.weight",
    "attention.output.LayerNorm.weight",
    "intermediate.dense.weight",
    "output.dense.weight",
    "output.LayerNorm.weight",
)


def load(folder: Path, device: str, *, read_whole: bool = False, variant: str | None = None) -> BertEncoder:
    """The encoder of the BERT checkpoint in `folder`, its tensors on `device` as they are read.

    `read_whole` (`VOLCACHE_LOAD=read`) reads the file in one call instead of mapping it;
    `variant` (`MODEL_VARIANT`) reads `model.<variant>.safetensors`, as transformers names it.
    """
    config = BertConfig.read(folder)
    name = f"model.{variant}.safetensors" if variant else "model.safetensors"
    path = folder / name
    if not path.is_file():
        raise NotBert(f"no {name} (sharded or .bin checkpoints go through transformers)")
    st = heavy("safetensors.torch")
    if read_whole:
        tensors = {n: t.to(device) for n, t in st.load(path.read_bytes()).items()}
    else:
        tensors = st.load_file(str(path), device=device)  # each tensor placed on the device as it is read
    weights = {_strip(name): t for name, t in tensors.items()}
    missing = [n for n in _names(config) if n not in weights]
    if missing:
        raise NotBert(f"model.safetensors lacks {missing[0]}")
    return BertEncoder(config, weights)


def _names(config: BertConfig) -> list[str]:
    return [*_REQUIRED, *(f"encoder.layer.{i}.{n}" for i in range(config.num_hidden_layers) for n in _LAYER)]


def _strip(name: str) -> str:
    """`bert.encoder...` (saved from a model with a head) → `encoder...`, as `BertModel` loads it."""
    return name.removeprefix("bert.")


__all__ = ["ACTIVATIONS", "BertConfig", "BertEncoder", "NotBert", "load"]
