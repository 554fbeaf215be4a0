"""OpenAI's response shapes for RunPod's `openai_route` jobs: models, embeddings, chat completions.

RunPod's OpenAI-compatible endpoint (`https://api.runpod.ai/v2/<id>/openai/v1`) wraps a request
as `{"openai_route": ..., "openai_input": ...}` and relays what the worker yields. As in RunPod's
vLLM worker, a streamed chat completion is yielded as server-sent-event text, one
`data: {chunk}\\n\\n` per chunk and a final `data: [DONE]\\n\\n`, which the endpoint passes through.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import uuid
from typing import Any

from ._tasks import Embedded, FinishReason, Generated

SSE_DONE = "data: [DONE]\n\n"


def models_response(model: str, created: int) -> dict[str, Any]:
    """`GET /v1/models`: the one model this worker serves."""
    return {
        "object": "list",
        "data": [{"id": model, "object": "model", "created": created, "owned_by": "volcache"}],
    }


def embeddings_response(model: str, embedded: Embedded, encoding_format: str = "float") -> dict[str, Any]:
    """`POST /v1/embeddings`: one `embedding` object per input, in input order."""

    def encode(vector: list[float]) -> list[float] | str:
        if encoding_format == "base64":  # little-endian float32, as OpenAI's clients decode it
            return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
        return vector

    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode(vector)}
            for i, vector in enumerate(embedded.vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": embedded.prompt_tokens, "total_tokens": embedded.prompt_tokens},
    }


class ChatCompletion:
    """Builds the objects of one chat completion, streamed or not, with one id and timestamp."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())

    def response(self, generated: Generated) -> dict[str, Any]:
        """The whole `chat.completion` object."""
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": generated.text},
                    "logprobs": None,
                    "finish_reason": generated.finish_reason,
                }
            ],
            "usage": generated.usage,
        }

    def chunk(
        self, delta: dict[str, Any], finish_reason: FinishReason | None = None, usage: dict[str, int] | None = None
    ) -> dict[str, Any]:
        """One `chat.completion.chunk`; a usage-only chunk has no choices, as OpenAI sends it."""
        choices = (
            []
            if usage is not None
            else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
        )
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if usage is not None:
            chunk["usage"] = usage
        return chunk


def sse(payload: dict[str, Any]) -> str:
    """One server-sent event carrying `payload` as JSON."""
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"
