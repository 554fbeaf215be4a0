"""A careful Dockerfile reader: instructions with positions, and the ENV/ARG state at each.

A shell script (`start.sh`, an entrypoint) is read into the same shape, so the rules that
read `RUN` lines read it too: each command of the script is a `RUN` step, with the
variables the script (and the Dockerfile that runs it) set before it.

It joins `\\` continuations (or the `# escape=` character), drops comment and blank lines
inside them as Docker does, reads `RUN <<EOF` heredocs, the JSON and shell forms, `ENV A=b
C=d` and legacy `ENV A b`, `ARG`, `WORKDIR`, `VOLUME` and build stages (`FROM x AS y`, a
stage based on another inherits its ENV). Variables are substituted as Docker does
(`$A`, `${A}`, `${A:-default}`, `${A:+alt}`); an unknown variable stays `$A`.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import posixpath
import re
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

from ._locations import CACHE_ENV_VARS, mount_of
from ._shell import PYTHON_PROGRAM, SimpleCommand, Word, split_commands, split_words
from ._suppress import Suppressions, parse_directive

_KEYWORD = re.compile(r"\s*([A-Za-z]+)(?=\s|$)")
_ESCAPE_DIRECTIVE = re.compile(r"#\s*escape\s*=\s*(\S)\s*$", re.IGNORECASE)
_OTHER_DIRECTIVE = re.compile(r"#\s*[a-z]+\s*=", re.IGNORECASE)
_HEREDOC = re.compile(r"<<(-?)\s*([\"']?)([A-Za-z_][A-Za-z0-9_]*)\2")
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")
_FLAG = re.compile(r"--([a-z-]+)(?:=(\S*))?\s*")


@dataclasses.dataclass(frozen=True)
class Instruction:
    """One instruction; `args` has its continuations joined and comment lines dropped."""

    keyword: str
    args: str
    line: int
    end_line: int
    col: int
    # (offset in args, line, 0-based column) where each physical piece of `args` starts
    pieces: tuple[tuple[int, int, int], ...]

    def where(self, offset: int) -> tuple[int, int]:
        """The 1-based line and column of character `offset` of `args`."""
        index = max(bisect.bisect_right([p[0] for p in self.pieces], offset) - 1, 0)
        start, line, col = self.pieces[index]
        return line, col + (offset - start) + 1

    def json_form(self) -> list[str] | None:
        """The exec (JSON array) form's strings, or None for the shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return None
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None

    def flags(self) -> tuple[dict[str, str], int]:
        """Leading `--name=value` flags and the offset where the rest starts."""
        found: dict[str, str] = {}
        offset = len(self.args) - len(self.args.lstrip())
        while match := _FLAG.match(self.args, offset):
            found[match.group(1)] = match.group(2) or ""
            offset = match.end()
        return found, offset

    def words(self) -> list[Word]:
        """The arguments after the flags, split like shell words (quotes removed)."""
        _, offset = self.flags()
        return [Word(w.text, w.offset + offset) for w in split_words(self.args[offset:])]


@dataclasses.dataclass(frozen=True)
class Step:
    """An instruction with the build state before it: variables, working folder, stage."""

    instruction: Instruction
    env: dict[str, str]
    workdir: str
    stage: int
    # A script's step is one command of it; a RUN step's commands are read from its text.
    commands: tuple[SimpleCommand, ...] | None = None

    @property
    def keyword(self) -> str:
        return self.instruction.keyword

    def expand(self, text: str, extra: dict[str, str] | None = None) -> str:
        """`text` with the variables known here substituted."""
        env = {**self.env, **extra} if extra else self.env
        return substitute(text, env)

    def absolute(self, path: str, extra: dict[str, str] | None = None) -> str:
        """`path` expanded, `~` as /root, and relative paths joined to WORKDIR."""
        path = self.expand(path, extra)
        if path.startswith("$"):
            return path  # an unknown variable: where it points is unknown
        if path == "~" or path.startswith("~/"):
            path = "/root" + path[1:]
        return posixpath.normpath(posixpath.join(self.workdir, path)) if path else path


