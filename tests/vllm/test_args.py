"""worker-vllm's environment → `vllm serve` flags, rule by rule, and the flag tables against vLLM's parser."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from volcache import ConfigError
from volcache.worker.tasks import _vllm_args as args

from ._support import require_vllm


def test_a_variable_named_after_a_value_flag_becomes_that_flag_verbatim() -> None:
    argv = args.engine_arguments({"MAX_MODEL_LEN": "4096", "SPECULATIVE_CONFIG": '{"num_speculative_tokens": 3}'})
    assert argv == ["--max-model-len", "4096", "--speculative-config", '{"num_speculative_tokens": 3}']


def test_paired_booleans_emit_the_bare_or_the_no_form_and_never_a_value() -> None:
    assert args.engine_arguments({"ENFORCE_EAGER": "true"}) == ["--enforce-eager"]
    assert args.engine_arguments({"TRUST_REMOTE_CODE": "false"}) == ["--no-trust-remote-code"]
    assert args.engine_arguments({"ENABLE_PREFIX_CACHING": "0"}) == ["--no-enable-prefix-caching"]


def test_store_true_switches_are_emitted_when_true_and_omitted_when_false() -> None:
    assert args.engine_arguments({"DISABLE_LOG_STATS": "yes"}) == ["--disable-log-stats"]
    assert args.engine_arguments({"DISABLE_LOG_STATS": "off"}) == []


def test_a_boolean_that_is_not_one_is_one_clear_config_error() -> None:
    with pytest.raises(ConfigError, match=r"ENFORCE_EAGER='maybe' is not a boolean"):
        args.engine_arguments({"ENFORCE_EAGER": "maybe"})


def test_empty_values_zero_batched_tokens_and_removed_flags_emit_nothing(caplog: pytest.LogCaptureFixture) -> None:
    env = {"MAX_MODEL_LEN": "", "MAX_NUM_BATCHED_TOKENS": "0", "SWAP_SPACE": "4"}
    assert args.engine_arguments(env) == []
    assert "SWAP_SPACE is set, but vLLM no longer has --swap-space" in caplog.text


def test_aliases_and_extra_args_come_last_so_they_win() -> None:
    env = {"CUSTOM_CHAT_TEMPLATE": "{{ x }}", "DTYPE": "half", "VLLM_EXTRA_ARGS": "--dtype float16 --seed '7'"}
    assert args.engine_arguments(env) == [
        "--dtype",
        "half",
        "--chat-template",
        "{{ x }}",
        "--dtype",
        "float16",
        "--seed",
        "7",
    ]


def test_the_model_tokenizer_address_and_names_are_volcaches_never_the_environments() -> None:
    env = {"MODEL": "org/other", "TOKENIZER": "org/tok", "PORT": "1", "HOST": "0.0.0.0", "API_KEY": "k", "CONFIG": "c"}
    assert args.engine_arguments(env) == []
    command = args.serve_command(env, snapshot=Path("/vol/snap"), served_name="org/m", port=8123, load_strategy=None)
    assert command[:5] == ["/vol/snap", "--tokenizer", "/vol/snap", "--served-model-name", "org/m"]
    assert command[5:9] == ["--host", "127.0.0.1", "--port", "8123"]
    with pytest.raises(ConfigError, match="VLLM_EXTRA_ARGS sets --model, --port"):
        args.engine_arguments({"VLLM_EXTRA_ARGS": "--model org/x --port=9"})


def test_extra_args_with_broken_quotes_are_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="VLLM_EXTRA_ARGS cannot be split"):
        args.engine_arguments({"VLLM_EXTRA_ARGS": "--chat-template 'unclosed"})


def test_the_load_strategy_is_volcaches_unless_the_environment_names_one() -> None:
    snap = Path("/vol/snap")
    ours = args.serve_command({}, snapshot=snap, served_name="m", port=1, load_strategy="eager")
    assert ours[-2:] == ["--safetensors-load-strategy", "eager"]
    theirs = args.serve_command(
        {"SAFETENSORS_LOAD_STRATEGY": "prefetch"}, snapshot=snap, served_name="m", port=1, load_strategy="eager"
    )
    assert theirs[-2:] == ["--safetensors-load-strategy", "prefetch"]
    assert theirs.count("--safetensors-load-strategy") == 1


def test_the_flag_tables_are_the_installed_vllm_parsers() -> None:
    """A vLLM upgrade that adds, removes or changes a flag's kind fails here, not at a user's start."""
    require_vllm()
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    kinds: dict[str, set[str]] = {"value": set(), "paired": set(), "bool": set()}
    for action in make_arg_parser(FlexibleArgumentParser())._actions:
        names = [o for o in action.option_strings if o.startswith("--") and not o.startswith("--no-")]
        if not names or isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse.BooleanOptionalAction):
            kinds["paired"].add(names[0])
        elif action.nargs == 0:
            kinds["bool"].add(names[0])
        else:
            kinds["value"].add(names[0])
    assert kinds["value"] == args.VALUE_FLAGS
    assert kinds["paired"] == args.PAIRED_BOOL_FLAGS
    assert kinds["bool"] == args.BOOL_FLAGS
    assert not set(args.REMOVED_FLAGS) & (kinds["value"] | kinds["paired"] | kinds["bool"])
