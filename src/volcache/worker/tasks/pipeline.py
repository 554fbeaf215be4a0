"""Any other transformers pipeline, with the Hugging Face Inference API's job shape.

Native job: `{"inputs": ..., "parameters": {...}}`; the answer is the pipeline's output as JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from ..._errors import ConfigError
from .._schemas import JobError, Limits, PipelineRequest, quote_name, validate
from ._placement import placement_kwargs
from .base import JobContext, LoadContext, Task, heavy, jsonable, one_line
from .embeddings import WARMUP_TEXT

log = logging.getLogger("volcache.worker")

# A small valid input per task for the warm-up; tasks not listed (images, audio) skip it.
_WARMUP_INPUTS: dict[str, tuple[Any, dict[str, Any]]] = {
    "text-classification": (WARMUP_TEXT, {}),
    "token-classification": (WARMUP_TEXT, {}),
    "feature-extraction": (WARMUP_TEXT, {}),
    "zero-shot-classification": (WARMUP_TEXT, {"candidate_labels": ["test", "other"]}),
}


# Models whose position ids start after the padding index: their last usable position is
# max_position_embeddings - (pad_token_id + 1) (514 positions hold 512 tokens for RoBERTa).
_OFFSET_POSITIONS = frozenset({
    "roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "mpnet",
    "roberta-prelayernorm", "data2vec-text", "ibert", "luke",
})  # fmt: skip
# Pipelines that split long inputs themselves (question answering strides over the context).
_LONG_INPUT_TASKS = frozenset({"question-answering", "document-question-answering", "automatic-speech-recognition"})


def _int_in(low: int, high: int) -> Any:
    def check(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high

    RULES[check] = f"must be a whole number from {low} to {high}"
    return check


def _float_in(low: float, high: float) -> Any:
    def check(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high

    RULES[check] = f"must be a number from {low} to {high}"
    return check


def _one_of(*choices: str) -> Any:
    def check(value: Any) -> bool:
        return value in choices

    RULES[check] = "must be one of " + ", ".join(f"`{c}`" for c in choices)
    return check


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _short_strings(value: Any) -> bool:
    items = [value] if isinstance(value, str) else value
    return (
        isinstance(items, list)
        and 0 < len(items) <= 64
        and all(isinstance(v, str) and 0 < len(v) <= 256 for v in items)
    )


def _template(value: Any) -> bool:
    return isinstance(value, str) and "{}" in value and len(value) <= 256


RULES: dict[Any, str] = {
    _is_bool: "must be true or false",
    _short_strings: "must be a string or a list of 1 to 64 strings of at most 256 characters",
    _template: "must be a string of at most 256 characters holding `{}`",
}
# Per pipeline task, the parameters a job may pass and the check each must pass.
PARAMETERS: dict[str, dict[str, Any]] = {
    "text-classification": {
        "top_k": _int_in(1, 1000),
        "function_to_apply": _one_of("sigmoid", "softmax", "none"),
        "truncation": _is_bool,
    },
    "feature-extraction": {"truncation": _is_bool},
    "token-classification": {
        "aggregation_strategy": _one_of("none", "simple", "first", "average", "max"),
        "ignore_labels": _short_strings,
    },
    "fill-mask": {"top_k": _int_in(1, 1000), "targets": _short_strings},
    "zero-shot-classification": {
        "candidate_labels": _short_strings,
        "hypothesis_template": _template,
        "multi_label": _is_bool,
    },
    "question-answering": {
        "top_k": _int_in(1, 100),
        "max_answer_len": _int_in(1, 512),
        "handle_impossible_answer": _is_bool,
    },
    "image-classification": {"top_k": _int_in(1, 1000)},
    "audio-classification": {"top_k": _int_in(1, 1000)},
    "object-detection": {"threshold": _float_in(0.0, 1.0)},
    "summarization": {"max_new_tokens": _int_in(1, 4096), "num_beams": _int_in(1, 8)},
    "translation": {"max_new_tokens": _int_in(1, 4096), "num_beams": _int_in(1, 8)},
    "text2text-generation": {"max_new_tokens": _int_in(1, 4096), "num_beams": _int_in(1, 8)},
}


def token_limit(pipe: Any) -> int | None:
    """The most tokens one input may have: the tokenizer's limit and the model's position table."""
    limits = []
    tokenizer_max = getattr(getattr(pipe, "tokenizer", None), "model_max_length", None)
    if isinstance(tokenizer_max, int) and 0 < tokenizer_max < 1_000_000:  # unset is 1e30
        limits.append(tokenizer_max)
    config = getattr(getattr(pipe, "model", None), "config", None)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        pad = getattr(config, "pad_token_id", None)
        if getattr(config, "model_type", "") in _OFFSET_POSITIONS and isinstance(pad, int):
            positions -= pad + 1
        limits.append(positions)
    return min(limits) if limits else None


class PipelineTask(Task[PipelineRequest]):
    """A transformers `pipeline` for any other task, called with `{"inputs": ..., "parameters": {...}}`."""

    libraries = ("transformers",)

    def __init__(self, pipe: Any, name: str, limits: Limits | None = None) -> None:
        self.pipe = pipe
        self.name = name
        self.limits = limits or Limits()

    @classmethod
    def load(cls, ctx: LoadContext) -> PipelineTask:
        name = check_pipeline_task(ctx.task)
        # pipeline() passes local_files_only itself in offline mode (the worker is offline by now).
        pipe = heavy("transformers").pipeline(
            name, model=str(ctx.path), model_kwargs=dict(ctx.read_kwargs), **pipeline_placement(ctx.device)
        )
        return cls(pipe, name, ctx.limits)

    def decode(self, payload: dict[str, Any]) -> PipelineRequest:
        request = validate(PipelineRequest, payload, self.limits, what=f"{self.name} job")
        self._check_parameters(request.parameters)
        if request.parameters.get("truncation") is not True:  # the client may ask for truncation instead
            self._check_lengths(request.inputs)
        return request

    def _check_parameters(self, parameters: dict[str, Any]) -> None:
        """Only the parameters this task's pipeline documents: others reach the model's code unchecked."""
        allowed = PARAMETERS.get(self.name, {})
        unknown = sorted(set(parameters) - set(allowed))
        if unknown:
            names = ", ".join(quote_name(k) for k in unknown)
            known = ", ".join(f"`{k}`" for k in allowed) or "none"
            raise JobError(f"Invalid {self.name} job: {names} is not a parameter of this pipeline (allowed: {known}).")
        for key, check in allowed.items():
            if key in parameters and not check(parameters[key]):
                raise JobError(f"Invalid {self.name} job: `parameters.{key}` {RULES[check]}.")

    @property
    def _truncates(self) -> bool:
        return "truncation" in PARAMETERS.get(self.name, {})

    def _check_lengths(self, inputs: Any) -> None:
        """Refuse a text longer than the model's positions: it would index past the position table."""
        limit = token_limit(self.pipe)
        tokenizer = getattr(self.pipe, "tokenizer", None)
        if limit is None or not callable(tokenizer) or self.name in _LONG_INPUT_TASKS:
            return
        texts = (
            [inputs]
            if isinstance(inputs, str)
            else [t for t in inputs if isinstance(t, str)]
            if isinstance(inputs, list)
            else []
        )
        for i, text in enumerate(texts):
            n = len(tokenizer(text)["input_ids"])
            if n > limit:
                where = f"`inputs[{i}]`" if len(texts) > 1 else "`inputs`"
                raise JobError(
                    f"Invalid {self.name} job: {where} has {n} tokens, above this model's limit of {limit}; "
                    "shorten the text" + (" or pass `parameters.truncation: true`." if self._truncates else ".")
                )

    def run(self, request: PipelineRequest, job: JobContext) -> Iterator[Any]:
        yield self.call(request)

    def call(self, request: PipelineRequest) -> Any:
        """The pipeline's output for one request, as JSON types."""
        try:
            output = self.pipe(request.inputs, **request.parameters)
        except (TypeError, ValueError, KeyError) as exc:
            raise JobError(f"The {self.name} pipeline refused this job: {one_line(exc)}.") from None
        return jsonable(output)

    def warmup(self) -> None:
        sample = _WARMUP_INPUTS.get(self.name)
        if self.name == "fill-mask":
            mask = getattr(self.pipe.tokenizer, "mask_token", None) or "[MASK]"
            sample = (f"Paris is the {mask} of France.", {})
        if sample is None:
            log.info("volcache: no warm-up input for the %s pipeline; the first job warms it up", self.name)
            return
        self.pipe(sample[0], **sample[1])


def check_pipeline_task(task: str) -> str:
    """`task` as transformers names it (`sentiment-analysis` -> `text-classification`), or `ConfigError`."""
    from transformers.pipelines import SUPPORTED_TASKS, check_task

    try:
        return str(check_task(task)[0])
    except KeyError:
        known = ", ".join(sorted(SUPPORTED_TASKS))
        raise ConfigError(
            f"MODEL_TASK={task!r} is not a task volcache serves. Fix: use embeddings, text-generation, "
            f"text-to-image or one of the transformers pipeline tasks: {known}."
        ) from None


def pipeline_placement(device: str) -> dict[str, Any]:
    """`pipeline()`'s placement: `device` on the CPU; elsewhere `device_map`, so the weights go to the
    device as they are read (a `device=` pipeline builds on the host, then moves the model).
    """
    return placement_kwargs(device) or {"device": device}
