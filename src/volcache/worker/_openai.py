"""OpenAI's routes as an adapter over the task interface, and OpenAI's response shapes.

Routes: `/v1/embeddings`, `/v1/chat/completions` (streamed or not), `/v1/images/generations`.

Each `Route` turns an OpenAI request body into the native payload of the task that serves it,
and that task's native answer back into OpenAI's shape, so a task implements one interface and
gets its OpenAI route for free; `ROUTES` lists them (`/v1/models` is answered by the worker).

RunPod's OpenAI-compatible endpoint (`https://api.runpod.ai/v2/<id>/openai/v1`) wraps a request
as `{"openai_route": ..., "openai_input": ...}` and relays what the worker yields. As in RunPod's
vLLM worker, a streamed chat completion is yielded as server-sent-event text, one
`data: {chunk}\\n\\n` per chunk and a final `data: [DONE]\\n\\n`, which the endpoint passes through.
"""

from __future__ import annotations

import abc
import base64
import json
import re
import struct
import time
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import Field, field_validator

from ._schemas import (
    EmbeddingsRequest,
    GenerationRequest,
    JobError,
    Limits,
    OpenAIChatRequest,
    OpenAIEmbeddingsRequest,
    _Lenient,
    quote_name,
    validate,
)
from .tasks.embeddings import Embedded
from .tasks.generation import FinishReason, Generated

StateT = TypeVar("StateT")

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


# -- the adapter ------------------------------------------------------------------------------------
class Route(abc.ABC, Generic[StateT]):
    """One OpenAI route served through a task's native interface."""

    path: ClassVar[str]
    task: ClassVar[str]  # the name of the task that serves it

    @abc.abstractmethod
    def decode(self, body: dict[str, Any], limits: Limits) -> tuple[Any, StateT]:
        """The task's native request (what its `run` takes), and what `encode` needs of the OpenAI body."""

    def streams(self, state: StateT) -> bool:
        return False

    @abc.abstractmethod
    def encode(self, outputs: Iterator[Any], state: StateT, model: str) -> Iterator[Any]:
        """The task's native output items in OpenAI's shape."""


class EmbeddingsRoute(Route[OpenAIEmbeddingsRequest]):
    path = "/v1/embeddings"
    task = "embeddings"

    def decode(self, body: dict[str, Any], limits: Limits) -> tuple[EmbeddingsRequest, OpenAIEmbeddingsRequest]:
        req = validate(OpenAIEmbeddingsRequest, body, limits, what=f"{self.path} request")
        # Validated once, limits included: the native request is built from the checked fields.
        native = EmbeddingsRequest.model_construct(input=req.input, normalize=True, dimensions=req.dimensions)
        return native, req

    def encode(self, outputs: Iterator[Any], state: OpenAIEmbeddingsRequest, model: str) -> Iterator[Any]:
        for out in outputs:
            embedded = Embedded(out["embeddings"], out["dimensions"], out["usage"]["prompt_tokens"])
            yield embeddings_response(model, embedded, state.encoding_format)


class ChatRoute(Route[OpenAIChatRequest]):
    path = "/v1/chat/completions"
    task = "text-generation"

    def decode(self, body: dict[str, Any], limits: Limits) -> tuple[GenerationRequest, OpenAIChatRequest]:
        chat = validate(OpenAIChatRequest, body, limits, what=f"{self.path} request")
        # The messages stay the validated objects (pydantic does not parse them again); only the
        # worker's limits are checked on the native request.
        native = validate(GenerationRequest, chat.generation(), limits, what=f"{self.path} request")
        return native, chat

    def streams(self, state: OpenAIChatRequest) -> bool:
        return state.stream

    def encode(self, outputs: Iterator[Any], state: OpenAIChatRequest, model: str) -> Iterator[Any]:
        completion = ChatCompletion(model)
        if not state.stream:
            for out in outputs:
                usage = out["usage"]
                yield completion.response(
                    Generated(
                        out["generated_text"], usage["prompt_tokens"], usage["completion_tokens"], out["finish_reason"]
                    )
                )
            return
        yield sse(completion.chunk({"role": "assistant", "content": ""}))
        for out in outputs:
            if "finish_reason" in out:
                yield sse(completion.chunk({}, out["finish_reason"]))
                if state.stream_options is not None and state.stream_options.include_usage:
                    yield sse(completion.chunk({}, usage=out["usage"]))
            else:
                yield sse(completion.chunk({"content": out["text"]}))
        yield SSE_DONE


class OpenAIImagesRequest(_Lenient):
    """`POST /v1/images/generations`: OpenAI's fields; `quality`, `style`, `user`... are ignored."""

    prompt: str
    n: int = Field(default=1, ge=1)
    size: tuple[int, int] | None = None  # "WIDTHxHEIGHT"; "auto" or absent: the model's own size
    response_format: Literal["b64_json", "url"] = "b64_json"
    output_format: Literal["png", "jpeg", "webp"] | None = None

    @field_validator("size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        if value is None or value == "auto":
            return None
        match = re.fullmatch(r"\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*", value) if isinstance(value, str) else None
        if match is None:
            raise ValueError(f"must be WIDTHxHEIGHT, e.g. 1024x1024 (got {quote_name(str(value))})")
        return int(match.group(1)), int(match.group(2))


class ImagesRoute(Route[OpenAIImagesRequest]):
    """OpenAI's image generation over the `text-to-image` task; the worker's limits are checked by the task."""

    path = "/v1/images/generations"
    task = "text-to-image"

    def decode(self, body: dict[str, Any], limits: Limits) -> tuple[Any, OpenAIImagesRequest]:
        from .tasks.images import ImageLimits, parse_request

        req = validate(OpenAIImagesRequest, body, limits, what=f"{self.path} request")
        native: dict[str, Any] = {"prompt": req.prompt, "num_images": req.n, "upload": req.response_format == "url"}
        if req.size is not None:
            native["width"], native["height"] = req.size
        if req.output_format is not None:
            native["output_format"] = req.output_format
        # The shape only: sizes, steps and counts are held to the worker's limits by the task's check.
        shape = ImageLimits(
            max_pixels=2**62, max_steps=2**31, max_images=2**31, max_prompt_chars=limits.max_input_chars
        )
        try:
            return parse_request(native, shape), req
        except JobError as exc:
            message = str(exc).replace("Invalid image job", f"Invalid {self.path} request")
            raise JobError(message.replace("`num_images`", "`n`").replace("`width`", "`size` width")) from None

    def encode(self, outputs: Iterator[Any], state: OpenAIImagesRequest, model: str) -> Iterator[Any]:
        key = "url" if state.response_format == "url" else "b64_json"
        for out in outputs:
            params = out["parameters"]
            yield {
                "created": int(time.time()),
                "data": [{key: image} for image in out["images"]],
                "size": f"{params['width']}x{params['height']}",
                "output_format": params["output_format"],
            }


ROUTES: dict[str, Route[Any]] = {route.path: route for route in (EmbeddingsRoute(), ChatRoute(), ImagesRoute())}
MODELS_ROUTE = "/v1/models"
