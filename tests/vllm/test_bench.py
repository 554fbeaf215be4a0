"""The vLLM benchmark sections' tables, from fixed numbers (the measuring runs on demand: `python -m bench vllm`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import vllm
from bench._common import Options


def test_tokens_per_second_table_has_one_row_per_level_and_the_ratio(tmp_path: Path) -> None:
    def level(tps: float) -> dict[str, float]:
        return {"seconds": 1.0, "completion_tokens": tps, "tokens_per_s": tps}

    data = {
        "tokens_per_request": 32,
        "results": {
            "transformers": {"1": level(10.0), "8": level(12.0), "32": level(12.0)},
            "vllm": {"1": level(20.0), "8": level(96.0), "32": level(300.0)},
        },
    }
    section = vllm.render(Options(out=tmp_path), data)
    rows = [line for line in section.markdown.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split("|")[1].strip() for row in rows] == ["1", "8", "32"]
    assert "| 8.0x |" in rows[1] and "| 25.0x |" in rows[2]


def test_netfs_table_compares_each_load_with_vllms_default(tmp_path: Path) -> None:
    row = {"default": 8.0, "eager": 4.0, "prefetch": 2.0, "volcache": 1.0}
    data = {"model_bytes": 534e6, "latencies": {"0.001": row, "0.004": {k: v * 2 for k, v in row.items()}}}
    section = vllm.render_netfs(Options(out=tmp_path), data)
    volcache_row = next(line for line in section.markdown.splitlines() if "volcache prefetch" in line)
    assert volcache_row.count("8.00x") == 2
    assert "s at 1 ms" in section.markdown and "s at 4 ms" in section.markdown


def test_a_section_without_the_vllm_environment_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vllm, "VLLM_PYTHON", tmp_path / "absent" / "python")
    section = vllm.run(Options(out=tmp_path))
    assert "skipped" in section.data and "make install-vllm" in section.markdown
