"""Job validation: what each task accepts, and the one-sentence errors for what it refuses."""

from __future__ import annotations

from typing import Any

import pytest

from volcache.worker import JobError, Limits
from volcache.worker._schemas import (
    EmbeddingsRequest,
    GenerationRequest,
    OpenAIChatRequest,
    OpenAIEmbeddingsRequest,
    OpenAIJob,
    PipelineRequest,
    validate,
)

LIMITS = Limits(max_batch=4, max_input_chars=20, max_new_tokens=16)


def error_of(model: Any, data: Any) -> str:
    with pytest.raises(JobError) as info:
        validate(model, data, LIMITS, what="job")
    message = str(info.value)
    assert message.startswith("Invalid job: ") and message.endswith(".") and "\n" not in message
    return message


def test_embeddings_accepts_a_string_a_list_and_the_inputs_alias() -> None:
    assert validate(EmbeddingsRequest, {"input": "a"}, LIMITS, what="job").input == ["a"]
    assert validate(EmbeddingsRequest, {"inputs": ["a", "b"]}, LIMITS, what="job").input == ["a", "b"]
    request = validate(EmbeddingsRequest, {"input": "a", "normalize": False, "dimensions": 8}, LIMITS, what="job")
    assert (request.normalize, request.dimensions) == (False, 8)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"input": 3}, "`input` must be a string or a list of strings"),
        ({"input": [[1, 2]]}, "`input` holds token ids"),
        ({"input": ["a"] * 5}, "`input` holds 5 texts, above this worker's limit of 4 (VOLCACHE_MAX_BATCH)"),
        ({"input": ["ok", "x" * 21]}, "has 21 characters in `input[1]`"),
        ({"input": "a", "dimensions": 0}, "`dimensions` should be greater than 0"),
        ({"input": "a", "extra": 1}, "`extra` is not a field of this job (known fields: `input`, `normalize`"),
        ({}, "`input` is required"),
    ],
)
def test_embeddings_errors(data: dict[str, Any], expected: str) -> None:
    assert expected in error_of(EmbeddingsRequest, data)


def test_every_problem_is_named_in_one_sentence() -> None:
    message = error_of(EmbeddingsRequest, {"input": [], "normalize": "maybe", "typo": 1})
    assert "`input` is empty" in message and "`normalize`" in message and "`typo`" in message
    assert message.count(";") == 2


def test_input_must_be_an_object() -> None:
    with pytest.raises(JobError, match="must be a JSON object, not a list"):
        validate(EmbeddingsRequest, ["a"], LIMITS, what="job")


def test_generation_merges_parameters_and_maps_inputs() -> None:
    request = validate(
        GenerationRequest, {"inputs": "hi", "parameters": {"max_new_tokens": 4, "stop": "x"}}, LIMITS, what="job"
    )
    assert (request.prompt, request.max_new_tokens, request.stop) == ("hi", 4, ["x"])
    chat = validate(GenerationRequest, {"inputs": [{"role": "user", "content": "hi"}]}, LIMITS, what="job")
    assert chat.messages is not None and chat.messages[0].content == "hi"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"prompt": "hi", "max_new_tokens": 17}, "`max_new_tokens` is 17, above this worker's limit of 16"),
        ({"prompt": "hi", "messages": [{"role": "user", "content": "x"}]}, "not both or none"),
        ({}, "not both or none"),
        ({"prompt": "x" * 21}, "VOLCACHE_MAX_INPUT_CHARS"),
        ({"prompt": "hi", "top_p": 1.5}, "`top_p` should be less than or equal to 1"),
        ({"prompt": "hi", "stop": [""]}, "`stop` holds an empty string"),
        ({"prompt": "hi", "parameters": {"seed": 1}, "seed": 2}, "`seed` given both"),
        ({"prompt": "hi", "parameters": 3}, "`parameters` must be an object"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "type 'image_url'"),
    ],
)
def test_generation_errors(data: dict[str, Any], expected: str) -> None:
    assert expected in error_of(GenerationRequest, data)


