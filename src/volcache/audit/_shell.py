"""A small POSIX shell reader: words with their offsets, split into simple commands.

It understands what `RUN` lines and `os.system(...)` strings use: quotes, backslashes,
`&&`, `||`, `;`, `|`, `&`, newlines, subshell parentheses, `#` comments, redirections and
leading `VAR=value` assignments. It never runs anything; `$(...)` and backquotes stay
inside their word unexpanded.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Callable, Iterator

_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# `python`, `python3`, `python3.11`: the interpreters a command line may run.
PYTHON_PROGRAM = re.compile(r"python(?:[0-9]+(?:\.[0-9]+)?)?")
SHELLS = frozenset({"sh", "bash", "dash", "zsh"})
# Words that may stand before a command without being it.
_PREFIX_WORDS = frozenset(
    {"if", "then", "else", "elif", "do", "while", "until", "!", "{", "time", "exec", "command", "nohup"}
)


@dataclasses.dataclass(frozen=True)
class Word:
    """One shell word after quote removal; `offset` is its first character in the source."""

    text: str
    offset: int


@dataclasses.dataclass(frozen=True)
class SimpleCommand:
    """One command: its arguments and the `VAR=value` assignments written before it."""

    argv: tuple[Word, ...]
    assignments: tuple[tuple[str, str], ...] = ()

    @property
    def program(self) -> str:
        """The command's name without its directory: `/usr/bin/cp` -> `cp`."""
        return posixpath.basename(self.argv[0].text) if self.argv else ""

    def env(self) -> dict[str, str]:
        return dict(self.assignments)


