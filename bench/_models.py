"""Random-weight BERT models of a chosen size, written in a few seconds without initialising a model.

    python -m bench._models DEST --hidden 1024 --layers 8   # ~534 MB of float32 safetensors

The architecture is built on the meta device (no memory, no init), then each tensor is filled
with seeded normal noise and saved with safetensors, beside a config and a small word-level
tokenizer, so `transformers.pipeline("feature-extraction", model=DEST)` and volcache's worker
load it like any model folder. The bytes are random: the point is their number and layout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def random_bert(dest: Path, *, hidden: int, layers: int, seed: int = 0) -> int:
    """Write the model to `dest`; returns the bytes of its weights."""
    import safetensors.torch
    import torch
    import transformers

    from volcache.testing.models import word_tokenizer

    dest.mkdir(parents=True, exist_ok=True)
    heads = max(1, hidden // 64)
    config = transformers.BertConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=512,
        architectures=["BertModel"],
    )
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in transformers.BertModel(config).state_dict().items()}
    generator = torch.Generator().manual_seed(seed)
    tensors = {k: torch.randn(shape, generator=generator) * 0.02 for k, shape in shapes.items()}
    safetensors.torch.save_file(tensors, str(dest / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(dest)
    word_tokenizer().save_pretrained(dest)
    return sum(t.numel() * t.element_size() for t in tensors.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._models", description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    args = parser.parse_args(argv)
    size = random_bert(args.dest, hidden=args.hidden, layers=args.layers)
    print(json.dumps({"weights_bytes": size}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
