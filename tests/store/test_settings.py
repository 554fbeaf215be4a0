from __future__ import annotations

from pathlib import Path

import pytest

from volcache import ConfigError, Settings
from volcache._settings import format_bytes, parse_duration, parse_size


def test_defaults_follow_the_seed_layout() -> None:
    s = Settings.from_env({"HOME": "/root"})
    assert s.volume == Path("/runpod-volume")
    assert s.home == Path("/runpod-volume/models")
    assert s.hub_cache == Path("/runpod-volume/models/hub")
    assert s.torch_home == Path("/runpod-volume/models/torch")
    assert s.runpod_cache == Path("/runpod-volume/huggingface-cache/hub")
    assert s.stale_caches == (Path("/tmp/models"), Path("/root/.cache/huggingface"), Path("/root/.cache/torch"))
    assert s.model == "sentence-transformers/all-MiniLM-L6-v2" and s.revision == "main"


def test_environment_overrides() -> None:
    s = Settings.from_env(
        {
            "VOLCACHE_VOLUME": "/mnt/v",
            "MODEL_NAME": "org/m",
            "MODEL_REVISION": "v1",
            "VOLCACHE_STALE_CACHES": "/a,/b",
            "VOLCACHE_LEASE_TIMEOUT": "30",
            "VOLCACHE_FREE_MARGIN": "500MB",
            "HF_TOKEN": "hf_secret",
        }
    )
    assert s.home == Path("/mnt/v/models") and s.model == "org/m" and s.revision == "v1"
    assert s.stale_caches == (Path("/a"), Path("/b"))
    assert s.lease_timeout == 30 and s.free_margin == 500_000_000
    assert "hf_secret" not in repr(s)
    assert s.redact("token hf_secret here") == "token hf_*** here"


def test_settings_are_frozen() -> None:
    s = Settings.from_env({})
    with pytest.raises(AttributeError):
        s.model = "x"  # type: ignore[misc]


def test_all_problems_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"VOLCACHE_LEASE_TIMEOUT": "soon", "VOLCACHE_FREE_MARGIN": "lots", "VOLCACHE_LOAD": "x"})
    message = str(err.value)
    assert "VOLCACHE_LEASE_TIMEOUT='soon'" in message
    assert "VOLCACHE_FREE_MARGIN='lots'" in message
    assert "VOLCACHE_LOAD='x'" in message


@pytest.mark.parametrize(
    ("text", "expected"), [("0", 0), ("12", 12), ("1kB", 1000), ("2GiB", 2 * 1024**3), ("1.5 MB", 1_500_000)]
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_parse_duration_and_format() -> None:
    assert parse_duration("90") == 90 and parse_duration("15m") == 900 and parse_duration("7d") == 7 * 86400
    with pytest.raises(ConfigError):
        parse_duration("soon")
    assert format_bytes(999) == "999 B" and format_bytes(90_900_000) == "90.9 MB"