class _Lexer:
    """Turns shell text into a list of commands, each a list of words."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.commands: list[list[Word]] = [[]]
        self.buf: list[str] = []
        self.start: int | None = None
        self.skip_next_word = False

    def run(self) -> list[list[Word]]:
        while self.i < len(self.text):
            self._step(self.text[self.i])
        self._flush()
        return [c for c in self.commands if c]

    def _step(self, c: str) -> None:
        text, i = self.text, self.i
        if c in " \t\r":
            self._flush()
            self.i += 1
        elif c in "\n;()" or c in "&|":
            if c == "&" and text[i + 1 : i + 2] == ">":
                self._redirect()
                return
            self._flush()
            self.commands.append([])
            self.i += 2 if text[i : i + 2] in ("&&", "||", ";;", "|&") else 1
        elif c in "<>":
            self._redirect()
        elif c == "#" and self.start is None:
            end = text.find("\n", i)
            self.i = len(text) if end < 0 else end
        else:
            self._word_char(c)

    def _word_char(self, c: str) -> None:
        text, i = self.text, self.i
        if self.start is None:
            self.start = i
        if c == "'":
            end = text.find("'", i + 1)
            end = len(text) if end < 0 else end
            self.buf.append(text[i + 1 : end])
            self.i = end + 1
        elif c == '"':
            self._double_quoted()
        elif c == "\\":
            nxt = text[i + 1 : i + 2]
            if nxt != "\n":
                self.buf.append(nxt)
            self.i += 2
        elif c == "$" and text[i + 1 : i + 2] == "(":
            self._balanced(i + 1)
        elif c == "`":
            end = text.find("`", i + 1)
            end = len(text) if end < 0 else end
            self.buf.append(text[i : end + 1])
            self.i = end + 1
        else:
            self.buf.append(c)
            self.i += 1

    def _double_quoted(self) -> None:
        text = self.text
        j = self.i + 1
        while j < len(text) and text[j] != '"':
            if text[j] == "\\" and text[j + 1 : j + 2] in ('"', "\\", "$", "`", "\n"):
                if text[j + 1] != "\n":
                    self.buf.append(text[j + 1])
                j += 2
                continue
            self.buf.append(text[j])
            j += 1
        self.i = j + 1

    def _balanced(self, open_at: int) -> None:
        depth, j = 0, open_at
        while j < len(self.text):
            depth += {"(": 1, ")": -1}.get(self.text[j], 0)
            j += 1
            if depth == 0:
                break
        self.buf.append(self.text[self.i : j])
        self.i = j

    def _redirect(self) -> None:
        # `2>` : the digits before the operator name a file descriptor, not a word.
        if self.buf and "".join(self.buf).isdigit():
            self.buf, self.start = [], None
        self._flush()
        match = re.match(r"&>>?|[0-9]*(?:>>|>&|>\||<<<|<<-|<<|<&|<>|>|<)[0-9-]*", self.text[self.i :])
        step = match.end() if match else 1
        operator = self.text[self.i : self.i + step]
        self.i += step
        # `>&2` and `2>&1` name a descriptor; every other redirection takes the next word.
        self.skip_next_word = not re.search(r"&[0-9-]+$", operator)

    def _flush(self) -> None:
        if self.start is None:
            return
        word = Word("".join(self.buf), self.start)
        self.buf, self.start = [], None
        if self.skip_next_word:
            self.skip_next_word = False
            return
        self.commands[-1].append(word)


def _strip_prefixes(words: list[Word]) -> tuple[list[Word], list[tuple[str, str]]]:
    assignments: list[tuple[str, str]] = []
    while words:
        head = words[0].text
        if _ASSIGNMENT.match(head):
            name, _, value = head.partition("=")
            assignments.append((name, value))
        elif head in _PREFIX_WORDS:
            pass
        elif head in ("sudo", "env"):
            while len(words) > 1 and words[1].text.startswith("-"):
                words = words[1:]
        else:
            break
        words = words[1:]
    return words, assignments


def split_words(text: str) -> list[Word]:
    """Every word of `text`, across command separators, with nothing stripped."""
    return [w for words in _Lexer(text).run() for w in words]


def split_commands(text: str, keep_assignments: bool = False) -> list[SimpleCommand]:
    """The simple commands in shell `text`, in order. With `keep_assignments`, a line that
    only sets variables (`MODEL_DIR=/x`) is kept as a command with no words, so a script
    reader can follow the variables a script sets."""
    result = []
    for words in _Lexer(text).run():
        argv, assignments = _strip_prefixes(words)
        if argv or (keep_assignments and assignments):
            result.append(SimpleCommand(tuple(argv), tuple(assignments)))
    return result


# Options whose next word is a value, not a file to copy.
_VALUE_OPTIONS = {
    "cp": frozenset({"-S", "--suffix"}),
    "rsync": frozenset(
        {"-e", "--rsh", "-f", "--filter", "--exclude", "--include", "--exclude-from", "--include-from",
         "--files-from", "--chmod", "--chown", "--log-file", "--out-format", "--max-size", "--min-size",
         "--bwlimit", "--timeout", "--port", "--password-file", "-T", "--temp-dir", "--partial-dir"}
    ),
    "tar": frozenset(
        {"-X", "--exclude", "--exclude-from", "-T", "--files-from", "-b", "--blocking-factor", "--owner",
         "--group", "--mode", "--transform", "--xform", "-H", "--format"}
    ),
}  # fmt: skip
COPY_PROGRAMS = frozenset(_VALUE_OPTIONS)


def _operands(program: str, args: tuple[Word, ...]) -> Iterator[Word]:
    value_options = _VALUE_OPTIONS.get(program, frozenset())
    skip = False
    options_done = False
    for word in args:
        if skip:
            skip = False
        elif options_done or not word.text.startswith("-") or word.text == "-":
            yield word
        elif word.text == "--":
            options_done = True
        else:
            skip = word.text in value_options


def _makes_links(cmd: SimpleCommand) -> bool:
    """`cp -l` and `cp -s` link instead of copying bytes."""
    for word in cmd.argv[1:]:
        text = word.text
        if text in ("--link", "--symbolic-link"):
            return True
        if re.fullmatch(r"-[A-Za-z]+", text) and ("l" in text or "s" in text):
            return True
    return False


def _tar_creates(cmd: SimpleCommand) -> bool:
    args = [w.text for w in cmd.argv[1:]]
    if args and not args[0].startswith("-") and "c" in args[0]:
        return True  # old-style bundle: `tar czf out.tgz dir`
    return any(a == "--create" or re.fullmatch(r"-[A-Za-z]*c[A-Za-z]*", a) for a in args)


def copied_model_operands(
    cmd: SimpleCommand, is_model: Callable[[str], bool], expand: Callable[[str], str] = str
) -> list[Word]:
    """The operands of a `cp`, `rsync` or `tar --create` that are model locations.

    `cp -l`/`cp -s` (links, not copies) and `tar` extraction (how downloaded weights
    arrive) give nothing.
    """
    program = cmd.program
    if program not in COPY_PROGRAMS:
        return []
    if (program == "cp" and _makes_links(cmd)) or (program == "tar" and not _tar_creates(cmd)):
        return []
    return [w for w in _operands(program, cmd.argv[1:]) if is_model(expand(w.text))]


def option_value(cmd: SimpleCommand, *names: str) -> Word | None:
    """The value of option `--name value` or `--name=value` (the last one wins)."""
    found: Word | None = None
    argv = cmd.argv
    for index, word in enumerate(argv):
        for name in names:
            if word.text == name and index + 1 < len(argv):
                found = argv[index + 1]
            elif word.text.startswith(name + "=") and name.startswith("--"):
                found = Word(word.text[len(name) + 1 :], word.offset + len(name) + 1)
    return found


HUB_CLIS = frozenset({"hf", "huggingface-cli"})


def local_dir_option(cmd: SimpleCommand) -> Word | None:
    """The `--local-dir` word of `hf download` / `huggingface-cli download`, if given."""
    if cmd.program not in HUB_CLIS or [w.text for w in cmd.argv[1:2]] != ["download"]:
        return None
    value = option_value(cmd, "--local-dir")
    if value is None or not value.text:
        return None
    return next(w for w in reversed(cmd.argv) if w.text == "--local-dir" or w.text.startswith("--local-dir="))
