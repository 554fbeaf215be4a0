"""What a job may contain, checked with pydantic before any model code runs.

Every request model is validated with the worker's `Limits` in the validation context, so batch
size, input length and new tokens are refused with the setting that raises them. A failed
validation becomes `JobError` with one sentence that lists every problem, in the order found.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .._errors import VolcacheError
from .._settings import Settings


class JobError(VolcacheError, ValueError):
    """A job the worker cannot run as sent; its message is returned as `{"error": message}`."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """The per-job limits, from `VOLCACHE_MAX_BATCH`, `VOLCACHE_MAX_INPUT_CHARS`, `VOLCACHE_MAX_NEW_TOKENS`."""

    max_batch: int = 64
    max_input_chars: int = 32_768
    max_new_tokens: int = 512

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.max_batch, settings.max_input_chars, settings.max_new_tokens)


# Bounds that keep sampling finite: outside them the probabilities overflow to NaN inside torch.
MIN_TEMPERATURE = 1e-2
MAX_TEMPERATURE = 100.0
MIN_PENALTY = 1e-2
MAX_PENALTY = 100.0


def _sampling_temperature(value: float) -> float:
    # A tiny positive temperature divides the logits into infinities: the probabilities become
    # NaN and sampling fails inside torch. 0 means greedy.
    if 0 < value < MIN_TEMPERATURE:
        raise ValueError(f"is {value}, but must be 0 (greedy) or at least {MIN_TEMPERATURE}")
    return value


Temperature = Annotated[float, Field(ge=0), AfterValidator(_sampling_temperature)]
# numpy's seed (transformers' `set_seed` seeds it too) takes 0 <= seed < 2**32.
Seed = Annotated[int, Field(ge=0, lt=2**32)]


def _limits(info: ValidationInfo) -> Limits:
    context = info.context or {}
    limits = context.get("limits") if isinstance(context, dict) else None
    return limits if isinstance(limits, Limits) else Limits()


def _as_texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, list) and value and all(isinstance(v, int | list) for v in value):
        raise ValueError("holds token ids, but this worker takes text (a string or a list of strings)")
    raise ValueError("must be a string or a list of strings")


Texts = Annotated[list[str], BeforeValidator(_as_texts)]


def check_texts(texts: list[str], limits: Limits, field: str) -> list[str]:
    """Refuse an empty batch, a batch above `max_batch` and texts above `max_input_chars`."""
    if not texts:
        raise ValueError("is empty, but a job needs at least one text")
    for i, text in enumerate(texts):
        check_unicode(text, f"{field}[{i}]" if len(texts) > 1 else field)
    if len(texts) > limits.max_batch:
        raise ValueError(
            f"holds {len(texts)} texts, above this worker's limit of {limits.max_batch} (VOLCACHE_MAX_BATCH)"
        )
    for i, text in enumerate(texts):
        if len(text) > limits.max_input_chars:
            where = f"{field}[{i}]" if len(texts) > 1 else field
            raise ValueError(
                f"has {len(text)} characters in `{where}`, above this worker's limit of "
                f"{limits.max_input_chars} (VOLCACHE_MAX_INPUT_CHARS)"
            )
    return texts


def check_unicode(text: str, where: str) -> str:
    """Refuse a lone surrogate (JSON's `\\ud800` escape): tokenizers cannot encode it and fail deep inside."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"holds a lone surrogate ({text[exc.start]!r}) at character {exc.start} of `{where}`; "
            "send valid Unicode text"
        ) from None
    return text


class _Strict(BaseModel):
    """Native job inputs: unknown fields are refused, so a misspelt option is not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _Lenient(BaseModel):
    """OpenAI inputs: clients send fields volcache does not use (`user`, `logit_bias`...); they are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