def substitute(text: str, env: dict[str, str]) -> str:
    """Docker's variable substitution; an unknown `$NAME` is left as it is."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(4)
        operator, word = match.group(2), match.group(3) or ""
        value = env.get(name)
        if operator in ("-", ":-"):
            return value if value or (operator == "-" and value is not None) else word
        if operator in ("+", ":+"):
            return word if value else ""
        return value if value is not None else match.group(0)

    return _VARIABLE.sub(replace, text)


class _Reader:
    """Splits Dockerfile text into instructions, keeping every position."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.escape = "\\"
        self.i = 0
        self.instructions: list[Instruction] = []

    def read(self) -> list[Instruction]:
        self._directives()
        while self.i < len(self.lines):
            raw = self.lines[self.i]
            if not raw.strip() or raw.lstrip().startswith("#"):
                self.i += 1
                continue
            self.instructions.append(self._instruction())
        return self.instructions

    def _directives(self) -> None:
        for raw in self.lines:
            match = _ESCAPE_DIRECTIVE.match(raw.strip())
            if match:
                self.escape = match.group(1)
            elif not _OTHER_DIRECTIVE.match(raw.strip()):
                return

    def _continues(self, text: str) -> bool:
        return text.rstrip(" \t").endswith(self.escape)

    def _instruction(self) -> Instruction:
        first = self.i
        raw = self.lines[first]
        match = _KEYWORD.match(raw)
        keyword = match.group(1).upper() if match else raw.strip().split()[0].upper()
        start_col = match.end() if match else len(raw) - len(raw.lstrip())
        parts: list[str] = []
        pieces: list[tuple[int, int, int]] = []
        text, col = raw[start_col:], start_col
        while True:
            line_no = self.i + 1
            self.i += 1
            if not self._continues(text):
                pieces.append((sum(map(len, parts)), line_no, col))
                parts.append(text)
                break
            pieces.append((sum(map(len, parts)), line_no, col))
            parts.append(text.rstrip(" \t")[: -len(self.escape)])
            self._skip_comments_and_blanks()
            if self.i >= len(self.lines):
                break
            text, col = self.lines[self.i], 0
        args = "".join(parts)
        if keyword in ("RUN", "COPY", "ADD"):
            args = self._heredocs(args, pieces)
        return Instruction(keyword, args, first + 1, self.i, (match.start(1) if match else 0) + 1, tuple(pieces))

    def _skip_comments_and_blanks(self) -> None:
        while self.i < len(self.lines):
            stripped = self.lines[self.i].strip()
            if stripped and not stripped.startswith("#"):
                return
            self.i += 1

    def _heredocs(self, args: str, pieces: list[tuple[int, int, int]]) -> str:
        for match in _HEREDOC.finditer(args):
            strip_tabs, delimiter = match.group(1) == "-", match.group(3)
            while self.i < len(self.lines):
                body = self.lines[self.i]
                self.i += 1
                if (body.lstrip("\t") if strip_tabs else body) == delimiter:
                    break
                pieces.append((len(args) + 1, self.i, 0))
                args += "\n" + body
        return args


@dataclasses.dataclass(frozen=True)
class Stage:
    """A build stage: its index, its `AS` name and its base image."""

    index: int
    name: str | None
    base: str


