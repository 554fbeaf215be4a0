"""worker-vllm's environment variables → `vllm serve` arguments, by worker-vllm's own rules.

RunPod's worker-vllm (`src/args_builder.py`) turns the environment into `vllm serve` flags; a
worker-vllm user keeps the environment and changes the image, so volcache applies the same rules,
later ones winning:

1. a variable named after a flag in UPPER_SNAKE_CASE becomes that flag (`MAX_MODEL_LEN=4096` →
   `--max-model-len 4096`): a value flag takes the value verbatim (`MAX_NUM_BATCHED_TOKENS=0` is
   dropped, as vLLM rejects 0 there); a `--flag/--no-flag` pair takes `true`/`false` and emits
   the bare form; a plain switch is emitted when true; a flag vLLM removed is logged and skipped;
2. the historical names `CUSTOM_CHAT_TEMPLATE` (`--chat-template`) and `VLLM_CONFIG_FILE` (`--config`);
3. `VLLM_EXTRA_ARGS`, split as a shell would, appended last (argparse keeps the last occurrence).

What volcache decides itself, never the environment: the model is the snapshot folder from the
store (`MODEL_NAME` names the repo and is the served name), the tokenizer is the same folder,
the served name is `OPENAI_SERVED_MODEL_NAME_OVERRIDE` (or `SERVED_MODEL_NAME`) or `MODEL_NAME`,
and the server listens on the loopback only. `--safetensors-load-strategy` follows volcache's
load strategy unless `SAFETENSORS_LOAD_STRATEGY` is set.

The flag tables are vLLM 0.32's own parser (`make_arg_parser`), read once; `tests/vllm` checks them
against the installed vLLM, so a new release that adds or changes a flag fails a test, not a user.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Mapping
from pathlib import Path

from ..._errors import ConfigError

log = logging.getLogger("volcache.worker")

TRUE_VALUES = frozenset({"true", "1", "yes", "on"})
FALSE_VALUES = frozenset({"false", "0", "no", "off"})


def _flags(names: str) -> frozenset[str]:
    return frozenset(f"--{name}" for name in names.split())


VALUE_FLAGS = _flags(
    "additional-config all2all-backend allowed-headers allowed-local-media-path allowed-media-domains "
    "allowed-methods allowed-origins anthropic-disabled-thinking-effort api-key api-server-count "
    "attention-backend attention-config aux-output-config block-size chat-template chat-template-content-format "
    "code-revision cohere-format collect-detailed-traces compilation-config config config-format convert "
    "cp-kv-cache-interleave-size cpu-distributed-timeout-seconds cpu-offload-gb cpu-offload-params "
    "cudagraph-capture-sizes custom-histogram-buckets data-parallel-address data-parallel-backend "
    "data-parallel-rank data-parallel-rpc-port data-parallel-size data-parallel-size-local "
    "data-parallel-start-rank data-parallel-supervisor-port dbo-decode-token-threshold "
    "dbo-prefill-token-threshold dcp-comm-backend dcp-kv-cache-interleave-size decode-context-parallel-size "
    "default-chat-template-kwargs default-mm-loras device-ids diffusion-config disable-access-log-for-endpoints "
    "distributed-executor-backend distributed-timeout-seconds download-dir dp-supervisor-probe-failure-threshold "
    "dp-supervisor-probe-interval-s dp-supervisor-probe-timeout-s dp-sync-interval dtype ec-manager-config "
    "ec-transfer-config elastic-ep-max-dp-size engram-config eplb-config expert-placement-strategy "
    "fault-tolerance-config fingerprint-mode fingerprint-value gdn-prefill-backend generation-config "
    "gpu-memory-utilization grpc-port h11-max-header-count h11-max-incomplete-event-size hf-config-path "
    "hf-overrides hf-token host ignore-patterns io-processor-plugin ir-op-priority jit-monitor-mode "
    "kda-decode-backend kda-prefill-backend kernel-config kv-cache-dtype kv-cache-dtype-skip-layers "
    "kv-cache-memory-bytes kv-cache-metrics-sample kv-events-config kv-offloading-backend kv-offloading-size "
    "kv-transfer-config limit-mm-per-prompt linear-backend load-format log-config-file log-level logging-config "
    "logits-processors logprobs-mode long-prefill-token-threshold lora-dtype lora-modules lora-target-modules "
    "mamba-backend mamba-block-size mamba-cache-dtype mamba-cache-mode mamba-cache-philox-rounds "
    "mamba-ssm-cache-dtype mamba-ssu-algorithm master-addr master-port max-cpu-loras max-cudagraph-capture-size "
    "max-log-len max-logprobs max-lora-cls-labels max-lora-rank max-loras max-model-len max-num-active-seqs "
    "max-num-batched-tokens max-num-queued-reqs max-num-queued-tokens max-num-scheduled-tokens max-num-seqs "
    "max-parallel-loading-workers media-io-kwargs middleware mm-encoder-attn-backend mm-encoder-attn-dtype "
    "mm-encoder-fp8-scale-path mm-encoder-fp8-scale-save-margin mm-encoder-fp8-scale-save-path mm-encoder-tp-mode "
    "mm-hasher-algorithm mm-ipc-gpu-memory-gb mm-processor-cache-gb mm-processor-cache-type mm-processor-device "
    "mm-processor-kwargs mm-shm-cache-max-object-size-mb mm-tensor-ipc model model-class-overrides model-impl "
    "model-loader-extra-config moe-backend nnodes node-rank num-gpu-blocks-override numa-bind-cpus "
    "numa-bind-nodes offload-backend offload-group-size offload-num-in-group offload-params offload-prefetch-step "
    "optimization-level otlp-traces-endpoint override-generation-config per-request-spec-decode-metrics "
    "performance-mode pipeline-parallel-size pooler-config port prefill-context-parallel-size "
    "prefill-schedule-interval prefix-cache-retention-interval prefix-caching-hash-algo prefix-match-unit "
    "profiler-config pt-load-map-location quantization quantization-config reasoning-config reasoning-parser "
    "reasoning-parser-plugin renderer-num-workers replayssm-buffer-len response-role revision root-path runner "
    "safetensors-load-strategy safetensors-prefetch-block-size safetensors-prefetch-num-threads scheduler-cls "
    "scheduling-policy seed served-model-name show-hidden-metrics-for-version shutdown-timeout "
    "sleep-preserve-parameter-names sparse-indexer-topk-backend spec-method spec-model spec-tokens "
    "speculative-config sse-keep-alive-interval ssl-ca-certs ssl-cert-reqs ssl-certfile ssl-ciphers ssl-keyfile "
    "stream-interval structured-outputs-config tensor-parallel-size tokenizer tokenizer-mode tokenizer-revision "
    "tool-call-parser tool-parser-plugin tool-server tool-strict-level ubatch-size uds uvicorn-log-level "
    "video-pruning-method video-pruning-rate watermark watermark-config weight-transfer-config worker-cls "
    "worker-extension-cls "
)
PAIRED_BOOL_FLAGS = _flags(
    "allow-credentials allow-deprecated-quantization async-scheduling cohere-is-reasoning-model cudagraph-metrics "
    "data-parallel-external-lb data-parallel-hybrid-lb dcp-q-replicate disable-cascade-attn "
    "disable-chunked-mm-input disable-custom-all-reduce disable-fastapi-docs disable-hybrid-kv-cache-manager "
    "disable-nccl-for-dp-synchronization disable-sliding-window disable-uvicorn-access-log "
    "enable-auto-tool-choice enable-batch-sharded-sampling enable-chunked-prefill enable-cumem-allocator "
    "enable-dbo enable-elastic-ep enable-ep-weight-filter enable-eplb enable-expert-parallel "
    "enable-fault-tolerance enable-flash-late-interaction enable-flashinfer-autotune enable-force-include-usage "
    "enable-hc-sp enable-layerwise-nvtx-tracing enable-log-deltas enable-log-outputs enable-log-requests "
    "enable-logging-iteration-details enable-lora enable-mamba-cache-stochastic-rounding "
    "enable-mamba-shared-prefix-checkpoint enable-mfu-metrics enable-mixed-moe-lora-format enable-mm-embeds "
    "enable-moe-shared-loras enable-nccl-comm-suspend enable-offline-docs enable-per-request-metrics "
    "enable-prefix-caching enable-prompt-embeds enable-prompt-tokens-details enable-request-id-headers "
    "enable-return-routed-experts enable-scale-out enable-server-load-tracking enable-shm-tensor-arena "
    "enable-sleep-mode enable-ssl-refresh enable-tokenizer-info-endpoint enable-tower-connector-lora "
    "enable-trace-replay enforce-eager exclude-tools-when-tool-choice-none fail-on-environ-validation "
    "fully-sharded-loras interleave-mm-strings jit-monitor-verbose kv-cache-metrics kv-sharing-fast-prefill "
    "language-model-only log-error-stack long-prefill-token-threshold-adaptive mm-device-do-normalize "
    "mm-encoder-only numa-bind ray-workers-use-nsight return-sampling-mask return-tokens-as-token-ids "
    "scheduler-reserve-full-isl skip-mm-profiling skip-tokenizer-init sleep-mode-offload-cudagraph "
    "specialize-active-lora swa-bounded-replay tokens-only trust-remote-code trust-request-chat-template "
    "trust-request-mm-kwargs use-fp64-gumbel use-replayssm use-tqdm-on-load "
)
BOOL_FLAGS = _flags("aggregate-engine-logging data-parallel-multi-port-external-lb disable-log-stats grpc headless ")

ALL_FLAGS = VALUE_FLAGS | PAIRED_BOOL_FLAGS | BOOL_FLAGS

# Flags volcache sets itself (or that would send requests past it); their variables are not mapped.
OWN_FLAGS = frozenset(
    {"--model", "--tokenizer", "--served-model-name", "--host", "--port", "--uds", "--api-key", "--headless",
     "--revision", "--tokenizer-revision", "--download-dir", "--hf-token", "--help"}
)  # fmt: skip
# worker-vllm's reserved names that are not volcache's flags: `--config` comes from VLLM_CONFIG_FILE only.
RESERVED_ENV = frozenset({"CONFIG"})
ZERO_MEANS_UNSET = frozenset({"--max-num-batched-tokens"})
ALIASES = {"CUSTOM_CHAT_TEMPLATE": "--chat-template", "VLLM_CONFIG_FILE": "--config"}
# Gone from vLLM; worker-vllm's templates still carry some. Setting one is logged, never fatal.
REMOVED_FLAGS = {
    "--swap-space": "V1 has no swap space",
    "--disable-log-requests": "use ENABLE_LOG_REQUESTS=false",
    "--guided-decoding-backend": "use STRUCTURED_OUTPUTS_CONFIG",
    "--num-lookahead-slots": "use SPECULATIVE_CONFIG",
    "--rope-scaling": "use HF_OVERRIDES",
    "--rope-theta": "use HF_OVERRIDES",
    "--task": "use RUNNER / CONVERT",
    "--cuda-graph-sizes": "use COMPILATION_CONFIG's cudagraph_capture_sizes",
    "--max-num-partial-prefills": "no replacement",
    "--max-long-partial-prefills": "no replacement",
    "--disable-frontend-multiprocessing": "no replacement",
}


def env_name(flag: str) -> str:
    """`--max-model-len` → `MAX_MODEL_LEN`."""
    return flag.lstrip("-").replace("-", "_").upper()


def engine_arguments(env: Mapping[str, str]) -> list[str]:
    """The flags the environment asks for (rules 1–3), without the ones volcache owns."""
    flags: dict[str, str | None] = {}
    for flag, note in sorted(REMOVED_FLAGS.items()):
        if env.get(env_name(flag), "").strip():
            log.warning("volcache: %s is set, but vLLM no longer has %s; ignored (%s).", env_name(flag), flag, note)
    for flag in sorted(ALL_FLAGS - OWN_FLAGS):
        if env_name(flag) not in RESERVED_ENV and (value := env.get(env_name(flag))) is not None:
            _apply(flag, value, flags, env_name(flag))
    for name, flag in ALIASES.items():
        if (value := env.get(name)) is not None:
            _apply(flag, value, flags, name)
    argv: list[str] = []
    for flag, value in flags.items():
        argv += [flag] if value is None else [flag, value]
    return argv + extra_arguments(env.get("VLLM_EXTRA_ARGS", ""))


def _apply(flag: str, raw: str, flags: dict[str, str | None], name: str) -> None:
    value = raw.strip()
    if not value:
        return
    if flag in PAIRED_BOOL_FLAGS or flag in BOOL_FLAGS:
        on = _boolean(name, value)
        flags.pop(flag, None)
        flags.pop(f"--no-{flag[2:]}", None)
        if flag in PAIRED_BOOL_FLAGS:
            flags[flag if on else f"--no-{flag[2:]}"] = None
        elif on:
            flags[flag] = None
    elif flag in ZERO_MEANS_UNSET and value == "0":
        log.warning("volcache: %s=0 is not valid for vLLM; leaving %s to vLLM's default.", name, flag)
    else:
        flags[flag] = value


def _boolean(name: str, value: str) -> bool:
    if value.lower() in TRUE_VALUES:
        return True
    if value.lower() in FALSE_VALUES:
        return False
    raise ConfigError(f"{name}={value!r} is not a boolean; use true or false.")


def extra_arguments(text: str) -> list[str]:
    """`VLLM_EXTRA_ARGS`, split as a shell would; the flags volcache owns are refused."""
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"VLLM_EXTRA_ARGS cannot be split as a shell would ({exc}); check its quotes.") from None
    owned = sorted({a.split("=", 1)[0] for a in argv if a.split("=", 1)[0] in OWN_FLAGS})
    if owned:
        raise ConfigError(
            f"VLLM_EXTRA_ARGS sets {', '.join(owned)}, which volcache sets itself (the model and tokenizer are "
            "the snapshot folder on the volume, the server listens on the loopback); remove them."
        )
    return argv


def serve_command(
    env: Mapping[str, str], *, snapshot: Path, served_name: str, port: int, load_strategy: str | None
) -> list[str]:
    """The whole `vllm serve` argument list after `serve`: volcache's flags first, the environment's after."""
    argv = [str(snapshot), "--tokenizer", str(snapshot), "--served-model-name", served_name]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    if load_strategy is not None and not env.get("SAFETENSORS_LOAD_STRATEGY", "").strip():
        argv += ["--safetensors-load-strategy", load_strategy]
    return argv + engine_arguments(env)
