"""The pieces under the rules: the shell lexer, the Dockerfile reader, the Python resolver."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from volcache.audit._context import context_file, is_volume_worker, scripts_run
from volcache.audit._dockerfile import Dockerfile, substitute
from volcache.audit._files import file_kind, is_excluded
from volcache.audit._locations import is_model_location
from volcache.audit._python import PythonModule
from volcache.audit._shell import copied_model_operands, split_commands

# -- shell ------------------------------------------------------------------------------


def test_shell_words_keep_offsets_and_split_on_operators() -> None:
    text = "A=1 sudo -E cp -r '/tmp/my models' \"$HF_HOME\"/x 2>/dev/null && echo done; ls | wc"
    commands = split_commands(text)
    assert [c.program for c in commands] == ["cp", "echo", "ls", "wc"]
    cp = commands[0]
    assert [w.text for w in cp.argv] == ["cp", "-r", "/tmp/my models", "$HF_HOME/x"]
    assert text[cp.argv[2].offset] == "'"
    assert cp.assignments == (("A", "1"),)


def test_shell_comments_subshells_and_substitutions() -> None:
    commands = split_commands("cp a b # cp -r /tmp/models /x\n(cd /x && tar c $(ls models))")
    words = [[w.text for w in c.argv] for c in commands]
    assert words == [["cp", "a", "b"], ["cd", "/x"], ["tar", "c", "$(ls models)"]]


@pytest.mark.parametrize(
    ("command", "flagged"),
    [
        ("cp -r /tmp/models /x", ["/tmp/models"]),
        ("cp -al /tmp/models /x", []),
        ("cp --link -r /tmp/models /x", []),
        ("rsync -a --exclude models /src/ /dst/", []),
        ("rsync -a -- -odd /tmp/models", ["/tmp/models"]),
        ("tar -xzf /w.tgz -C /models", []),
        ("tar czf /out.tgz models", ["models"]),
        ("tar --create -f /out.tar /app/weights", ["/app/weights"]),
        ("mv /tmp/models /x/models", []),
    ],
)
def test_copy_operands(command: str, flagged: list[str]) -> None:
    (cmd,) = split_commands(command)
    assert [w.text for w in copied_model_operands(cmd, is_model_location)] == flagged


# -- model locations --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("/tmp/models", True),
        ("/runpod-volume/models/hub/models--org--name", True),
        ("relative/checkpoints/x", True),
        ("/data/x.safetensors", True),
        ("/data/*.gguf", True),
        ("$HF_HOME", True),
        ("${HF_HUB_CACHE}/*", True),
        ("$HF_HOME/hub", True),
        ("$HF_HOME/token", False),
        ("$OUTPUT_DIR", False),
        ("/runpod-volume", False),
        ("/root/.cache", False),
        ("/app/models/config.json", False),
        ("/srv/app/src/model/user.py", False),
        ("/models-archive", True),
        ("/workspace/models_cache", True),
        ("/app/local-models/x", True),
        ("/comfyui-local-models", True),
        ("/ckpt", True),
        ("/app/pretrained_weights", True),
        ("/srv/live_weights", True),
        ("/app/model_outputs", False),
        ("/app/model-configs", False),
        ("/srv/hubspot", False),
        ("/app/modelscope", False),
        ("${MODEL_DIR:-/runpod-volume/models}", True),
        ("${OUT:-/tmp/out}/*", False),
        ("${HF_HOME:-/root/.cache/huggingface}/token", False),
        ("$HF_HUB_CACHE/models--*/snapshots/*/model.safetensors", True),
        ("$HF_HUB_CACHE/models--*/snapshots/*/config.json", False),
        ("*", False),
        (None, False),
    ],
)
def test_model_locations(path: str | None, model: bool) -> None:
    assert is_model_location(path) is model


# -- files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("handler.py", "python"),
        ("Dockerfile", "dockerfile"),
        ("Dockerfile.runpod", "dockerfile"),
        ("worker.Dockerfile", "dockerfile"),
        ("dockerfile", "dockerfile"),
        ("Containerfile", "dockerfile"),
        ("Dockerfile.dockerignore", None),
        ("README.md", None),
        ("handler.pyc", None),
        ("start.sh", "shell"),
        ("entrypoint.bash", "shell"),
        ("Dockerfile.vllm", "dockerfile"),
        ("Dockerfile-cuda12", "dockerfile"),
        ("dockerfile_gpu", "dockerfile"),
        ("Dockerfile.md", None),
    ],
)
def test_file_kinds(name: str, kind: str | None) -> None:
    assert file_kind(Path(name)) == kind


def test_exclude_globs_match_the_file_or_a_folder_above_it() -> None:
    root = Path("/project")
    assert is_excluded(Path("/project/tests/audit/fixtures/VC101.py"), ["tests/audit/fixtures"], root)
    assert is_excluded(Path("/project/a/legacy_x.py"), ["**/legacy_*.py"], root)
    assert is_excluded(Path("/project/vendor/x.py"), ["vendor"], root)
    assert not is_excluded(Path("/project/src/x.py"), ["tests"], root)


# -- Dockerfile -------------------------------------------------------------------------


def test_dockerfile_continuations_comments_and_positions() -> None:
    text = "FROM x\nENV A=1 \\\n# inside\n\n    HF_HOME=/tmp/models\nRUN echo hi\n"
    dockerfile = Dockerfile("Dockerfile", text, ("/runpod-volume",))
    env = dockerfile.steps[1]
    assert [s.keyword for s in dockerfile.steps] == ["FROM", "ENV", "RUN"]
    entries = list(dockerfile.env_entries(env))
    assert [(k, v) for k, v, _ in entries] == [("A", "1"), ("HF_HOME", "/tmp/models")]
    assert env.instruction.where(entries[1][2]) == (5, 5)
    assert (env.instruction.line, env.instruction.end_line) == (2, 5)


def test_dockerfile_escape_directive_and_legacy_env() -> None:
    text = "# escape=`\nFROM x\nENV HF_HOME /tmp/my models\nRUN cp -r /tmp/models `\n    /app/models\n"
    dockerfile = Dockerfile("Dockerfile", text, ())
    assert dockerfile.stage_env(0) == {"HF_HOME": "/tmp/my models"}
    (command,) = dockerfile.run_commands(dockerfile.steps[2])
    assert [w.text for w in command.argv] == ["cp", "-r", "/tmp/models", "/app/models"]
    assert dockerfile.steps[2].instruction.where(command.argv[3].offset) == (5, 5)


def test_dockerfile_stages_args_and_workdir() -> None:
    text = (
        "ARG ROOT=/runpod-volume\n"
        "FROM python AS base\n"
        "ARG ROOT\n"
        "ENV HF_HOME=${ROOT}/models HF_HUB_CACHE=${HF_HOME}/hub\n"
        "WORKDIR /srv\n"
        "FROM base AS final\n"
        "WORKDIR app\n"
        "RUN true\n"
        "FROM python AS other\n"
    )
    dockerfile = Dockerfile("Dockerfile", text, ("/runpod-volume",))
    final = dockerfile.steps[-2]
    assert final.env["HF_HOME"] == "/runpod-volume/models"
    assert final.env["HF_HUB_CACHE"] == "${HF_HOME}/hub"  # within one ENV, earlier pairs are not visible
    assert final.workdir == "/srv/app"
    assert dockerfile.cache_on_volume(1) == "HF_HOME"
    assert dockerfile.cache_on_volume(2) is None


def test_substitution_forms() -> None:
    env = {"A": "/a", "EMPTY": ""}
    assert substitute("$A/${A}/${B:-/d}/${EMPTY:-x}/${A:+y}/$B", env) == "/a//a//d/x/y/$B"


def test_dockerfile_json_forms_and_heredoc() -> None:
    text = (
        'FROM x\nRUN ["/bin/sh", "-c", "cp -r /tmp/models /app/models"]\nRUN <<EOT\nrsync -a /tmp/models /m\nEOT\n'
        "RUN echo after\n"
    )
    dockerfile = Dockerfile("Dockerfile", text, ())
    assert [s.keyword for s in dockerfile.steps] == ["FROM", "RUN", "RUN", "RUN"]
    assert [c.program for c in dockerfile.run_commands(dockerfile.steps[1])] == ["cp"]
    (rsync,) = dockerfile.run_commands(dockerfile.steps[2])
    assert dockerfile.steps[2].instruction.where(rsync.argv[0].offset) == (4, 1)


def test_volume_instruction_adds_a_mount_point_and_marks_a_volume_worker() -> None:
    dockerfile = Dockerfile("Dockerfile", 'FROM python\nVOLUME ["/data"]\nENV HF_HOME=/data/models\n', ())
    assert dockerfile.mount_points == ("/data",)
    assert is_volume_worker(dockerfile)
    assert not is_volume_worker(Dockerfile("Dockerfile", "FROM python\nENV HF_HOME=/tmp/models\n", ()))
    runpod_base = "FROM runpod/base:0.6.2\nRUN pip install runpod\nENV HF_HOME=/tmp/models\n"
    assert not is_volume_worker(Dockerfile("Dockerfile.runpod", runpod_base, ("/runpod-volume",)))


def test_a_handler_copied_from_the_context_that_names_the_volume_marks_a_volume_worker(tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text('VOLUME = "/runpod-volume/models"\n')
    (tmp_path / "other.py").write_text("x = 1\n")
    text = "FROM python\nCOPY handler.py /app/\n"
    assert is_volume_worker(Dockerfile("Dockerfile", text, ("/runpod-volume",), tmp_path))
    other = "FROM python\nCOPY other.py /app/\n"
    assert not is_volume_worker(Dockerfile("Dockerfile", other, ("/runpod-volume",), tmp_path))


def test_shell_script_steps_follow_the_variables_it_sets() -> None:
    text = 'export ROOT=/runpod-volume\nDEST=/app/models\ncp -r "$ROOT/models" "$DEST"  # copy\ncd /srv\nls\n'
    script = Dockerfile("start.sh", text, ("/runpod-volume",), script=True, env={"HOME": "/root"})
    copy, _cd, ls = script.steps
    assert copy.expand(copy.commands[0].argv[2].text) == "/runpod-volume/models"  # type: ignore[index]
    assert copy.env["DEST"] == "/app/models" and copy.env["HOME"] == "/root"
    assert copy.instruction.where(copy.commands[0].argv[0].offset) == (3, 1)  # type: ignore[index]
    assert ls.workdir == "/srv"


def test_context_files_map_image_paths_back_to_the_build_context(tmp_path: Path) -> None:
    (tmp_path / "builder").mkdir()
    (tmp_path / "builder" / "fetch.py").write_text("x = 1\n")
    (tmp_path / "start.sh").write_text("echo hi\n")
    text = (
        "FROM python\nWORKDIR /app\nCOPY builder/fetch.py /fetch.py\nCOPY . .\nCOPY start.sh /usr/local/bin/\n"
        'RUN python /fetch.py\nRUN python builder/fetch.py\nCMD ["/usr/local/bin/start.sh"]\n'
    )
    dockerfile = Dockerfile("ctx/Dockerfile", text, (), tmp_path)
    found = [(s.file.display, s.file.kind, s.at_start) for s in scripts_run(dockerfile)]
    assert found == [("ctx/builder/fetch.py", "python", False), ("ctx/start.sh", "shell", True)]
    assert context_file(dockerfile, dockerfile.steps[-1], "/etc/passwd") is None


# -- Python resolver --------------------------------------------------------------------


def _value_of_last_call_arg(source: str) -> str | None:
    module = PythonModule("m.py", source)
    call = [n for n in ast.walk(module.tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "use"][-1]
    return module.resolver.value(call.args[0])


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ('x = "/a"\nuse(x)', "/a"),
        ('x = "/a"\nx = "/b"\nuse(x)', "/b"),
        ('x = "/a"\nuse(x)\nx = "/b"', "/a"),
        ('import os\nuse(os.path.join("/a", "b", "/c", "d"))', "/c/d"),
        ('from pathlib import Path\nuse(Path("/a") / "b" / name)', "/a/b/*"),
        ('from pathlib import Path\nuse(Path.home() / ".cache" / "huggingface")', "~/.cache/huggingface"),
        ('import os\nuse(os.environ["HF_HOME"] + "/hub")', "$HF_HOME/hub"),
        ('import os\nuse(os.environ.get("HF_HOME") or "/default")', "$HF_HOME"),
        ('from os import getenv\nuse(getenv("TORCH_HOME", "/x"))', "${TORCH_HOME:-/x}"),
        ('import os\nuse(os.environ.get("MODEL_DIR", default="/m"))', "${MODEL_DIR:-/m}"),
        ('import os\nuse(os.environ.get("MODEL_DIR", None))', "$MODEL_DIR"),
        ('base = "/v"\nuse(f"{base}/models/{name}")', "/v/models/*"),
        ('use("%s/models" % root)', "*/models"),
        ('use("{}/models".format(root))', "*/models"),
        ('use("/".join(["", "tmp", "models"]))', "/tmp/models"),
        ('from pathlib import Path\nuse(Path("/a").joinpath("b", "c").resolve())', "/a/b/c"),
        ("use(self.cache_dir)", None),
        ("use(get_dir())", None),
        ('def f(p="/d"):\n    use(p)', "/d"),
        ('def f(p):\n    use(p)\nf("/tmp/models")\nf("/other")', "/tmp/models"),
        ('def f(p):\n    use(p)\nf("/one")\nf("/other")', None),
        ('def f(*, p):\n    use(p)\nf(p="/kw")', "/kw"),
        ('ROOT = "/r"\ndef f():\n    use(ROOT)', "/r"),
        ('ROOT = "/r"\nclass C:\n    ROOT = "/class"\n    def m(self):\n        use(ROOT)', "/r"),
        ('def f():\n    use(x)\n    x = "/late"', None),
        ('for p in ["/a"]:\n    use(p)', "/a"),
        ('for p in ["/a", "/tmp/models"]:\n    use(p)', "/tmp/models"),
        ('for p in ("/a", "/b"):\n    use(p)', None),
        ('DIRS = {"x": "/a"}\nfor name, p in DIRS.items():\n    use(p)', "/a"),
        ('for name in {"x": "/a"}:\n    use(name)', "x"),
        ('for p in {"x": "/a"}.values():\n    use(p)', "/a"),
        ("for p in get_dirs():\n    use(p)", None),
        (
            'from huggingface_hub import hf_hub_download\nuse(hf_hub_download("org/m", "model.safetensors"))',
            "$HF_HUB_CACHE/models--org--m/snapshots/*/model.safetensors",
        ),
        (
            'import huggingface_hub as h\nuse(h.snapshot_download(repo, cache_dir="/c"))',
            "/c/models--*/snapshots/*",
        ),
        ('from huggingface_hub import snapshot_download\nuse(snapshot_download("o/m", local_dir="/l"))', "/l"),
        (
            'from huggingface_hub import hf_hub_download\nuse(hf_hub_download("o/d", "x.csv", repo_type="dataset"))',
            None,
        ),
        ('def snapshot_download(r):\n    return r\nuse(snapshot_download("o/m"))', None),
        ('from shutil import copy\nclass C:\n    def copy(self, a, b):\n        use(b)\ncopy("/x", "/y")', None),
        (
            'class C:\n    def copy(self, a, b):\n        use(b)\n    def run(self):\n        self.copy("/x", "/y")',
            "/y",
        ),
        ('a, b = "/a", "/b"\nuse(b)', "/b"),
    ],
)
def test_resolver(source: str, value: str | None) -> None:
    assert _value_of_last_call_arg(source) == value


def test_resolver_stops_on_recursion() -> None:
    source = "def f(p):\n    f(p)\n    use(p)\n"
    assert _value_of_last_call_arg(source) is None


def test_columns_count_characters_not_bytes() -> None:
    source = 'import shutil\nx = "é"; shutil.copytree("/tmp/models", "/runpod-volume/models")\n'
    module = PythonModule("m.py", source)
    call = next(n for n in ast.walk(module.tree) if isinstance(n, ast.Call))
    assert module.col(call) == 10
