"""Where a model's weights go as they are read: straight onto the device, never through a full host copy.

`from_pretrained(..., device_map="cuda")` makes transformers materialise each tensor on the GPU
as it reads it from the (memory-mapped, page-cached) file, so the process never holds the whole
model in host memory and the copies to the device overlap the reads. Building on the CPU and
then calling `model.to("cuda")` does the opposite: every byte lands in host memory first, and the
copy waits for the last one. transformers 5 loads in the checkpoint's dtype by default
(`dtype="auto"`); older versions load float32 unless told, so the dtype is asked for explicitly.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any


def placement_kwargs(device: str) -> dict[str, Any]:
    """`from_pretrained` keyword arguments that place the model on `device` as it is read.

    On the CPU there is nothing to place (the tensors stay in the mapped pages) and the dtype is
    the library's default; on an accelerator, `device_map` names it and `dtype="auto"` keeps the
    checkpoint's bf16/fp16 instead of widening to float32.
    """
    if device == "cpu":
        return {}
    return {"device_map": device, _dtype_keyword(): "auto"}


def _dtype_keyword() -> str:
    """`dtype` from transformers 4.56 on (`torch_dtype` before)."""
    try:
        major, minor = (int(x) for x in metadata.version("transformers").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return "dtype"
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


__all__ = ["placement_kwargs"]
