"""Talking to the Hub: the listing, the answer checks, fetching one file, one retry helper, the error mapping.

No header of any answer chooses a path (I8). A file is fetched by `huggingface_hub`'s own
transfer (HTTP or Xet) with `local_dir=` a private staging folder inside the repo's `blobs/`:
there the library names the file after the listed path, not an ETag, and keeps its lock and
metadata beside it. The one name it still derives from a header, the `.incomplete` temp file,
contains the ETag, so every HEAD answer the library receives while volcache fetches is checked
against the listing first (`_AnswerGuard`): an ETag, commit or size that disagrees stops the
request before the library writes anything. The store then verifies the staged file and renames
it, on the same filesystem, to `blobs/<oid from the listing>`, and makes the snapshot link itself.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import errno
import hashlib
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from .._errors import (
    HostileAnswer,
    HubUnavailable,
    IntegrityError,
    ModelNotFound,
    StoreError,
    VolcacheError,
    one_line,
)
from .._settings import StoreSettings
from . import ranged
from .integrity import check_file, digest_problem, git_blob_header, hasher_for
from .layout import STAGING_PREFIX, RepoFolder
from .selection import MAX_DECIDING_BYTES, RemoteFile, check_commit, check_listing

log = logging.getLogger("volcache.hub")

T = TypeVar("T")
ATTEMPTS = 3
RANGED_NAME = ".volcache-ranged"  # the staged file of a multi-stream download (never a listed path)


def with_retries(
    call: Callable[[], T],
    *,
    what: str,
    failed: Callable[[str], str],
    settings: StoreSettings,
    model: str,
    revision: str,
) -> T:
    """`call()`, tried `ATTEMPTS` times with back-off while the failure is transient.

    volcache's own errors that a retry cannot help pass through at once; the Hub client's errors
    are mapped (`hub_error`) first. After the last try: the last integrity error, or
    `HubUnavailable` with the message `failed(last error's text)`.
    """
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return call()
        except VolcacheError as exc:
            if not exc.retryable:
                raise
            error: Exception = exc
        except Exception as exc:
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            error = hub_error(exc, model, revision, settings)
            if isinstance(error, VolcacheError) and not error.retryable:
                raise error from None
        text = one_line(Exception(settings.redact(str(error))))
        if attempt == ATTEMPTS:
            if isinstance(error, IntegrityError):
                raise error
            raise HubUnavailable(failed(text), model=model, revision=revision) from None
        log.warning("volcache: %s failed (attempt %d/%d): %s; retrying", what, attempt, ATTEMPTS, text[:300])
        time.sleep(min(8.0, 0.5 * 2**attempt))
    raise AssertionError("unreachable")


def hub_error(exc: Exception, model: str, revision: str, s: StoreSettings) -> Exception:
    """The store's error for an exception of the Hub client (unchanged when it is a transport error)."""
    from huggingface_hub import errors

    if isinstance(exc, errors.LocalEntryNotFoundError):  # the HEAD failed and nothing is cached: transport
        return exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
    if isinstance(exc, errors.GatedRepoError):
        message = f"{model} is gated: accept its terms on the Hub and set HF_TOKEN."
    elif isinstance(exc, errors.RevisionNotFoundError):
        message = f"{model} has no revision {revision!r}; check MODEL_REVISION."
    elif isinstance(exc, errors.RepositoryNotFoundError):
        where = s.endpoint or "the Hub"
        message = f"{model} was not found on {where}; check MODEL_NAME (and HF_TOKEN for a private model)."
    elif isinstance(exc, errors.EntryNotFoundError):
        detail = one_line(Exception(s.redact(str(exc))))
        return StoreError(f"{model}@{revision}: a listed file is missing on the Hub: {detail}", model=model)
    else:
        return exc
    return ModelNotFound(message, model=model, revision=revision, retryable=False)


@dataclasses.dataclass(frozen=True)
class Listing:
    """A checked answer of the Hub: the commit a revision names, and every file at it."""

    commit: str
    files: tuple[RemoteFile, ...]