# -- embeddings ------------------------------------------------------------------------------------
class EmbeddingsRequest(_Strict):
    """`{"input": "text" | ["a", "b"], "normalize": true, "dimensions": 128}` (`inputs` is accepted too)."""

    input: Texts
    normalize: bool = True
    dimensions: int | None = Field(default=None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _inputs_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "inputs" in data and "input" not in data:
            data = {("input" if k == "inputs" else k): v for k, v in data.items()}
        return data

    @field_validator("input")
    @classmethod
    def _limits(cls, texts: list[str], info: ValidationInfo) -> list[str]:
        return check_texts(texts, _limits(info), "input")


# -- text generation -------------------------------------------------------------------------------
def _content_text(value: Any) -> Any:
    """OpenAI content may be a list of parts; the text parts are joined, other parts are refused."""
    if not isinstance(value, list):
        return value
    texts = []
    for part in value:
        if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise ValueError(f"has a content part of type {kind!r}, but this worker takes text parts only")
    return "".join(texts)


class ChatMessage(BaseModel):
    """One chat turn; extra fields (`name`, `tool_calls`...) are kept for the chat template."""

    model_config = ConfigDict(extra="allow", frozen=True)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Annotated[str, BeforeValidator(_content_text)] = ""

    def as_template_dict(self) -> dict[str, Any]:
        data = self.model_dump(exclude_none=True)
        if data["role"] == "developer":  # OpenAI's newer name for the system role
            data["role"] = "system"
        return data


Stop = Annotated[list[str], BeforeValidator(lambda v: [v] if isinstance(v, str) else v)]


class GenerationParameters(_Strict):
    """Sampling parameters with transformers' names; `temperature` 0 means greedy decoding."""

    max_new_tokens: int | None = Field(default=None, gt=0)
    temperature: Temperature | None = Field(default=None, le=MAX_TEMPERATURE)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    repetition_penalty: float | None = Field(default=None, ge=MIN_PENALTY, le=MAX_PENALTY)
    do_sample: bool | None = None
    seed: Seed | None = None
    stop: Stop = Field(default_factory=list, max_length=16)

    @field_validator("max_new_tokens")
    @classmethod
    def _token_limit(cls, value: int | None, info: ValidationInfo) -> int | None:
        limit = _limits(info).max_new_tokens
        if value is not None and value > limit:
            raise ValueError(f"is {value}, above this worker's limit of {limit} (VOLCACHE_MAX_NEW_TOKENS)")
        return value

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, value: list[str]) -> list[str]:
        if any(not s for s in value):
            raise ValueError("holds an empty string, but a stop sequence needs at least one character")
        for i, stop in enumerate(value):
            check_unicode(stop, f"stop[{i}]")
        return value


