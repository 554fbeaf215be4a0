"""The second-HEAD attack (issue 12, item 1): a mirror that answers one HEAD honestly and the next with a path.

huggingface_hub names its temporary file after the ETag of the HEAD it makes itself. A mirror (or
whoever sits on a plain-HTTP link) that lies on that HEAD, and only there, must not be able to
write anywhere: every file the store writes lands in the repo's `blobs/` (the staging folder
included) and nothing, not even a lock or a temp file, appears outside it.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest

from tests.conftest import make_settings
from tests.faults._hostile import Answer, HostileHub, Rewrite
from tests.faults._support import Expected, TrialLog, bad_bytes, repo_dir, weight_bytes
from volcache import HostileAnswer, ModelStore
from volcache.testing import HubEmulator

pytestmark = pytest.mark.faults

TINY = "org/tiny"
ESCAPE = '"../../../../../../../escaped"'


def _lie_on_head(which: set[int] | None) -> Rewrite:
    """Rewrite the ETag of the `which`-th HEAD of model.safetensors (every HEAD when None)."""
    count = itertools.count(1)
    lock = threading.Lock()

    def rewrite(answer: Answer) -> None:
        if answer.method != "HEAD" or not answer.path.endswith("/model.safetensors"):
            return
        with lock:
            n = next(count)
        if which is None or n in which:
            answer.headers["ETag"] = ESCAPE
            answer.headers["X-Linked-Etag"] = ESCAPE

    return rewrite


def _written_outside_blobs(base: Path, volume: Path, *, completed: bool) -> list[Path]:
    """Regular files under `base` outside the repo's blobs/ (and, after a success, its refs and records)."""
    repo = repo_dir(volume, TINY)
    allowed = (repo / "blobs", repo / "refs", volume / "models/.volcache") if completed else (repo / "blobs",)
    return sorted(
        p
        for p in base.rglob("*")
        if (p.is_file() and not p.is_symlink())
        and not any(a == p or a in p.parents for a in allowed)
        and "mirror" not in p.parts
        and "hub" not in p.relative_to(base).parts[:1]
    )


@pytest.fixture
def tiny(hub_root: Path) -> Expected:
    return Expected.from_folder(TINY, hub_root / "org" / "tiny", ["config.json", "tokenizer.json", "model.safetensors"])


@pytest.mark.parametrize("which", [{1}, {2}, {2, 3, 4, 5, 6}, None], ids=["first", "second", "after-first", "every"])
def test_a_lying_head_never_writes_outside_blobs(
    which: set[int] | None,
    tmp_path: Path,
    volume: Path,
    hub: HubEmulator,
    tiny: Expected,
    trial_log: TrialLog,
    fast_retries: None,
) -> None:
    with trial_log.trial("a lying HEAD names a path (ETag)", item="12.1") as trial:
        trial.note = f"lie on HEAD {sorted(which) if which else 'every'}"
        before = set(tmp_path.rglob("*"))
        with HostileHub(hub.url, _lie_on_head(which)) as proxy:
            store = ModelStore(make_settings(volume, HF_ENDPOINT=proxy.url))
            try:
                resolution = store.resolve(TINY)
            except HostileAnswer as exc:
                assert exc.model == TINY and not exc.retryable, exc
                resolution = None
        if which is None or which == {1}:
            assert resolution is None, "an answer that contradicts the listing must be refused"
        planted = [p for p in tmp_path.rglob("*escaped*")]
        assert planted == [], f"the hostile ETag chose a path: {planted}"
        outside = _written_outside_blobs(tmp_path, volume, completed=resolution is not None)
        new = [p for p in outside if p not in before]
        assert new == [], f"written outside the repo's blobs/: {new}"
        assert not list((repo_dir(volume, TINY) / "blobs").glob(".staging-*")), "a staging folder was left"
        honest = ModelStore(make_settings(volume, HF_ENDPOINT=hub.url))
        assert honest.resolve(TINY).path.is_dir()
        trial.lost, problems = bad_bytes(volume, tiny)
        trial.duplicated = weight_bytes(volume) - tiny.bytes
        assert problems == [] and trial.duplicated == 0, problems