class HubClient:
    """The Hub as the store sees it. Every call maps errors and retries transient failures."""

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings

    def _api(self) -> Any:
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.settings.endpoint, token=self.settings.hf_token)

    def commit_of(self, model: str, revision: str) -> str:
        """The commit `revision` names: the cheap question (does it exist, may this token read it)."""
        api = self._api()
        info = self._ask(lambda: api.model_info(model, revision=revision), model, revision)
        return check_commit(str(info.sha))

    def list(self, model: str, revision: str, commit: str | None = None) -> Listing:
        """The commit of `model@revision` (asked unless given) and its checked file listing."""
        from huggingface_hub.hf_api import RepoFile

        commit = commit or self.commit_of(model, revision)
        api = self._api()
        entries = self._ask(lambda: list(api.list_repo_tree(model, revision=commit, recursive=True)), model, revision)
        files = [_remote_file(e) for e in entries if isinstance(e, RepoFile)]
        return Listing(commit, tuple(check_listing(files)))

    def _ask(self, call: Callable[[], T], model: str, revision: str) -> T:
        where = self.settings.endpoint or "huggingface.co"

        def failed(text: str) -> str:
            return (
                f"the Hub at {where} did not answer for {model}@{revision} after {ATTEMPTS} attempts: {text}. "
                "Fix: check the network (and HF_ENDPOINT), then retry."
            )

        what = f"the Hub's answer for {model}"
        return with_retries(call, what=what, failed=failed, settings=self.settings, model=model, revision=revision)

    def read_small(self, model: str, commit: str, f: RemoteFile) -> bytes:
        """One small deciding file's bytes (an index, `model_index.json`), in memory, never written.

        Checked against the listing (size and blob id) before they decide anything; a cut or
        corrupted answer is retried like any transfer.
        """
        from huggingface_hub import get_session, hf_hub_url, hf_raise_for_status
        from huggingface_hub.utils._headers import build_hf_headers

        s = self.settings
        if f.size > MAX_DECIDING_BYTES:
            raise HostileAnswer(
                f"{model}: {f.path} is listed with {f.size} bytes, too large for an index.", model=model
            )
        url = hf_hub_url(model, f.path, revision=commit, endpoint=s.endpoint)

        def get() -> bytes:
            with get_session().stream(
                "GET", url, headers=build_hf_headers(token=s.hf_token), follow_redirects=True
            ) as response:
                hf_raise_for_status(response)
                data = b""
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > f.size:
                        break
            digest = hashlib.sha256() if f.sha256 else git_blob_header(len(data))
            digest.update(data)
            if len(data) != f.size or digest.hexdigest() != f.oid:
                raise IntegrityError(
                    f"{f.path} of {model}@{commit[:8]}: the Hub sent other bytes than its listing names.", model=model
                )
            return data

        return self._ask(get, model, commit)

    def fetch(self, repo: RepoFolder, model: str, commit: str, f: RemoteFile) -> Path:
        """Download `f` into a staging folder inside `repo.blobs`, verified; return the staged file.

        The caller renames it to `blobs/<oid>` and removes the staging folder (`staging_folder`).
        """
        where = self.settings.endpoint or "the Hub"

        def failed(text: str) -> str:
            return (
                f"could not download {f.path} of {model} from {where} after {ATTEMPTS} attempts: {text}. "
                "Fix: check the network and retry; files already downloaded are kept."
            )

        return with_retries(
            lambda: self._fetch_once(repo, model, commit, f),
            what=f"{f.path} of {model}",
            failed=failed,
            settings=self.settings,
            model=model,
            revision=commit,
        )

    def _fetch_once(self, repo: RepoFolder, model: str, commit: str, f: RemoteFile) -> Path:
        s = self.settings
        with staging_folder(repo) as staging, expect_answer(model, commit, f):
            path, problem = None, None
            if s.download_streams > 1 and f.size > s.download_part:
                ranged_download = self._fetch_ranged(staging, model, commit, f)
                if ranged_download is not None:
                    path, problem = ranged_download
            if path is None:
                path = self._fetch_whole(staging, model, commit, f)
                problem = check_file(path, f)
            if problem is not None:
                raise IntegrityError(f"{f.path} of {model}@{commit[:8]}: {problem}; the file was removed.", model=model)
            blob = repo.blob(f.oid)
            # The staged file is renamed into blobs/ on the same filesystem: still one copy (I1).
            os.replace(path, blob)
            return blob

    def _fetch_whole(self, staging: Path, model: str, commit: str, f: RemoteFile) -> Path:
        """`f` on one stream (or through hf_xet) by huggingface_hub's own transfer, into `staging`."""
        from huggingface_hub import hf_hub_download

        s = self.settings
        path = Path(
            hf_hub_download(
                model,
                f.path,
                revision=commit,
                local_dir=staging,  # volcache: ignore[VC103] - staged inside blobs/, then renamed
                cache_dir=staging / ".no-cache",  # never copy from a cache: there is none here
                endpoint=s.endpoint,
                token=s.hf_token,
            )
        )
        expected = staging / f.path
        if path != expected:
            raise HostileAnswer(f"{f.path} of {model} was written to {path}, not {expected}; refusing.", model=model)
        return path

    def _fetch_ranged(self, staging: Path, model: str, commit: str, f: RemoteFile) -> tuple[Path, str | None] | None:
        """`f` on several streams into `staging/.volcache-ranged`, and what is wrong with it (None: verified).

        Hashed in order while the parts land (`ranged.download`), so the check costs no pass of its
        own. None where one stream must do: a file the Hub stores with Xet (hf_xet splits it
        itself), a server that ignores `Range`, an answer without the metadata huggingface_hub
        insists on.
        """
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        s = self.settings
        url = hf_hub_url(model, f.path, revision=commit, endpoint=s.endpoint)
        # The HEAD, under the answer guard; retried on 429, 5xx and time-outs as huggingface_hub's own.
        meta = get_hf_file_metadata(url, token=s.hf_token, endpoint=s.endpoint, retry_on_errors=True)
        if meta.xet_file_data is not None or meta.commit_hash is None or meta.etag is None:
            return None
        dest = staging / RANGED_NAME
        source = ranged.Source(meta.location, ranged.headers_for(url, meta.location, s.hf_token))
        label = f"{f.path} of {model}"
        hasher = hasher_for(f)
        try:
            ranged.download(
                source, dest, f.size, streams=s.download_streams, part=s.download_part, label=label, hasher=hasher
            )
        except ranged.RangesRefused:
            log.info("volcache: %s: the server ignores Range requests; downloading on one stream", label)
            dest.unlink(missing_ok=True)
            return None
        if hasher is None:
            return dest, check_file(dest, f)
        return dest, digest_problem(hasher.hexdigest(), f)