class GenerationRequest(GenerationParameters):
    """`{"prompt": ...}`, `{"messages": [...]}` or `{"inputs": ..., "parameters": {...}}`, plus `stream`.

    Sampling parameters may sit at the top level or under `parameters` (the Hugging Face
    Inference API shape); the two are merged, and the same name in both is refused.
    """

    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    stream: bool = False

    @model_validator(mode="before")
    @classmethod
    def _merge_parameters(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "inputs" in data:
            if "prompt" in data:
                raise ValueError("give the text once, as `prompt` or as `inputs`")
            inputs = data.pop("inputs")
            data["messages" if isinstance(inputs, list) else "prompt"] = inputs
        params = data.pop("parameters", None)
        if params is None:
            return data
        if not isinstance(params, dict):
            raise ValueError("`parameters` must be an object of sampling parameters")
        twice = sorted(set(params) & set(data))
        if twice:
            raise ValueError(f"{', '.join(f'`{k}`' for k in twice)} given both at the top level and in `parameters`")
        return {**data, **params}

    @model_validator(mode="after")
    def _one_source(self) -> GenerationRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("send either `prompt` (a string) or `messages` (a list of chat turns), not both or none")
        return self

    @field_validator("messages")
    @classmethod
    def _messages_limits(cls, value: list[ChatMessage] | None, info: ValidationInfo) -> list[ChatMessage] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("is empty, but a chat needs at least one message")
        check_texts([m.content for m in value], _limits(info), "messages")
        return value

    @field_validator("prompt")
    @classmethod
    def _prompt_limits(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            check_texts([value], _limits(info), "prompt")
        return value


# -- any other transformers pipeline -----------------------------------------------------------------
class PipelineRequest(_Strict):
    """The Hugging Face Inference API shape: `{"inputs": ..., "parameters": {...}}`."""

    inputs: str | list[str] | dict[str, Any] | list[dict[str, Any]]
    parameters: dict[str, Any] = Field(default_factory=dict)

    @field_validator("inputs")
    @classmethod
    def _limits(cls, value: Any, info: ValidationInfo) -> Any:
        limits = _limits(info)
        items = value if isinstance(value, list) else [value]
        if not items:
            raise ValueError("is empty, but a job needs at least one input")
        if len(items) > limits.max_batch:
            raise ValueError(
                f"holds {len(items)} inputs, above this worker's limit of {limits.max_batch} (VOLCACHE_MAX_BATCH)"
            )
        texts = [v for item in items for v in ([item] if isinstance(item, str) else item.values())]
        strings = [t for t in texts if isinstance(t, str)]
        if strings:
            check_texts(strings, dataclasses.replace(limits, max_batch=len(strings)), "inputs")
        return value


# -- OpenAI ----------------------------------------------------------------------------------------------
class OpenAIJob(_Strict):
    """RunPod's OpenAI envelope: `{"openai_route": "/v1/...", "openai_input": {...}}`."""

    openai_route: str
    openai_input: dict[str, Any] = Field(default_factory=dict)

    @field_validator("openai_route")
    @classmethod
    def _route(cls, value: str) -> str:
        return "/" + value.strip().strip("/")


class OpenAIEmbeddingsRequest(_Lenient):
    """`POST /v1/embeddings` as OpenAI defines it (text input only)."""

    input: Texts
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, gt=0)

    @field_validator("input")
    @classmethod
    def _limits(cls, texts: list[str], info: ValidationInfo) -> list[str]:
        return check_texts(texts, _limits(info), "input")


class StreamOptions(_Lenient):
    include_usage: bool = False


class OpenAIChatRequest(_Lenient):
    """`POST /v1/chat/completions` as OpenAI defines it; one choice (`n=1`)."""

    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    max_completion_tokens: int | None = Field(default=None, gt=0)
    temperature: Temperature | None = Field(default=None, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: Stop | None = None
    seed: Seed | None = None

    def generation(self) -> dict[str, Any]:
        """The same request in volcache's native generation form."""
        params: dict[str, Any] = {
            "messages": list(self.messages),
            "max_new_tokens": self.max_completion_tokens or self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "stop": self.stop or [],
            "stream": self.stream,
        }
        return {k: v for k, v in params.items() if v is not None}


# -- turning pydantic's errors into one sentence ---------------------------------------------------------
_Model = TypeVar("_Model", bound=BaseModel)


def validate(model: type[_Model], data: Any, limits: Limits, *, what: str) -> _Model:
    """`model` validated from `data`, or `JobError` with one sentence naming every problem."""
    if not isinstance(data, dict):
        raise JobError(f"Invalid {what}: the input must be a JSON object, not {_json_type(data)}.")
    try:
        return model.model_validate(data, context={"limits": limits})
    except ValidationError as exc:
        raise JobError(f"Invalid {what}: {describe(exc, model)}.") from None


def describe(exc: ValidationError, model: type[BaseModel]) -> str:
    """The problems of a `ValidationError` as one clause each, joined with semicolons."""
    problems: list[str] = []
    for err in exc.errors(include_url=False):
        loc = quote_name(".".join(str(p) for p in err["loc"] if not _is_type_tag(p)))
        msg = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if err["type"] == "extra_forbidden":
            known = ", ".join(f"`{name}`" for name in model.model_fields)
            text = f"{loc} is not a field of this job (known fields: {known})"
        elif err["type"] == "missing":
            text = f"{loc} is required"
        elif loc:
            text = f"{loc} {_lower_first(msg)}"
        else:
            text = msg
        if text not in problems:
            problems.append(text)
    return "; ".join(problems)


def quote_name(name: str, limit: int = 64) -> str:
    """A client-chosen name, safe to echo: one line (escapes shown, as repr does), at most `limit` characters."""
    shown = repr(name[:limit])[1:-1] + ("…" if len(name) > limit else "")
    return f"`{shown}`"


def _is_type_tag(part: Any) -> bool:
    """pydantic names union branches in `loc` (`str`, `list[str]`, `function-before[...]`); drop them."""
    return isinstance(part, str) and (
        "[" in part or part in ("str", "int", "float", "bool", "dict", "list", "none", "function-before")
    )


def _lower_first(text: str) -> str:
    if text[:1].isupper() and not text[1:2].isupper():
        text = text[0].lower() + text[1:]
    if text.startswith("input should"):
        text = "should" + text[len("input should") :]
    return text


def _json_type(value: Any) -> str:
    names = {str: "a string", list: "a list", int: "a number", float: "a number", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