def test_chat_content_parts_and_developer_role() -> None:
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    request = validate(GenerationRequest, {"messages": [{"role": "developer", "content": parts}]}, LIMITS, what="job")
    assert request.messages is not None
    assert request.messages[0].as_template_dict() == {"role": "system", "content": "ab"}


def test_openai_chat_becomes_a_native_request_and_ignores_unknown_fields() -> None:
    chat = validate(
        OpenAIChatRequest,
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 5,
            "temperature": 0,
            "stop": "\n",
            "stream": True,
            "user": "someone",
            "logit_bias": {},
        },
        LIMITS,
        what="job",
    )
    native = validate(GenerationRequest, chat.generation(), LIMITS, what="job")
    assert (native.max_new_tokens, native.temperature, native.stop, native.stream) == (5, 0, ["\n"], True)
    assert "`n` should be less than or equal to 1" in error_of(
        OpenAIChatRequest, {"messages": [{"role": "user", "content": "x"}], "n": 3}
    )


def test_openai_envelope_and_embeddings() -> None:
    job = validate(OpenAIJob, {"openai_route": "v1/models/"}, LIMITS, what="job")
    assert job.openai_route == "/v1/models" and job.openai_input == {}
    emb = validate(OpenAIEmbeddingsRequest, {"input": "x", "encoding_format": "base64"}, LIMITS, what="job")
    assert emb.encoding_format == "base64"
    assert "`encoding_format`" in error_of(OpenAIEmbeddingsRequest, {"input": "x", "encoding_format": "int8"})


def test_pipeline_inputs() -> None:
    qa = validate(PipelineRequest, {"inputs": {"question": "q", "context": "c"}}, LIMITS, what="job")
    assert qa.inputs == {"question": "q", "context": "c"} and qa.parameters == {}
    assert "`inputs` is empty" in error_of(PipelineRequest, {"inputs": []})
    assert "holds 5 inputs" in error_of(PipelineRequest, {"inputs": ["a"] * 5})
    assert "VOLCACHE_MAX_INPUT_CHARS" in error_of(PipelineRequest, {"inputs": {"question": "q" * 30}})


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"prompt": "x", "temperature": 1e-45}, "`temperature` is 1e-45, but must be 0 (greedy) or at least 0.01"),
        ({"prompt": "x", "temperature": 1e9}, "`temperature` should be less than or equal to 100"),
        ({"prompt": "x", "repetition_penalty": 1e-300}, "`repetition_penalty` should be greater than or equal to 0.01"),
        ({"prompt": "x", "seed": -1}, "`seed` should be greater than or equal to 0"),
        ({"prompt": "x", "seed": 2**32}, "`seed` should be less than 4294967296"),
        ({"prompt": "a\ud800b"}, "`prompt` holds a lone surrogate ('\\ud800') at character 1 of `prompt`"),
        ({"prompt": "x", "stop": ["\udfff"]}, "lone surrogate ('\\udfff') at character 0 of `stop[0]`"),
    ],
)
def test_sampling_values_that_would_make_nan_probabilities_are_job_errors(data: dict[str, Any], expected: str) -> None:
    assert expected in error_of(GenerationRequest, data)


def test_lone_surrogates_and_openai_bounds() -> None:
    assert "lone surrogate" in error_of(EmbeddingsRequest, {"input": ["ok", "\ud83d"]})
    assert "`input[1]`" in error_of(EmbeddingsRequest, {"input": ["ok", "\ud83d"]})
    chat = {"messages": [{"role": "user", "content": "x"}]}
    assert "at least 0.01" in error_of(OpenAIChatRequest, {**chat, "temperature": 1e-30})
    assert "`seed` should be less than 4294967296" in error_of(OpenAIChatRequest, {**chat, "seed": 2**40})
    assert validate(GenerationRequest, {"prompt": "x", "temperature": 0, "seed": 2**32 - 1}, LIMITS, what="job").seed