@contextlib.contextmanager
def staging_folder(repo: RepoFolder) -> Iterator[Path]:
    """A fresh folder inside the repo's blobs/ for one transfer; removed afterwards, whatever happens."""
    staging = repo.staging(uuid.uuid4().hex[:16])
    staging.mkdir(parents=True)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_stale_staging(repo: RepoFolder) -> None:
    """Remove transfers left by dead workers: `.incomplete` files and staging folders. Hold the lease."""
    try:
        entries = list(repo.blobs.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(STAGING_PREFIX) and not entry.is_symlink():
            log.info("volcache: removing a dead download's staging folder %s", entry.name)
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.name.endswith(".incomplete"):
            with contextlib.suppress(FileNotFoundError):
                log.info("volcache: removing partial download %s (%d bytes)", entry.name, entry.stat().st_size)
                entry.unlink()


# -- the answer guard -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Expected:
    model: str
    commit: str
    file: RemoteFile


_EXPECTED: contextvars.ContextVar[_Expected | None] = contextvars.ContextVar("volcache_expected", default=None)
_GUARD_LOCK = threading.Lock()


@contextlib.contextmanager
def expect_answer(model: str, commit: str, f: RemoteFile) -> Iterator[None]:
    """While inside, every HEAD answer the Hub client receives in this thread must agree with `f`."""
    _install_guard()
    token = _EXPECTED.set(_Expected(model, commit, f))
    try:
        yield
    finally:
        _EXPECTED.reset(token)


def _install_guard() -> None:
    """Add the answer check to the Hub client's shared HTTP session (once per session)."""
    from huggingface_hub import get_session

    session = get_session()
    with _GUARD_LOCK:
        hooks = session.event_hooks
        if check_head_answer not in hooks.get("response", []):
            session.event_hooks = {**hooks, "response": [*hooks.get("response", []), check_head_answer]}


def check_head_answer(response: Any) -> None:
    """Refuse a HEAD answer whose ETag, commit or size contradicts the listing.

    huggingface_hub names its temporary file after the ETag: it must be the listed oid before it is used.
    """
    want = _EXPECTED.get()
    if want is None or response.request.method != "HEAD":
        return
    headers = response.headers
    etag = _normalize_etag(headers.get("X-Linked-Etag") or headers.get("ETag"))
    commit = headers.get("X-Repo-Commit")
    size = headers.get("X-Linked-Size") or (headers.get("Content-Length") if response.status_code == 200 else None)
    answers = (
        ("ETag", etag, want.file.oid),
        ("X-Repo-Commit", commit, want.commit),
        ("size", size, str(want.file.size)),
    )
    wrong = [
        f"{name} {got!r} instead of {expected!r}"
        for name, got, expected in answers
        if got is not None and got != expected
    ]
    if wrong:
        raise HostileAnswer(
            f"the Hub's answer for {want.file.path} of {want.model}@{want.commit[:8]} contradicts its listing "
            f"({'; '.join(wrong)}); refusing to download it.",
            model=want.model,
            revision=want.commit,
        )


def _normalize_etag(etag: str | None) -> str | None:
    """The ETag as huggingface_hub reads it: without a weak prefix and quotes."""
    if etag is None:
        return None
    return etag.removeprefix("W/").strip('"')


def _remote_file(entry: Any) -> RemoteFile:
    """One file of the Hub's tree listing; a size or path of the wrong type is refused, not coerced."""
    path, size = entry.path, entry.size
    if not isinstance(path, str) or isinstance(size, bool) or not isinstance(size, int):
        raise HostileAnswer(f"the Hub listed {path!r} with a size of {size!r}, not a whole number of bytes.")
    sha256 = entry.lfs.sha256 if entry.lfs else None
    return RemoteFile(path, size, sha256, str(sha256) if entry.lfs else str(entry.blob_id))