class Dockerfile:
    """One Dockerfile (or shell script, with `script`), read; `path` is how findings name it.

    `context` is the build context folder on disk when the file was read from one: the
    files the image copies from it (scripts it runs, a handler) are then read too. `env`
    and `workdir` are what a script starts with (the image's, when a Dockerfile runs it).
    """

    def __init__(
        self,
        path: str,
        text: str,
        mount_points: tuple[str, ...],
        context: Path | None = None,
        *,
        script: bool = False,
        env: dict[str, str] | None = None,
        workdir: str = "/",
    ) -> None:
        self.path = path
        self.context = context
        self.is_script = script
        self.lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self.stages: list[Stage] = []
        self.steps: list[Step] = []
        self.volumes: list[str] = []
        self._stage_env: list[dict[str, str]] = []
        self._stage_workdir: list[str] = []
        if script:
            self.instructions = [self._script_instruction()]
            self._walk_script(dict(env or {}), workdir)
        else:
            self.instructions = _Reader(self.lines).read()
            self._walk()
        self.mount_points = tuple(dict.fromkeys([*mount_points, *self.volumes]))

    # -- shell scripts --------------------------------------------------------------------

    def _script_instruction(self) -> Instruction:
        pieces, offset = [], 0
        for number, line in enumerate(self.lines, start=1):
            pieces.append((offset, number, 0))
            offset += len(line) + 1
        return Instruction("RUN", "\n".join(self.lines), 1, len(self.lines), 1, tuple(pieces))

    def _walk_script(self, env: dict[str, str], workdir: str) -> None:
        instruction = self.instructions[0]
        self.stages.append(Stage(0, None, ""))
        for command in split_commands(instruction.args, keep_assignments=True):
            if not command.argv or command.program == "export":
                pairs = list(command.assignments)
                pairs += [tuple(w.text.split("=", 1)) for w in command.argv[1:] if "=" in w.text]  # type: ignore[misc]
                env.update({name: substitute(value, env) for name, value in pairs})
                continue
            if command.program == "cd" and len(command.argv) == 2:
                workdir = posixpath.normpath(posixpath.join(workdir, substitute(command.argv[1].text, env)))
            self.steps.append(Step(instruction, dict(env), workdir, 0, (command,)))
        self._stage_env.append(env)
        self._stage_workdir.append(workdir)

    # -- build state ----------------------------------------------------------------------

    def _walk(self) -> None:
        global_args: dict[str, str] = {}
        env: dict[str, str] = {}
        workdir = "/"
        for instruction in self.instructions:
            keyword = instruction.keyword
            if keyword == "FROM":
                env, workdir = self._from(instruction, global_args)
            step = Step(instruction, dict(env), workdir, len(self.stages) - 1)
            self.steps.append(step)
            if keyword == "ARG":
                target = global_args if not self.stages else env
                for word in instruction.words():
                    name, _, default = word.text.partition("=")
                    value = step.expand(default) if default else global_args.get(name)
                    if value is not None:
                        target[name] = value
            elif keyword == "ENV":
                env.update(self.env_pairs(step))
            elif keyword == "WORKDIR":
                workdir = step.absolute(instruction.args.strip())
            elif keyword == "VOLUME":
                self.volumes.extend(self._volume_paths(step))
            if self.stages:
                self._stage_env[-1] = dict(env)
                self._stage_workdir[-1] = workdir

    def _from(self, instruction: Instruction, global_args: dict[str, str]) -> tuple[dict[str, str], str]:
        words = [substitute(w.text, global_args) for w in instruction.words()]
        base = words[0] if words else ""
        name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
        parent = next((s for s in self.stages if s.name and s.name.lower() == base.lower()), None)
        self.stages.append(Stage(len(self.stages), name, base))
        env = dict(self._stage_env[parent.index]) if parent else {}
        workdir = self._stage_workdir[parent.index] if parent else "/"
        self._stage_env.append(env)
        self._stage_workdir.append(workdir)
        return dict(env), workdir

    def env_pairs(self, step: Step) -> dict[str, str]:
        """The variables an ENV step sets, substituted with the values before it."""
        return {key: step.expand(value) for key, value, _ in self.env_entries(step)}

    @staticmethod
    def env_entries(step: Step) -> Iterator[tuple[str, str, int]]:
        """`(key, raw value, offset of key)` of an ENV step, both forms."""
        instruction = step.instruction
        words = instruction.words()
        if words and "=" not in words[0].text:  # legacy `ENV KEY value with spaces`
            rest = instruction.args[words[0].offset + len(words[0].text) :].strip()
            yield words[0].text, rest.strip("\"'"), words[0].offset
            return
        for word in words:
            key, sep, value = word.text.partition("=")
            if sep:
                yield key, value, word.offset

    @staticmethod
    def _volume_paths(step: Step) -> list[str]:
        values = step.instruction.json_form()
        texts = values if values is not None else [w.text for w in step.instruction.words()]
        return [step.absolute(t) for t in texts if t]

    def stage_env(self, stage: int) -> dict[str, str]:
        """The variables a stage ends with: what its containers run with."""
        return self._stage_env[stage] if 0 <= stage < len(self._stage_env) else {}

    def stage_workdir(self, stage: int) -> str:
        """The working folder a stage ends with."""
        return self._stage_workdir[stage] if 0 <= stage < len(self._stage_workdir) else "/"

    def cache_on_volume(self, stage: int) -> str | None:
        """The cache variable of `stage` that points under a mount point, if any."""
        env = self.stage_env(stage)
        return next(
            (k for k in sorted(CACHE_ENV_VARS) if k in env and self.mount_of(env[k])),
            None,
        )

    def mount_of(self, path: str) -> str | None:
        """The mount point (configured or a VOLUME) that `path` lies under, if any."""
        return mount_of(path, self.mount_points)

    # -- commands -------------------------------------------------------------------------

    @staticmethod
    def run_commands(step: Step) -> list[SimpleCommand]:
        """The simple commands of a RUN step; word offsets count from the start of `args`."""
        if step.commands is not None:
            return list(step.commands)
        instruction = step.instruction
        _, at = instruction.flags()
        exec_form = instruction.json_form()
        if exec_form is None:
            text = instruction.args[at:]
            if Dockerfile.python_heredoc(step) is not None:  # the body is Python, not shell
                text = text.split("\n", 1)[0]
            return [_shifted(c, at) for c in split_commands(text)]
        if len(exec_form) >= 3 and exec_form[1] == "-c" and exec_form[0].endswith("sh"):
            return [_pinned(c, at) for c in split_commands(exec_form[2])]
        return [SimpleCommand(tuple(Word(a, at) for a in exec_form))] if exec_form else []

    def commands_in_place(self, step: Step) -> Iterator[tuple[SimpleCommand, Step]]:
        """The commands of a RUN step, each with the step as it runs: a `cd` earlier in the
        same RUN (`cd /app && python fetch.py`) moves the working folder."""
        workdir = step.workdir
        for command in self.run_commands(step):
            here = step if workdir == step.workdir else dataclasses.replace(step, workdir=workdir)
            if command.program == "cd" and len(command.argv) == 2:
                workdir = here.absolute(command.argv[1].text)
            yield command, here

    @staticmethod
    def python_heredoc(step: Step) -> tuple[str, int] | None:
        """The Python a RUN feeds through a heredoc (`RUN python3 <<EOF`, or `RUN <<EOF`
        with a python shebang), and the offset of its first character in `args`."""
        if step.keyword != "RUN" or step.commands is not None:
            return None
        first, newline, body = step.instruction.args.partition("\n")
        if not newline or not _HEREDOC.search(first):
            return None
        programs = [c for c in split_commands(first) if c.argv]
        runs_python = any(
            PYTHON_PROGRAM.fullmatch(c.program) and "-c" not in [w.text for w in c.argv] for c in programs
        )
        shebang = not programs and body.startswith("#!") and "python" in body.split("\n", 1)[0]
        return (body, len(first) + 1) if runs_python or shebang else None

    # -- facts about the whole file -------------------------------------------------------

    def mentions_mount_point(self) -> bool:
        """Whether an instruction (not a comment) names a mount point, or declares a VOLUME."""
        return bool(self.volumes) or any(m in i.args for i in self.instructions for m in self.mount_points)

    @cached_property
    def suppressions(self) -> Suppressions:
        """Directives in the comment lines right above an instruction (all its lines)
        or right above one of its continuation lines (that line). In a script, a
        directive also covers its own line (a trailing comment)."""
        if self.is_script:
            return self._script_suppressions()
        found = Suppressions()
        for instruction in self.instructions:
            for codes in self._directives_above(instruction.line):
                for line in range(instruction.line, instruction.end_line + 1):
                    found.add(line, codes)
            for line in range(instruction.line + 1, instruction.end_line + 1):
                for codes in self._directives_above(line):
                    found.add(line, codes)
        return found

    def _script_suppressions(self) -> Suppressions:
        found = Suppressions()
        for index, line in enumerate(self.lines):
            if "#" in line and (codes := parse_directive(line[line.index("#") :])) is not None:
                found.add(index + 1, codes)
                if line.lstrip().startswith("#"):
                    below = next((i for i in range(index + 1, len(self.lines)) if not self._is_comment(i)), None)
                    if below is not None:
                        found.add(below + 1, codes)
        return found

    def _is_comment(self, index: int) -> bool:
        return self.lines[index].lstrip().startswith("#")

    def _directives_above(self, line: int) -> Iterator[frozenset[str]]:
        index = line - 2
        while index >= 0 and self.lines[index].lstrip().startswith("#"):
            codes = parse_directive(self.lines[index])
            if codes is not None:
                yield codes
            index -= 1


def copy_operands(step: Step) -> tuple[list[Word], Word | None]:
    """The sources and the destination of a COPY or ADD step."""
    instruction = step.instruction
    exec_form = instruction.json_form()
    if exec_form is not None:
        _, at = instruction.flags()
        words = [Word(text, at) for text in exec_form]
    else:
        words = instruction.words()
    if len(words) < 2 or any(w.text.startswith("<<") for w in words):
        return [], None
    return words[:-1], words[-1]


def _shifted(command: SimpleCommand, delta: int) -> SimpleCommand:
    argv = tuple(Word(w.text, w.offset + delta) for w in command.argv)
    return SimpleCommand(argv, command.assignments)


def _pinned(command: SimpleCommand, offset: int) -> SimpleCommand:
    """Words of a JSON-form string have no place of their own: use the array's."""
    return SimpleCommand(tuple(Word(w.text, offset) for w in command.argv), command.assignments)
