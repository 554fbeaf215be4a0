"""The image job schema, detection from `model_index.json`, the init-image decoding and the settings.

Pure Python (pydantic and PIL): no torch, no pipeline. The pipeline side is in `test_worker_e2e.py`.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import make_settings
from volcache import ConfigError
from volcache.worker import JobError
from volcache.worker.tasks.images import (
    IMAGE_TO_IMAGE,
    TEXT_TO_IMAGE,
    ImageLimits,
    ImageRequest,
    detect_image_task,
    encode_image,
    open_image,
    parse_request,
)

LIMITS = ImageLimits(max_pixels=512 * 512, max_steps=30, max_images=2, max_prompt_chars=100)


def png(width: int = 16, height: int = 8, color: tuple[int, int, int] = (200, 10, 10)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def refused(payload: object) -> str:
    with pytest.raises(JobError) as caught:
        parse_request(payload, LIMITS)
    return str(caught.value)


def test_a_full_request_is_accepted() -> None:
    request = parse_request(
        {
            "prompt": "a cat",
            "negative_prompt": "blurry",
            "width": 256,
            "height": 128,
            "num_inference_steps": 30,
            "guidance_scale": 7.5,
            "seed": 42,
            "num_images": 2,
            "scheduler": "DDIMScheduler",
            "output_format": "jpg",
            "image": "data:image/png;base64," + base64.b64encode(png()).decode(),
            "strength": 0.6,
        },
        LIMITS,
    )
    assert (request.width, request.height, request.seed, request.num_images) == (256, 128, 42, 2)
    assert request.output_format == "jpeg"
    assert request.image == png()


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({}, "`prompt` is required"),
        ({"prompt": "  "}, "`prompt` is empty"),
        ({"prompt": "x" * 101}, "above this worker's limit of 100 (VOLCACHE_MAX_INPUT_CHARS)"),
        ({"prompt": "a", "width": 63}, "`width` must be a multiple of 8 (63 is not; 56 or 64 is)"),
        ({"prompt": "a", "height": 4}, "`height` must be a multiple of 8 (4 is not; 8 is)"),
        ({"prompt": "a", "width": 0}, "`width` should be greater than 0"),
        ({"prompt": "a", "width": 1024, "height": 512}, "1024×512 = 524288 pixels, above this worker's limit"),
        ({"prompt": "a", "num_inference_steps": 31}, "above this worker's limit of 30 (VOLCACHE_MAX_STEPS)"),
        ({"prompt": "a", "num_images": 3}, "is 3, above this worker's limit of 2 (VOLCACHE_MAX_IMAGES)"),
        ({"prompt": "a", "output_format": "gif"}, "`output_format` should be 'png', 'jpeg' or 'webp'"),
        ({"prompt": "a", "seed": -1}, "`seed` should be greater than or equal to 0"),
        ({"prompt": "a", "image": "not base64!"}, "`image` is not valid base64"),
        ({"prompt": "a", "image": "data:image/png,abc"}, "`image` is a data URL without base64 data"),
        ({"prompt": "a", "image": 5}, "`image` must be a base64 string or a data URL"),
        ({"prompt": "a", "strength": 0.5}, "`strength` applies to image-to-image jobs only"),
        ({"prompt": "a", "strength": 1.5, "image": "AAAA"}, "`strength` should be less than or equal to 1"),
        ({"prompt": "a", "steps": 3}, "`steps` is not a field of this job"),
    ],
)
def test_bad_input_gets_one_sentence_naming_the_rule(payload: object, expected: str) -> None:
    message = refused(payload)
    assert expected in message, message
    assert message.startswith("Invalid image job: ") and "\n" not in message


def test_every_problem_is_named_at_once() -> None:
    message = refused({"prompt": "a", "width": 63, "height": 65, "num_images": 9})
    assert "`width` must be a multiple of 8" in message and "`height` must be a multiple of 8" in message
    assert "VOLCACHE_MAX_IMAGES" in message


def test_not_an_object() -> None:
    with pytest.raises(JobError, match="must be a JSON object"):
        parse_request(["a"], LIMITS)


def test_open_image_reads_png_and_refuses_garbage() -> None:
    image = open_image(png(24, 16))
    assert (image.width, image.height, image.mode) == (24, 16, "RGB")
    with pytest.raises(JobError, match="`image` is not a readable image"):
        open_image(b"\x89PNG but not really")


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_encoding_is_deterministic_and_in_the_asked_format(fmt: str) -> None:
    from PIL import Image

    image = open_image(png(32, 32, (10, 120, 240)))
    first, second = encode_image(image, fmt), encode_image(image, fmt)  # type: ignore[arg-type]
    assert first == second
    assert Image.open(io.BytesIO(first)).format == fmt.upper()


def write_index(folder: Path, class_name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": class_name, "unet": ["diffusers", "X"]}))
    return folder


@pytest.mark.parametrize(
    ("class_name", "task"),
    [
        ("StableDiffusionPipeline", TEXT_TO_IMAGE),
        ("StableDiffusionXLPipeline", TEXT_TO_IMAGE),
        ("FluxPipeline", TEXT_TO_IMAGE),
        ("StableDiffusionXLImg2ImgPipeline", IMAGE_TO_IMAGE),
        ("FluxImg2ImgPipeline", IMAGE_TO_IMAGE),
    ],
)
def test_detection_from_model_index(tmp_path: Path, class_name: str, task: str) -> None:
    assert detect_image_task(write_index(tmp_path / "m", class_name)) == task


def test_detection_refuses_inpainting_and_ignores_other_folders(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="StableDiffusionInpaintPipeline needs inputs"):
        detect_image_task(write_index(tmp_path / "inpaint", "StableDiffusionInpaintPipeline"))
    assert detect_image_task(tmp_path) is None
    (tmp_path / "model_index.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read"):
        detect_image_task(tmp_path)


def test_image_settings(volume: Path) -> None:
    settings = make_settings(
        volume,
        MODEL_VARIANT="fp16",
        VOLCACHE_DTYPE="bf16",
        VOLCACHE_MAX_PIXELS="65536",
        VOLCACHE_MAX_STEPS="8",
        VOLCACHE_MAX_IMAGES="3",
        BUCKET_ENDPOINT_URL="http://127.0.0.1:9/images",
        BUCKET_ACCESS_KEY_ID="key",
        BUCKET_SECRET_ACCESS_KEY="s3cr3t-value",
    )
    assert (settings.variant, settings.dtype, settings.max_pixels, settings.max_steps) == ("fp16", "bfloat16", 65536, 8)
    assert ImageLimits.from_settings(settings).max_images == 3
    assert settings.bucket is not None and settings.bucket.credentials()["accessSecret"] == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(settings)  # the bucket is never logged
    defaults = make_settings(volume)
    assert (defaults.variant, defaults.dtype, defaults.bucket) == (None, "auto", None)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"VOLCACHE_DTYPE": "int4"}, "VOLCACHE_DTYPE='int4' is not one of auto"),
        ({"VOLCACHE_MAX_PIXELS": "0"}, "VOLCACHE_MAX_PIXELS='0' must be greater than 0"),
        ({"BUCKET_ENDPOINT_URL": "http://x"}, "BUCKET_SECRET_ACCESS_KEY go together"),
    ],
)
def test_bad_image_settings(volume: Path, env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        make_settings(volume, **env)


_leaf = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=30)
_json = st.recursive(
    _leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_fields = st.sampled_from(sorted(ImageRequest.model_fields))


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(_fields | st.text(max_size=12), _json, max_size=6))
def test_any_json_is_a_request_or_one_sentence(payload: dict[str, Any]) -> None:
    try:
        parse_request({"prompt": "a", **payload}, LIMITS)
    except JobError as exc:
        assert "\n" not in str(exc) and str(exc).endswith(".")


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200) | st.builds(lambda b: png()[:40] + b, st.binary(max_size=60)))
def test_any_bytes_are_an_image_or_one_sentence(data: bytes) -> None:
    try:
        image = open_image(data)
    except JobError as exc:
        assert "`image`" in str(exc)
    else:
        assert image.mode == "RGB"
