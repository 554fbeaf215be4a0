"""Image generation with diffusers: `text-to-image` and `image-to-image` from a pipeline on the volume.

The pipeline is loaded once from the snapshot folder (`local_files_only`, the `MODEL_VARIANT`
weight files, the `VOLCACHE_DTYPE` dtype), with the worker's load strategy. A job is checked in
two steps: the schema (`ImageRequest`: sizes, steps, counts, formats, against the worker's
limits) and then the pipeline (its size granularity, its schedulers, whether it takes an init
image), so a job that cannot run is refused before any step is taken. The output is the shape
RunPod's image workers use, `{"images": [...], "seed": N, "parameters": {...}}`: base64 images,
or URLs when the `BUCKET_*` variables name a bucket (uploaded with RunPod's own helper).

Same seed, same bytes: every image gets its own CPU generator (`seed + i` for image i), a fresh
scheduler from the pipeline's own configuration, and the encoders write no timestamps.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import importlib
import importlib.util
import inspect
import io
import json
import logging
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from ..._errors import ConfigError
from ..._settings import Bucket, Settings
from .._schemas import JobError, Limits, describe
from .base import JobContext, LoadContext, Task, heavy, one_line

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger("volcache.worker")

TEXT_TO_IMAGE = "text-to-image"
IMAGE_TO_IMAGE = "image-to-image"
OutputFormat = Literal["png", "jpeg", "webp"]
DEFAULT_STEPS = 25
MAX_IMAGE_BYTES = 32 * 1024 * 1024  # a decoded init image; larger is refused before PIL sees it
MAX_INIT_PIXELS = 4096 * 4096  # its pixels, read from the header before any is decoded
_PROGRESS_UPDATES = 10  # about this many progress updates per job, whatever its step count


# -- the job ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ImageLimits:
    """`VOLCACHE_MAX_PIXELS`, `VOLCACHE_MAX_STEPS`, `VOLCACHE_MAX_IMAGES`, `VOLCACHE_MAX_INPUT_CHARS`."""

    max_pixels: int = 2048 * 1024
    max_steps: int = 100
    max_images: int = 4
    max_prompt_chars: int = 32_768

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageLimits:
        return cls(settings.max_pixels, settings.max_steps, settings.max_images, settings.max_input_chars)


def _limits(info: ValidationInfo) -> ImageLimits:
    context = info.context if isinstance(info.context, dict) else {}
    limits = context.get("image_limits")
    return limits if isinstance(limits, ImageLimits) else ImageLimits()


class ImageRequest(BaseModel):
    """A native image job. Unknown fields are refused, so a misspelt option is not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str
    negative_prompt: str | None = None
    width: int | None = Field(default=None, gt=0)
    height: int | None = Field(default=None, gt=0)
    num_inference_steps: int | None = Field(default=None, gt=0)
    guidance_scale: float | None = Field(default=None, ge=0, le=100)
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    num_images: int = Field(default=1, gt=0)
    scheduler: str | None = None
    output_format: OutputFormat = "png"
    image: bytes | None = None  # image-to-image: base64 or a data URL, decoded here
    strength: float | None = Field(default=None, gt=0, le=1)
    upload: bool | None = None  # URLs from the BUCKET_* bucket; default: when one is set

    @field_validator("prompt", "negative_prompt")
    @classmethod
    def _text(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if info.field_name == "prompt" and not value.strip():
            raise ValueError("is empty; describe the image to generate")
        limit = _limits(info).max_prompt_chars
        if len(value) > limit:
            raise ValueError(
                f"has {len(value)} characters, above this worker's limit of {limit} (VOLCACHE_MAX_INPUT_CHARS)"
            )
        return value

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, value: int | None) -> int | None:
        if value is not None and value % 8:
            near = " or ".join(str(n) for n in (value // 8 * 8, value // 8 * 8 + 8) if n)
            raise ValueError(f"must be a multiple of 8 ({value} is not; {near} is)")
        return value

    @field_validator("num_inference_steps")
    @classmethod
    def _steps(cls, value: int | None, info: ValidationInfo) -> int | None:
        limit = _limits(info).max_steps
        if value is not None and value > limit:
            raise ValueError(f"is {value}, above this worker's limit of {limit} (VOLCACHE_MAX_STEPS)")
        return value

    @field_validator("num_images")
    @classmethod
    def _count(cls, value: int, info: ValidationInfo) -> int:
        limit = _limits(info).max_images
        if value > limit:
            raise ValueError(f"is {value}, above this worker's limit of {limit} (VOLCACHE_MAX_IMAGES)")
        return value

    @field_validator("output_format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> Any:
        return "jpeg" if isinstance(value, str) and value.lower() == "jpg" else value

    @field_validator("image", mode="before")
    @classmethod
    def _decode_image(cls, value: Any) -> Any:
        return None if value is None else decode_base64_image(value)

    @model_validator(mode="after")
    def _checks(self, info: ValidationInfo) -> ImageRequest:
        limit = _limits(info).max_pixels
        if self.width and self.height and self.width * self.height > limit:
            raise ValueError(
                f"`width` × `height` is {self.width}×{self.height} = {self.width * self.height} pixels, above this "
                f"worker's limit of {limit} (VOLCACHE_MAX_PIXELS)"
            )
        if self.strength is not None and self.image is None:
            raise ValueError("`strength` applies to image-to-image jobs only; send `image` with it")
        return self


def decode_base64_image(value: Any) -> bytes:
    """The bytes of an init image sent as base64 or as a `data:image/...;base64,` URL."""
    if not isinstance(value, str):
        raise ValueError("must be a base64 string or a data URL (data:image/png;base64,...)")
    text = value.strip()
    if text.startswith("data:"):
        header, sep, text = text.partition(",")
        if not sep or not header.endswith(";base64"):
            raise ValueError("is a data URL without base64 data; send data:image/png;base64,<data>")
    if len(text) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise ValueError(f"is larger than {MAX_IMAGE_BYTES // 2**20} MiB")
    try:
        data = base64.b64decode(re.sub(r"\s+", "", text), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not valid base64 (send the image's bytes base64-encoded, or a data URL)") from None
    if not data:
        raise ValueError("is empty")
    return data


def parse_request(payload: Any, limits: ImageLimits) -> ImageRequest:
    """`payload` as an `ImageRequest`, or `JobError` with one sentence naming every problem."""
    if not isinstance(payload, dict):
        raise JobError("Invalid image job: the input must be a JSON object.")
    try:
        return ImageRequest.model_validate(payload, context={"image_limits": limits})
    except ValidationError as exc:
        raise JobError(f"Invalid image job: {describe(exc, ImageRequest)}.") from None


@dataclasses.dataclass(frozen=True)
class ImageJob:
    """A request checked against the pipeline: every value the call will use, resolved."""

    request: ImageRequest
    width: int
    height: int
    steps: int
    seed: int
    scheduler: str
    init_image: Image | None
    upload: bool = False

    def parameters(self, memory: list[str]) -> dict[str, Any]:
        """What the images were made with, as the output's `parameters` echo it."""
        r = self.request
        params: dict[str, Any] = {
            "prompt": r.prompt,
            "negative_prompt": r.negative_prompt,
            "width": self.width,
            "height": self.height,
            "num_inference_steps": self.steps,
            "guidance_scale": r.guidance_scale,
            "num_images": r.num_images,
            "scheduler": self.scheduler,
            "output_format": r.output_format,
        }
        if self.init_image is not None:
            params["strength"] = r.strength
        if memory:
            params["memory"] = memory
        return {k: v for k, v in params.items() if v is not None}


# -- detection and loading -----------------------------------------------------------------------------
def detect_image_task(path: Path) -> str | None:
    """`text-to-image` or `image-to-image` from `model_index.json`; None where the folder is not diffusers'.

    Reads one small JSON file (no torch import). Inpainting and control pipelines need inputs this
    task does not take, so they are refused with the fix rather than served wrongly.
    """
    index = path / "model_index.json"
    if not index.is_file():
        return None
    try:
        name = str(json.loads(index.read_text(encoding="utf-8")).get("_class_name", ""))
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"cannot read {index} ({exc}); is the diffusers model complete?") from None
    if re.search(r"Inpaint|ControlNet|Video|Audio|Upscale", name):
        raise ConfigError(
            f"{name} needs inputs volcache's image tasks do not take (masks, control images, video or audio). "
            "Fix: serve a text-to-image or image-to-image pipeline."
        )
    return IMAGE_TO_IMAGE if re.search(r"Img2Img|ImageToImage|Image2Image", name) else TEXT_TO_IMAGE


def resolve_dtype(requested: str, device: str, variant: str | None) -> str:
    """`VOLCACHE_DTYPE`: `auto` is the variant's precision on a GPU (bf16 where supported), float32 on the CPU."""
    if requested != "auto":
        return requested
    if not device.startswith("cuda"):
        return "float32"
    if variant in ("fp16", "bf16"):
        return "float16" if variant == "fp16" else "bfloat16"
    torch = heavy("torch")
    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


def load_pipeline(path: Path, *, device: str, dtype: str, variant: str | None, read_kwargs: dict[str, object]) -> Any:
    """The diffusers pipeline in `path` (the snapshot folder, never a repo id), on `device`, from local files only."""
    torch, diffusers = heavy("torch"), heavy("diffusers")
    diffusers.utils.logging.disable_progress_bar()
    kwargs: dict[str, Any] = {"local_files_only": True, "torch_dtype": getattr(torch, dtype)}
    if variant:
        kwargs["variant"] = variant
    if read_kwargs.get("disable_mmap"):
        kwargs["disable_mmap"] = True  # diffusers passes it on to each component's safetensors read
    try:
        pipe = diffusers.DiffusionPipeline.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the diffusers pipeline at {path}: {one_line(exc)}") from None
    accepted = inspect.signature(pipe.__call__).parameters
    missing = [p for p in ("prompt", "height", "width", "num_inference_steps") if p not in accepted]
    if missing:
        raise ConfigError(
            f"{type(pipe).__name__} does not take {', '.join(missing)}; volcache's image tasks serve text-to-image "
            "and image-to-image pipelines. Fix: set MODEL_TASK to the task this model serves."
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


# -- the pipeline, served -----------------------------------------------------------------------------
class ImagePipeline:
    """A loaded diffusers pipeline and what a job needs of it: sizes, schedulers, img2img, memory switches.

    Jobs run one at a time (`lock`): the scheduler and the memory switches are the pipeline's
    state, and a GPU runs one denoising loop at its best anyway.
    """

    def __init__(self, pipe: Any, *, device: str, limits: ImageLimits, bucket: Bucket | None = None) -> None:
        self.pipe = pipe
        self.device = device
        self.limits = limits
        self.bucket = bucket
        self.lock = threading.Lock()
        self._scheduler_config = dict(pipe.scheduler.config)
        self._default_scheduler = type(pipe.scheduler).__name__
        self._schedulers = {cls.__name__: cls for cls in [type(pipe.scheduler), *pipe.scheduler.compatibles]}
        # The image-to-image form of a text-to-image pipeline shares every component: no new weights.
        self._img2img: Any = None if self.takes_image else _image_form(pipe)
        self._slicing = False
        self._tiling = False

    @property
    def class_name(self) -> str:
        return type(self.pipe).__name__

    @property
    def takes_image(self) -> bool:
        return "image" in inspect.signature(self.pipe.__call__).parameters

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this: 8, and the VAE's factor (times 2 where latents are packed)."""
        factor = int(getattr(self.pipe, "vae_scale_factor", 8))
        if getattr(self.pipe, "unet", None) is None and getattr(self.pipe, "transformer", None) is not None:
            factor *= 2  # FLUX and SD3 pack 2×2 latent patches into one token
        return math.lcm(8, factor)

    @property
    def native_side(self) -> int:
        """The side the model was trained at (SD 1.5: 512, SDXL: 1024): the default size."""
        vae = int(getattr(self.pipe, "vae_scale_factor", 8))
        default = getattr(self.pipe, "default_sample_size", None)
        if default is None and getattr(self.pipe, "unet", None) is not None:
            default = self.pipe.unet.config.sample_size
        side = int(default or 64) * vae
        return max(self.multiple, side // self.multiple * self.multiple)

    @property
    def smallest_side(self) -> int:
        """The smallest side every block of the model can halve cleanly: what the warm-up generates."""
        unet = getattr(self.pipe, "unet", None)
        halvings = len(unet.config.block_out_channels) - 1 if unet is not None else 1
        return math.lcm(self.multiple, int(getattr(self.pipe, "vae_scale_factor", 8)) * 2**halvings)

    def check(self, request: ImageRequest, *, needs_image: bool) -> ImageJob:
        """The request against this pipeline; `JobError` naming the rule where it cannot run."""
        init = open_image(request.image) if request.image is not None else None
        if needs_image and init is None:
            raise JobError(f"This worker serves image-to-image ({self.class_name}); send the init image in `image`.")
        if init is not None and not self.takes_image and self._img2img is None:
            raise JobError(f"{self.class_name} has no image-to-image form; send the job without `image`.")
        width, height = self._size(request, init)
        steps = request.num_inference_steps or min(DEFAULT_STEPS, self.limits.max_steps)
        for name, value, limit, variable in (
            ("num_inference_steps", steps, self.limits.max_steps, "VOLCACHE_MAX_STEPS"),
            ("num_images", request.num_images, self.limits.max_images, "VOLCACHE_MAX_IMAGES"),
        ):
            if value > limit:
                raise JobError(f"`{name}` is {value}, above this worker's limit of {limit} ({variable}).")
        scheduler = request.scheduler or self._default_scheduler
        if scheduler not in self._schedulers:
            known = ", ".join(sorted(self._schedulers))
            raise JobError(f"`scheduler` {scheduler!r} is not one {self.class_name} can use; choose one of: {known}.")
        if request.upload and self.bucket is None:
            raise JobError(
                "Image URLs need a bucket: set BUCKET_ENDPOINT_URL, BUCKET_ACCESS_KEY_ID and "
                "BUCKET_SECRET_ACCESS_KEY on the worker, or ask for base64 images."
            )
        upload = self.bucket is not None if request.upload is None else request.upload
        seed = request.seed if request.seed is not None else secrets.randbelow(2**32)
        return ImageJob(request, width, height, steps, seed, scheduler, init, upload)

    def _size(self, request: ImageRequest, init: Image | None) -> tuple[int, int]:
        m = self.multiple
        if init is not None and request.width is None and request.height is None:
            width, height = max(m, init.width // m * m), max(m, init.height // m * m)
        else:
            width, height = request.width or self.native_side, request.height or self.native_side
        for name, side in (("width", width), ("height", height)):
            if side % m:
                raise JobError(f"`{name}` must be a multiple of {m} for {self.class_name} ({side} is not).")
        if width * height > self.limits.max_pixels:
            raise JobError(
                f"{width}×{height} = {width * height} pixels is above this worker's limit of "
                f"{self.limits.max_pixels} (VOLCACHE_MAX_PIXELS); ask for a smaller `width` and `height`."
            )
        return width, height

    def generate(self, job: ImageJob, progress: JobContext | None = None) -> tuple[list[Image], list[str]]:
        """The images of `job` (blocking), and the memory switches it needed."""
        with self.lock:
            pipe = self._pipeline_for(job)
            memory = self._fit(job)
            while True:
                kwargs = self._call_kwargs(pipe, job, progress)
                try:
                    return self._call(pipe, kwargs), memory
                except Exception as exc:
                    if not _out_of_memory(exc):
                        raise
                    _free_memory(self.device)
                    if self._slicing and self._tiling:
                        raise self._does_not_fit(job) from None
                # Out of memory: once more with attention slicing and VAE tiling, then refuse.
                memory = self._set_memory(slicing=True, tiling=True)

    def _pipeline_for(self, job: ImageJob) -> Any:
        pipe = self.pipe
        if job.init_image is not None and self._img2img is not None:
            pipe = self._img2img
        # A fresh scheduler per job: schedulers keep the last job's timesteps and step index.
        pipe.scheduler = self._schedulers[job.scheduler].from_config(self._scheduler_config)
        return pipe

    def _call_kwargs(self, pipe: Any, job: ImageJob, progress: JobContext | None) -> dict[str, Any]:
        torch = heavy("torch")
        r = job.request
        kwargs: dict[str, Any] = {
            "prompt": r.prompt,
            "width": job.width,
            "height": job.height,
            "num_inference_steps": job.steps,
            "num_images_per_prompt": r.num_images,
            "generator": [torch.Generator("cpu").manual_seed(job.seed + i) for i in range(r.num_images)],
            "output_type": "pil",
        }
        accepted = inspect.signature(pipe.__call__).parameters
        if r.negative_prompt is not None and "negative_prompt" in accepted:
            kwargs["negative_prompt"] = r.negative_prompt
        if r.guidance_scale is not None:
            kwargs["guidance_scale"] = r.guidance_scale
        if job.init_image is not None:
            kwargs["image"] = job.init_image.resize((job.width, job.height))
            if r.strength is not None:
                kwargs["strength"] = r.strength
        if progress is not None and "callback_on_step_end" in accepted:
            kwargs["callback_on_step_end"] = _progress_callback(progress, job.steps, r.strength)
        return kwargs

    def _call(self, pipe: Any, kwargs: dict[str, Any]) -> list[Image]:
        torch = heavy("torch")
        with torch.inference_mode():
            images = list(pipe(**kwargs).images)
        return images

    def _fit(self, job: ImageJob) -> list[str]:
        """The memory switches this job needs on a GPU (none on the CPU, where memory is the host's).

        VAE tiling when the decoder's activations (the full-size image at the channel count of the
        VAE's last block, a few tensors alive at once) would take more than half the free memory; attention slicing
        for batches above four times the model's native pixel count.
        """
        if not self.device.startswith("cuda"):
            return self._set_memory(slicing=False, tiling=False)
        torch = heavy("torch")
        free, _ = torch.cuda.mem_get_info(torch.device(self.device))
        pixels = job.width * job.height * job.request.num_images
        vae = getattr(self.pipe, "vae", None)
        channels = (getattr(getattr(vae, "config", None), "block_out_channels", None) or [128])[0]
        decode_bytes = pixels * channels * self.pipe.dtype.itemsize * 4
        native = self.native_side**2
        return self._set_memory(slicing=pixels > 4 * native, tiling=decode_bytes > free // 2)

    def _set_memory(self, *, slicing: bool, tiling: bool) -> list[str]:
        if slicing != self._slicing and hasattr(self.pipe, "enable_attention_slicing"):
            (self.pipe.enable_attention_slicing if slicing else self.pipe.disable_attention_slicing)()
            if self._img2img is not None:
                (self._img2img.enable_attention_slicing if slicing else self._img2img.disable_attention_slicing)()
            self._slicing = slicing
        vae = getattr(self.pipe, "vae", None)
        if tiling != self._tiling and vae is not None and hasattr(vae, "enable_tiling"):
            (vae.enable_tiling if tiling else vae.disable_tiling)()
            self._tiling = tiling
        return [name for name, on in (("attention_slicing", self._slicing), ("vae_tiling", self._tiling)) if on]

    def _does_not_fit(self, job: ImageJob) -> JobError:
        where = "the GPU's memory" if self.device.startswith("cuda") else "this worker's memory"
        free = ""
        if self.device.startswith("cuda"):
            free_b, total_b = heavy("torch").cuda.mem_get_info()
            free = f" ({free_b / 2**30:.1f} GiB free of {total_b / 2**30:.1f} GiB)"
        return JobError(
            f"{job.request.num_images} image(s) of {job.width}×{job.height} do not fit in {where}{free}, even with "
            "attention slicing and VAE tiling; ask for fewer pixels or fewer images."
        )

    def warmup(self) -> None:
        """One step at the smallest size: builds the kernels and touches every weight once."""
        side = self.smallest_side
        request = ImageRequest.model_validate(
            {"prompt": "volcache warm-up", "width": side, "height": side, "num_inference_steps": 1, "seed": 0},
            context={"image_limits": dataclasses.replace(self.limits, max_pixels=max(self.limits.max_pixels, side**2))},
        )
        job = ImageJob(request, side, side, 1, 0, self._default_scheduler, None)
        self.generate(job)

    # -- encoding the answer ---------------------------------------------------------------------------
    def answer(self, job: ImageJob, images: list[Image], memory: list[str], job_id: str) -> dict[str, Any]:
        """`{"images": [...], "seed": N, "parameters": {...}}`: base64, or bucket URLs when one is set."""
        fmt = job.request.output_format
        blobs = [encode_image(image, fmt) for image in images]
        if job.upload and self.bucket is not None:
            shown = [upload(self.bucket, job_id, i, blob, fmt) for i, blob in enumerate(blobs)]
        else:
            shown = [base64.b64encode(blob).decode("ascii") for blob in blobs]
        return {"images": shown, "seed": job.seed, "parameters": job.parameters(memory)}


def open_image(data: bytes) -> Image:
    """An init image as RGB, or `JobError` when the bytes are not a PNG, JPEG, WebP or other PIL image."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with PILImage.open(io.BytesIO(data)) as image:
            size = image.size
            rgb: Image | None = image.convert("RGB") if size[0] * size[1] <= MAX_INIT_PIXELS else None
    except (UnidentifiedImageError, OSError, ValueError, PILImage.DecompressionBombError):
        raise JobError("`image` is not a readable image; send a PNG, JPEG or WebP, base64-encoded.") from None
    if rgb is None:
        raise JobError(f"`image` is {size[0]}×{size[1]}, above the {MAX_INIT_PIXELS} pixels an init image may have.")
    return rgb


def encode_image(image: Image, fmt: OutputFormat) -> bytes:
    """The image in `fmt`, with no metadata (no timestamps: the same pixels give the same bytes)."""
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, format="PNG")
    else:
        image.save(buffer, format=fmt.upper(), quality=90)
    return buffer.getvalue()


def upload(bucket: Bucket, job_id: str, index: int, blob: bytes, fmt: OutputFormat) -> str:
    """Upload one image with RunPod's own helper; the presigned URL it answers.

    Without boto3 the helper would write the image into the working folder instead (its local
    fallback), so that case is refused here.
    """
    if importlib.util.find_spec("boto3") is None:
        raise JobError("The BUCKET_* variables are set but boto3 is not installed; install boto3 on the worker.")
    from runpod.serverless.utils import rp_upload

    safe_id = re.sub(r"[^A-Za-z0-9_.-]", "_", job_id)[:128] or "job"
    name = f"{index}-{secrets.token_hex(4)}.{'jpg' if fmt == 'jpeg' else fmt}"
    url = rp_upload.upload_in_memory_object(
        name, blob, bucket_creds=bucket.credentials(), bucket_name=bucket.name or None, prefix=safe_id
    )
    return str(url)


def _image_form(pipe: Any) -> Any:
    """The image-to-image pipeline built from `pipe`'s components, or None where diffusers has none."""
    try:
        form = heavy("diffusers").AutoPipelineForImage2Image.from_pipe(pipe)
    except ValueError:  # no image-to-image class for this pipeline
        return None
    form.set_progress_bar_config(disable=True)
    return form


def _progress_callback(progress: JobContext, steps: int, strength: float | None) -> Callable[..., dict[str, Any]]:
    """diffusers' `callback_on_step_end`: RunPod progress every few steps, as step k of n."""
    # image-to-image runs only the last `strength` share of the schedule
    total = max(1, int(steps * strength)) if strength is not None else steps
    every = max(1, math.ceil(total / _PROGRESS_UPDATES))
    started = time.perf_counter()

    def callback(pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        done = step + 1
        if done % every == 0 or done == total:
            progress.progress({"step": done, "steps": total, "seconds": round(time.perf_counter() - started, 2)})
        return callback_kwargs

    return callback


def _out_of_memory(exc: BaseException) -> bool:
    torch = heavy("torch")
    return isinstance(exc, MemoryError | torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _free_memory(device: str) -> None:
    import gc

    gc.collect()
    if device.startswith("cuda"):
        heavy("torch").cuda.empty_cache()


# -- the tasks ---------------------------------------------------------------------------------------
class TextToImageTask(Task["ImageJob | ImageRequest"]):
    """A diffusers pipeline: a prompt in, images out; with an `image`, image-to-image where the pipeline has that form.

    Native job: `{"prompt": ..., "width": 1024, "height": 1024, "num_inference_steps": 25, "seed": 1, ...}`
    (see `ImageRequest`); the answer: `{"images": ["<base64>" | "<url>", ...], "seed": N, "parameters": {...}}`.
    OpenAI's `/v1/images/generations` is served from the same answer by the adapter.
    """

    name = TEXT_TO_IMAGE
    libraries = ("torch", "transformers", "diffusers")
    # One denoising loop at a time (the pipeline's scheduler is its state); a second job waits
    # here instead of going to a free worker, so RunPod is told one.
    concurrency = 1
    needs_image = False

    def __init__(self, pipeline: ImagePipeline, limits: Limits) -> None:
        self.pipeline = pipeline
        self.limits = limits

    @classmethod
    def load(cls, ctx: LoadContext) -> TextToImageTask:
        if not (ctx.path / "model_index.json").is_file():
            raise ConfigError(
                f"MODEL_TASK={ctx.task} serves diffusers pipelines, and {ctx.model} has no model_index.json. "
                "Fix: serve a diffusers repo, or unset MODEL_TASK to serve this model's own task."
            )
        settings = ctx.settings
        dtype = resolve_dtype(settings.dtype, ctx.device, settings.variant)
        pipe = load_pipeline(
            ctx.path, device=ctx.device, dtype=dtype, variant=settings.variant, read_kwargs=dict(ctx.read_kwargs)
        )
        log.info(
            "volcache: %s on %s in %s (variant %s)", type(pipe).__name__, ctx.device, dtype, settings.variant or "none"
        )
        limits = ImageLimits.from_settings(settings)
        return cls(ImagePipeline(pipe, device=ctx.device, limits=limits, bucket=settings.bucket), ctx.limits)

    def decode(self, payload: dict[str, Any]) -> ImageJob:
        return self.pipeline.check(parse_request(payload, self.pipeline.limits), needs_image=self.needs_image)

    def run(self, request: ImageJob | ImageRequest, job: JobContext) -> Iterator[Any]:
        if isinstance(request, ImageRequest):  # from the OpenAI adapter: checked against the pipeline here
            request = self.pipeline.check(request, needs_image=self.needs_image)
        images, memory = self.pipeline.generate(request, job)
        yield self.pipeline.answer(request, images, memory, job.id)

    def warmup(self) -> None:
        self.pipeline.warmup()


class ImageToImageTask(TextToImageTask):
    """An image-to-image pipeline (an SDXL refiner, `*Img2ImgPipeline`): every job sends its init `image`."""

    name = IMAGE_TO_IMAGE
    needs_image = True
