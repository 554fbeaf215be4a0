"""Sentence embeddings (sentence-transformers models): texts in, one vector per text out.

The model is built without importing sentence-transformers where its `modules.json` declares
only Transformer → Pooling → Normalize (`_lean_embeddings`: the same vectors, seconds sooner on
a cold start); any other module falls back to `SentenceTransformer` itself.

Native job: `{"input": "text" | ["a", "b"], "normalize": true, "dimensions": null}`; the answer is
`{"embeddings": [[...]], "dimensions": N, "model": name, "usage": {"prompt_tokens": N}}`.
OpenAI's `/v1/embeddings` is served from the same answer by the adapter.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from .._schemas import EmbeddingsRequest, JobError, Limits, validate
from . import _lean_embeddings as lean
from ._placement import placement_kwargs
from .base import JobContext, LoadContext, Task, heavy

log = logging.getLogger("volcache.worker")

WARMUP_TEXT = "volcache warm-up"


@dataclasses.dataclass(frozen=True)
class Embedded:
    """Vectors for a batch of texts, with the tokens they used."""

    vectors: list[list[float]]
    dimensions: int
    prompt_tokens: int


class EmbeddingsTask(Task[EmbeddingsRequest]):
    """A sentence-transformers model: texts in, one vector per text out.

    `model` is anything with sentence-transformers' `encode`, `get_embedding_dimension`,
    `tokenizer` and `max_seq_length`: the lean model, a `SentenceTransformer`, or a test's fake.
    """

    name = "embeddings"

    # What the lean path imports for a BERT checkpoint; transformers (another architecture) and
    # sentence_transformers (other modules) are imported inside `load` where needed.
    libraries = ("torch", "safetensors.torch", "tokenizers")

    def __init__(self, model: Any, limits: Limits) -> None:
        self.model = model
        self.limits = limits
        # The fast tokenizer keeps its padding and truncation state per call: two jobs encoding
        # at once (VOLCACHE_CONCURRENCY > 1, or RunPod's local API) corrupt each other's batch.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, ctx: LoadContext) -> EmbeddingsTask:
        kwargs = {**ctx.read_kwargs, **placement_kwargs(ctx.device)}
        try:
            model: Any = lean.build(lean.plan(ctx.path), ctx.device, kwargs)
        except lean.Unsupported as why:
            log.info("volcache: loading with sentence-transformers (%s)", why)
            library = heavy("sentence_transformers")
            model = library.SentenceTransformer(
                str(ctx.path), device=ctx.device, local_files_only=True, model_kwargs=kwargs or None
            )
        return cls(model, ctx.limits)

    def decode(self, payload: dict[str, Any]) -> EmbeddingsRequest:
        return validate(EmbeddingsRequest, payload, self.limits, what="embeddings job")

    def run(self, request: EmbeddingsRequest, job: JobContext) -> Iterator[Any]:
        embedded = self.embed(request.input, normalize=request.normalize, dimensions=request.dimensions)
        yield {
            "embeddings": embedded.vectors,
            "dimensions": embedded.dimensions,
            "model": job.model,
            "usage": {"prompt_tokens": embedded.prompt_tokens},
        }

    @property
    def dimensions(self) -> int:
        get = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get())

    def embed(self, texts: Sequence[str], *, normalize: bool = True, dimensions: int | None = None) -> Embedded:
        """Embed `texts`; `dimensions` truncates (Matryoshka style) and re-normalises when asked."""
        native = self.dimensions
        if dimensions is not None and dimensions > native:
            raise JobError(f"dimensions={dimensions} is above this model's {native}; ask for {native} or fewer.")
        with self._lock:
            vectors = self.model.encode(
                list(texts),
                batch_size=min(len(texts), 32),
                normalize_embeddings=normalize and dimensions is None,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            prompt_tokens = self._count_tokens(texts)
        if dimensions is not None:
            vectors = vectors[:, :dimensions]
            if normalize:
                import numpy as np

                norms = np.linalg.norm(vectors, axis=1, keepdims=True)
                vectors = vectors / np.maximum(norms, 1e-12)
        rows = [[float(x) for x in row] for row in vectors]
        return Embedded(rows, len(rows[0]) if rows else native, prompt_tokens)

    def _count_tokens(self, texts: Sequence[str]) -> int:
        tokenizer = getattr(self.model, "tokenizer", None)
        if tokenizer is None or not callable(tokenizer):
            return 0
        max_length = getattr(self.model, "max_seq_length", None)
        encoded = tokenizer(list(texts), truncation=max_length is not None, max_length=max_length)
        return sum(len(ids) for ids in encoded["input_ids"])

    def warmup(self) -> None:
        self.embed([WARMUP_TEXT])
