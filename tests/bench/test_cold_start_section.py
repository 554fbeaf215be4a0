"""The cold-start table: the hand-written worker's column, the ratio against it and its verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import cold_start
from bench._common import Options


def _volcache(seconds: float) -> dict[str, Any]:
    started = {
        "timings_s": {"pin": 0.0, "cleanup": 0.0, "ensure": 0.0, "warmup": 0.02, "runpod_import": 0.2, "total": 2.5},
        "load_s": {"import": 2.0, "construct": 0.2, "prefetch_wait": 0.0},
        "imports_s": {"torch": 1.8, "safetensors.torch": 0.05, "tokenizers": 0.1},
        "since_process_start_s": 2.7,
    }
    return {"seconds": seconds, "hub_requests": 0, "hub_bytes": 0, "started": started}


def _hand(seconds: float) -> dict[str, Any]:
    return {"seconds": seconds, "hub_requests": 0, "hub_bytes": 0}


def _render(tmp_path: Path, ours: list[float], theirs: list[float]) -> tuple[str, dict[str, Any]]:
    runs = {
        scenario: {"volcache": [_volcache(s) for s in ours], "hand-written": [_hand(s) for s in theirs]}
        for scenario in ("warm volume, cold page cache", "warm page cache")
    }
    section = cold_start.render(Options(repeats=len(ours), out=tmp_path), {"runs": runs, "weights": 90_000_000})
    return section.markdown, section.data


def test_the_ratio_to_the_hand_written_worker_is_a_column_and_a_verdict(tmp_path: Path) -> None:
    markdown, data = _render(tmp_path, [3.0, 3.2, 3.1], [6.0, 6.4, 6.2])
    assert any(line.startswith("| scenario | volcache | hand-written |") for line in markdown.splitlines())
    assert "0.50×" in markdown
    assert "≤ 0.65× the hand-written sentence-transformers worker (warm page cache): 0.50× (met; rounds" in markdown
    assert abs(data["verdicts"]["warm page cache ÷ hand-written"] - 0.5) < 1e-9
    # The imports by library, from the start-up line.
    assert "| `torch` | `safetensors.torch` | `tokenizers` | sum |" in markdown


def test_a_ratio_above_the_target_is_missed(tmp_path: Path) -> None:
    markdown, _ = _render(tmp_path, [5.0, 5.0], [6.0, 6.0])
    assert "(warm page cache): 0.83× (**missed**" in markdown
