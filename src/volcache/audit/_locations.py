"""What counts as a model or cache location, decided once for every rule.

A path is a model/cache location when, split on `/`, it has

- a segment that names a model folder: `hub`, `huggingface`, `torch`, a Hub cache repo
  folder `models--org--name`, or a name whose tokens (split on `-`, `_`, `.`)
  include a model word (`models`, `model`, `weights`, `checkpoints`, `ckpt`, ...) and no
  word that says it holds something else (`outputs`, `logs`, `configs`, ...):
  `models_cache`, `comfyui-local-models`, `pretrained_weights` are model folders,
  `model_outputs` is not;
- or a final segment with a weight suffix (`.safetensors`, `.bin`, `.pt`, ...);
- or a first segment that is a cache variable (`$HF_HOME`, `${HF_HUB_CACHE}`, ...), which is
  how the resolvers spell `os.environ["HF_HOME"]` and Dockerfile `$HF_HOME`, with nothing
  known after it (`$HF_HUB_CACHE`, `$HF_HUB_CACHE/*`) or a model location after it
  (`$HF_HOME/hub`); `$HF_HOME/token` is a file beside the cache, not weights.

A path whose final segment is an ordinary non-weight file (`config.json`, `README.md`,
`handler.py`, ...) is not a model location even inside `models/`: copying a config file
duplicates no weights. `/runpod-volume` or `/root/.cache` alone are not model locations
either: a volume holds outputs and datasets too, and `.cache` holds pip's cache. Unknown
parts of a path are spelled `*` and match nothing.
"""

from __future__ import annotations

import re

# Variables that name where weights are cached. HF_XET_CACHE is left out on purpose: the
# Xet client's staging belongs on ephemeral disk (ARCHITECTURE.md).
CACHE_ENV_VARS: frozenset[str] = frozenset(
    {
        "HF_HOME",
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "TRANSFORMERS_CACHE",
        "PYTORCH_TRANSFORMERS_CACHE",
        "PYTORCH_PRETRAINED_BERT_CACHE",
        "TORCH_HOME",
        "SENTENCE_TRANSFORMERS_HOME",
        "HF_DATASETS_CACHE",
        "DIFFUSERS_CACHE",
        "VOLCACHE_HOME",
    }
)

WEIGHT_SUFFIXES: tuple[str, ...] = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".gguf",
    ".onnx",
    ".h5",
    ".msgpack",
)

# Whole segments that name a model cache.
MODEL_SEGMENTS: frozenset[str] = frozenset({"hub", "huggingface", "torch"})
# Tokens of a folder name (split on `-`, `_`, `.`) that say it holds weights.
MODEL_TOKENS: frozenset[str] = frozenset(
    {"models", "model", "weights", "weight", "checkpoints", "checkpoint", "ckpt", "ckpts", "loras", "lora",
     "safetensors", "gguf"}
)  # fmt: skip
# Tokens that say a folder with a model word holds something else: `model_outputs`.
OTHER_TOKENS: frozenset[str] = frozenset(
    {"output", "outputs", "out", "result", "results", "log", "logs", "config", "configs", "card", "cards",
     "info", "index", "list", "names", "registry", "test", "tests", "meta", "metadata", "script", "scripts",
     "src", "code", "utils", "schema", "schemas", "docs", "doc", "eval", "evals", "data", "dataset",
     "datasets", "upload", "uploads", "input", "inputs", "api", "server", "service"}
)  # fmt: skip
_TOKEN_SPLIT = re.compile(r"[-_.]+")

# Files that are never weights, so copying them is harmless even inside a model folder.
NON_WEIGHT_SUFFIXES: frozenset[str] = frozenset(
    {
        ".py", ".pyc", ".json", ".jsonl", ".txt", ".md", ".rst", ".yaml", ".yml", ".toml",
        ".cfg", ".ini", ".conf", ".log", ".csv", ".tsv", ".html", ".css", ".js", ".sh",
        ".png", ".jpg", ".jpeg", ".gif", ".svg", ".wav", ".mp3", ".mp4", ".lock", ".pdf",
    }
)  # fmt: skip

