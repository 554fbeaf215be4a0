"""A soak through RunPod's local API: a stream of mixed jobs, 20% invalid, against one live worker.

`python -m volcache.worker --rp_serve_api` serves the real all-MiniLM-L6-v2 (downloaded through
the emulator). One client, then four at once, each send `VOLCACHE_FAULT_TRIALS x 50` jobs (1,200
for the report) over real HTTP to `/runsync`: native and OpenAI embeddings and `/v1/models`, and
one job in five invalid (wrong types, missing or unknown fields, huge texts and batches, deep
nesting, routes this worker does not serve, bodies that are not JSON or not UTF-8). Every job
must be answered (a result, an error sentence, or the API's refusal of a body that is not a job),
every valid answer must equal sentence-transformers' own embeddings, the worker must still be
alive and its RSS growth bounded. The bounds are generous; rates and memory go in the report.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.conftest import subprocess_env
from tests.faults._support import TrialLog, kill_trials, seed
from tests.worker._support import MINILM, Sandbox, WorkerServer
from volcache.testing import HubEmulator, minilm_folder, mirror_root_with

pytestmark = pytest.mark.faults

JOBS = 50 * kill_trials()
MAX_CHARS, MAX_BATCH = 500, 8
RSS_GROWTH_LIMIT = 300 * 1024**2  # generous: the report shows the real number
CORPUS = [
    "The cat sat on the mat.",
    "A kitten is sleeping on the sofa.",
    "Stock markets fell sharply today.",
    "It will rain tomorrow in the city.",
    "The weights are stored once on the network volume.",
    "Python is a programming language.",
    "I love this movie.",
    "This film was terrible.",
    "Bank of the river.",
    "Money in the bank.",
    "Ünïcödé tèxt with émojis 🚀 and 中文.",
    "",
]
_REFERENCE = """
import json, sys
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(sys.argv[1], device="cpu")
print(json.dumps(model.encode(json.loads(sys.argv[2]), normalize_embeddings=True).tolist()))
"""


def _nested(depth: int) -> Any:
    value: Any = ["deep"]
    for _ in range(depth):
        value = [value]
    return value


# (name, body): a dict is sent as JSON {"input": body}; bytes are sent as the raw request body.
INVALID: list[tuple[str, Any]] = [
    ("input is a number", {"input": 42}),
    ("no fields", {}),
    ("unknown field", {"input": ["a"], "normalise": True}),
    ("text above VOLCACHE_MAX_INPUT_CHARS", {"input": "x" * 20_000}),
    ("batch above VOLCACHE_MAX_BATCH", {"input": ["a"] * 200}),
    ("dimensions not a number", {"input": ["a"], "dimensions": "NaN"}),
    ("300 levels of nesting", {"input": _nested(300)}),
    ("chat on an embeddings worker", {"openai_route": "/v1/chat/completions", "openai_input": {"messages": []}}),
    ("unknown OpenAI route", {"openai_route": "/v9/nope", "openai_input": {}}),
    ("token ids instead of text", {"input": [[1, 2, 3]]}),
    ("body not UTF-8", b'{"input": {"input": "\xff\xfe\xfd"}}'),
    ("body not JSON", b'{"input": {"input": '),
    ("input not an object", b'{"input": ["a", "b"]}'),
]


@pytest.fixture(scope="module")
def minilm_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubEmulator]:
    root = mirror_root_with(tmp_path_factory.mktemp("soak-hub"), {MINILM: minilm_folder()})
    with HubEmulator(root) as emulator:
        yield emulator


def _plan(count: int) -> list[tuple[str, Any, bool]]:
    """`count` jobs: (kind, body, valid); exactly one in five invalid, in a seeded order."""
    rng = random.Random(f"{seed()}:soak")
    invalid = set(rng.sample(range(count), count // 5))
    jobs = []
    for i in range(count):
        if i in invalid:
            name, bad = INVALID[rng.randrange(len(INVALID))]
            jobs.append((name, bad, False))
            continue
        texts = rng.sample(CORPUS, rng.randint(1, 4))
        kind = rng.choices(["embed", "openai", "models"], weights=[6, 3, 1])[0]
        body: Any = {"input": texts}
        if kind == "openai":
            body = {"openai_route": "/v1/embeddings", "openai_input": {"model": MINILM, "input": texts}}
        elif kind == "models":
            body = {"openai_route": "/v1/models"}
        jobs.append((kind, body, True))
    return jobs


def _post(url: str, body: Any) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps({"input": body}).encode()
    request = urllib.request.Request(url + "/runsync", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _reference(snapshot: str, env: dict[str, str]) -> dict[str, np.ndarray]:
    proc = subprocess.run(
        [sys.executable, "-c", _REFERENCE, snapshot, json.dumps(CORPUS)],
        env=dict(env, HF_HUB_OFFLINE="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    vectors = json.loads(proc.stdout.strip().splitlines()[-1])
    return {text: np.array(v) for text, v in zip(CORPUS, vectors, strict=True)}


def _problem(job: tuple[str, Any, bool], status: int, answer: Any, reference: dict[str, np.ndarray]) -> str | None:
    """Why this answer is wrong, or None."""
    kind, body, valid = job
    if not valid:
        if status == 200 and answer.get("status") == "COMPLETED":
            output = answer.get("output")
            ok = isinstance(output, list) and len(output) == 1 and isinstance(output[0].get("error"), str)
            return None if ok and output[0]["error"] else f"{kind}: no error sentence: {answer!r:.300}"
        if 400 <= status < 500 and isinstance(answer, dict) and answer.get("detail"):
            return None  # the API refused a body that is not a job, with its reason
        return f"{kind}: HTTP {status}: {answer!r:.300}"
    if status != 200 or answer.get("status") != "COMPLETED" or len(answer.get("output") or []) != 1:
        return f"{kind}: HTTP {status}: {answer!r:.300}"
    (out,) = answer["output"]
    if "error" in out:
        return f"{kind}: a valid job failed: {out['error']}"
    if kind == "models":
        return None if out["data"][0]["id"] == MINILM else f"models: {out!r:.300}"
    texts = body["input"] if kind == "embed" else body["openai_input"]["input"]
    vectors = out["embeddings"] if kind == "embed" else [d["embedding"] for d in out["data"]]
    for text, vector in zip(texts, vectors, strict=True):
        if not np.allclose(vector, reference[text], atol=1e-4):
            return f"{kind}: the embedding of {text!r} differs from sentence-transformers' own"
    return None


@dataclasses.dataclass
class _Served:
    server: WorkerServer
    reference: dict[str, np.ndarray]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, minilm_hub: HubEmulator) -> Iterator[_Served]:
    sandbox = Sandbox(tmp_path_factory.mktemp("soak"))
    env = sandbox.env(
        HF_ENDPOINT=minilm_hub.url,
        MODEL_NAME=MINILM,
        VOLCACHE_MAX_BATCH=str(MAX_BATCH),
        VOLCACHE_MAX_INPUT_CHARS=str(MAX_CHARS),
    )
    with WorkerServer.running(env, sandbox.base / "worker.log") as server:
        reference = _reference(server.started()["path"], subprocess_env(sandbox.volume, HOME=str(sandbox.home)))
        yield _Served(server, reference)


# RunPod's local API (and a worker with VOLCACHE_CONCURRENCY > 1) runs jobs at the same time.
@pytest.mark.parametrize("clients", [1, 4], ids=["1-client", "4-clients"])
def test_a_long_stream_of_mixed_jobs_is_answered_correctly_by_one_worker(
    clients: int, served: _Served, trial_log: TrialLog
) -> None:
    import psutil

    server, plan = served.server, _plan(JOBS)
    with trial_log.trial(f"{JOBS}-job soak through --rp_serve_api, 20% invalid, {clients} client(s)") as trial:
        process = psutil.Process(server.proc.pid)
        warm = len(plan) // 10
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            answers = list(pool.map(lambda job: _post(server.url, job[1]), plan[:warm]))
            rss_warm = process.memory_info().rss
            answers += list(pool.map(lambda job: _post(server.url, job[1]), plan[warm:]))
        trial.seconds = time.monotonic() - start
        rss_end = process.memory_info().rss
        alive = server.proc.poll() is None
        final = _post(server.url, {"input": ["still there?"]})
        log = server.log()

        results = list(zip(plan, answers, strict=True))
        problems = [p for job, (status, answer) in results if (p := _problem(job, status, answer, served.reference))]
        refused = sum(1 for (_, _, valid), (status, _) in results if not valid and status != 200)
        growth = rss_end - rss_warm
        trial.note = (
            f"{len(plan)} jobs ({len(plan) // 5} invalid, {refused} refused by the API layer), "
            f"{len(plan) / trial.seconds:.0f} jobs/s, RSS {rss_warm / 1e6:.0f} → {rss_end / 1e6:.0f} MB, "
            f"{len(problems)} wrong"
        )
        assert alive, f"the worker died:\n{log[-3000:]}"
        assert problems == [], f"{len(problems)} of {len(plan)} jobs were not answered right: {problems[:10]}"
        assert final[0] == 200 and "error" not in final[1]["output"][0], final
        assert growth < RSS_GROWTH_LIMIT, f"RSS grew by {growth / 1e6:.0f} MB over {len(plan)} jobs"