DEFAULT_MOUNT_POINTS: tuple[str, ...] = ("/runpod-volume",)

UNKNOWN = "*"

_ENV_SEGMENT = re.compile(r"^\$\{?([A-Za-z_][A-Za-z0-9_]*)")
# `${NAME:-default}`: how a resolver spells `os.getenv("NAME", "default")`.
_ENV_DEFAULT = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):-([^{}]*)\}")


def env_reference(var: str, default: str | None = None) -> str:
    """How a resolver spells the value of environment variable `var`, and its default when
    the code gives one (`${NAME:-default}`, as a shell would)."""
    return f"${var}" if default is None else f"${{{var}:-{default}}}"


def effective(path: str) -> str:
    """`path` with each `${NAME:-default}` replaced by what decides where files go: a cache
    variable stays `$NAME` (its default is the cache's own), any other variable becomes its
    default, which is what runs when the variable is unset."""

    def choose(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        return f"${name}" if name in CACHE_ENV_VARS else default

    return _ENV_DEFAULT.sub(choose, path) if "${" in path else path


def is_model_folder_name(segment: str) -> bool:
    """Whether one path segment names a folder of weights: `models_cache`, `ckpt`,
    `comfyui-local-models`, `models--org--name`; not `model_outputs` or `hubspot`."""
    lowered = segment.lower()
    if lowered in MODEL_SEGMENTS or lowered.startswith("models--"):
        return True
    tokens = {t for t in _TOKEN_SPLIT.split(lowered) if t}
    return bool(tokens & MODEL_TOKENS) and not tokens & OTHER_TOKENS


def cache_variable(path: str) -> str | None:
    """The cache variable `path` starts with (`$HF_HOME/hub` -> `HF_HOME`), if any."""
    match = _ENV_SEGMENT.match(path)
    if match and match.group(1) in CACHE_ENV_VARS:
        return match.group(1)
    return None


def _segments(path: str) -> list[str]:
    return [s for s in re.split(r"[/\\]+", path) if s]


def _suffix(segment: str) -> str:
    dot = segment.rfind(".")
    return segment[dot:].lower() if dot > 0 else ""


def is_model_location(path: str | None) -> bool:
    """Whether `path` (unknown parts spelled `*`) names model weights or a model cache."""
    if not path:
        return False
    segments = _segments(effective(path))
    if segments and cache_variable(segments[0]):
        rest = segments[1:]
        # The cache itself, or an unknown part of it; `$HF_HOME/token` is not weights.
        return all(s == UNKNOWN for s in rest) or is_model_location("/".join(rest))

    if not segments:
        return False
    last = segments[-1]
    if _suffix(last) in NON_WEIGHT_SUFFIXES:
        return False
    if last.lower().endswith(WEIGHT_SUFFIXES):
        return True
    # A final segment with a file suffix is a file (`weights.tgz`): only its folders count.
    folders = segments[:-1] if _suffix(last) else segments
    return any(is_model_folder_name(s) for s in folders) or last.lower().startswith("models--")


def is_under(path: str, mount: str) -> bool:
    """Whether absolute `path` is `mount` itself or inside it."""
    mount = mount.rstrip("/") or "/"
    clean = re.sub(r"/+", "/", path)
    return clean == mount or clean.startswith(mount + "/")


def mount_of(path: str, mounts: tuple[str, ...]) -> str | None:
    """The mount point `path` lies under, if any."""
    path = effective(path)
    return next((m for m in mounts if is_under(path, m)), None)


def is_known_absolute(path: str | None) -> bool:
    """Whether `path` is an absolute path whose first segment is known."""
    if path is None:
        return False
    path = effective(path)
    return path.startswith("/") and not path.startswith("/" + UNKNOWN)


def show(path: str | None) -> str:
    """A path as findings quote it."""
    return repr(path) if path is not None else "?"
