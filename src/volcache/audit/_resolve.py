"""A small taint-like resolver: what path a Python expression names, as far as the file says.

It follows string literals, f-strings, `+`, `%` and `.format()`, `os.path.join`, `Path(...)`
and `/` joins, `os.environ[...]`, `os.getenv(...)` and `os.environ.get(...)` (spelled
`$NAME`), names assigned in the same scope before the use (the latest assignment wins),
names of enclosing scopes, and parameters of functions in the same file through their
default and their call sites (`f(x)` with `f` a plain name). It does not follow attributes
(`self.cache_dir`, `settings.home`), return values, containers or other files: those are
unknown, and a rule that sees an unknown path stays silent. Unknown parts of a known path
are spelled `*` (`f"{base}/models"` -> `*/models`).
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Iterator

from ._locations import UNKNOWN, env_reference, is_model_location
from ._python import Binding, PythonModule, Scope

_PATH_TYPES = frozenset({"pathlib.Path", "pathlib.PurePath", "pathlib.PosixPath", "pathlib.PurePosixPath"})
_JOINS = frozenset({"os.path.join", "posixpath.join"})
_SAME_PATH = frozenset({"os.path.expanduser", "os.path.abspath", "os.path.realpath", "os.path.normpath", "os.fspath"})
_ENV_GETTERS = frozenset({"os.getenv", "os.environ.get", "os.environ.setdefault"})
_SAME_PATH_METHODS = frozenset({"resolve", "absolute", "expanduser", "as_posix"})
_ENV_READ_CALLS = frozenset({"os.getenv", "os.environ.get", "os.environ.pop"})
_ENV_WRITE_CALLS = frozenset({"os.environ.setdefault", "os.putenv"})
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PERCENT_FIELD = re.compile(r"%[-#0 +]*[0-9]*(?:\.[0-9]+)?[sdrif]")
_FORMAT_FIELD = re.compile(r"\{[^{}]*\}")
_MAX_DEPTH = 8


def join(parts: list[str]) -> str:
    """`os.path.join` on resolved parts: an absolute part starts over."""
    result = ""
    for part in parts:
        result = part if part.startswith("/") or not result else result.rstrip("/") + "/" + part
    return result


@dataclasses.dataclass(frozen=True)
class EnvAccess:
    """A read or write of environment variable `name` at `node`."""

    node: ast.AST
    name: str
    writes: bool


class Resolver:
    """Resolves expressions of one module to the paths they name."""

    def __init__(self, module: PythonModule) -> None:
        self.module = module
        self._calls_by_name: dict[str, list[ast.Call]] | None = None
        self._env: list[EnvAccess] | None = None

    # -- public ---------------------------------------------------------------------------

    def value(self, expr: ast.expr) -> str | None:
        """The path `expr` names (unknown parts `*`), or None when nothing is known."""
        return self._value(expr, self.module.scope_of(expr), expr.lineno, 0)

    def sequence(self, expr: ast.expr) -> list[ast.expr] | None:
        """The elements of a list/tuple/set literal, or of one a plain name was last bound to."""
        if isinstance(expr, ast.List | ast.Tuple | ast.Set):
            return list(expr.elts)
        if isinstance(expr, ast.Name):
            bindings = self.module.scope_of(expr).bindings.get(expr.id, [])
            before = [b for b in bindings if b.line < expr.lineno]
            if before and isinstance(before[-1].value, ast.List | ast.Tuple | ast.Set):
                return list(before[-1].value.elts)
        return None

    def name_of(self, expr: ast.expr) -> str | None:
        """`expr` as an identifier-like string (an env variable name), if fully known."""
        text = self.value(expr)
        return text if text and _VARIABLE.fullmatch(text) else None

    def env_accesses(self) -> list[EnvAccess]:
        """Reads and writes of environment variables whose name can be known."""
        if self._env is None:
            self._env = [a for node in self.module.nodes for a in self._env_access(node)]
        return self._env

    # -- expressions ----------------------------------------------------------------------

    def _value(self, expr: ast.expr, scope: Scope, line: int, depth: int) -> str | None:
        if depth > _MAX_DEPTH:
            return None
        if isinstance(expr, ast.Constant):
            return expr.value if isinstance(expr.value, str) else None
        if isinstance(expr, ast.JoinedStr):
            return self._fstring(expr, scope, line, depth)
        if isinstance(expr, ast.BinOp):
            return self._binop(expr, scope, line, depth)
        if isinstance(expr, ast.BoolOp) and isinstance(expr.op, ast.Or):
            values = (self._value(v, scope, line, depth) for v in expr.values)
            return next((v for v in values if v is not None), None)
        if isinstance(expr, ast.Name):
            return self._name(expr.id, scope, line, depth)
        if isinstance(expr, ast.Subscript) and self.module.qualname(expr.value) == "os.environ":
            key = self._value(expr.slice, scope, line, depth + 1)
            return env_reference(key) if key and _VARIABLE.fullmatch(key) else None
        if isinstance(expr, ast.Call):
            return self._call(expr, scope, line, depth)
        return None

    def _fstring(self, expr: ast.JoinedStr, scope: Scope, line: int, depth: int) -> str | None:
        parts: list[str] = []
        known = False
        for part in expr.values:
            if isinstance(part, ast.Constant) and isinstance(part.value, str):
                parts.append(part.value)
                known = True
            elif isinstance(part, ast.FormattedValue):
                inner = self._value(part.value, scope, line, depth + 1)
                known = known or inner is not None
                parts.append(UNKNOWN if inner is None else inner)
        return "".join(parts) if known else None

    def _binop(self, expr: ast.BinOp, scope: Scope, line: int, depth: int) -> str | None:
        left = self._value(expr.left, scope, line, depth + 1)
        if isinstance(expr.op, ast.Mod):
            return _PERCENT_FIELD.sub(UNKNOWN, left) if left is not None else None
        right = self._value(expr.right, scope, line, depth + 1)
        if left is None and right is None:
            return None
        if isinstance(expr.op, ast.Add):
            return (UNKNOWN if left is None else left) + (UNKNOWN if right is None else right)
        if isinstance(expr.op, ast.Div):
            return join([UNKNOWN if left is None else left, UNKNOWN if right is None else right])
        return None

    def _call(self, call: ast.Call, scope: Scope, line: int, depth: int) -> str | None:
        if any(isinstance(a, ast.Starred) for a in call.args):
            return None
        name = self.module.qualname(call.func)
        args = [self._value(a, scope, line, depth + 1) for a in call.args]
        if name in _PATH_TYPES or name in _JOINS:
            if not args:
                return "." if name in _PATH_TYPES else None
            return join([UNKNOWN if a is None else a for a in args]) if any(a is not None for a in args) else None
        if name in _SAME_PATH or self._is_builtin_str(call.func):
            return args[0] if args else None
        if name in _ENV_GETTERS:
            key = args[0] if args else None
            return env_reference(key) if key and _VARIABLE.fullmatch(key) else None
        if name == "pathlib.Path.home":
            return "~"
        if isinstance(call.func, ast.Attribute):
            return self._method(call, args, scope, line, depth)
        return None

    def _method(self, call: ast.Call, args: list[str | None], scope: Scope, line: int, depth: int) -> str | None:
        assert isinstance(call.func, ast.Attribute)
        method, receiver = call.func.attr, call.func.value
        if method == "join" and isinstance(receiver, ast.Constant) and isinstance(receiver.value, str):
            items = call.args[0] if len(call.args) == 1 else None
            if isinstance(items, ast.List | ast.Tuple):
                values = [self._value(e, scope, line, depth + 1) for e in items.elts]
                return receiver.value.join(UNKNOWN if v is None else v for v in values)
            return None
        base = self._value(receiver, scope, line, depth + 1)
        if base is None:
            return None
        if method in _SAME_PATH_METHODS and not call.args:
            return base
        if method == "joinpath":
            return join([base, *(UNKNOWN if a is None else a for a in args)])
        if method == "format":
            return _FORMAT_FIELD.sub(UNKNOWN, base)
        return None

    def _is_builtin_str(self, func: ast.expr) -> bool:
        return isinstance(func, ast.Name) and func.id == "str" and "str" not in self.module.aliases

    # -- names ----------------------------------------------------------------------------

    def _name(self, name: str, scope: Scope, line: int, depth: int) -> str | None:
        current: Scope | None = scope
        same_scope = True
        while current is not None:
            bindings = current.bindings.get(name, [])
            if same_scope:
                before = [b for b in bindings if b.line < line]
                if before:
                    return self._binding(before[-1], depth)
                if name in current.params:
                    return self._param(name, current, depth)
                if bindings and current.is_function:
                    return None  # a local assigned only later: unbound here
            else:
                if bindings:
                    return self._binding(bindings[-1], depth)
                if name in current.params:
                    return self._param(name, current, depth)
            current = self._enclosing(current)
            same_scope = False
        return None

    @staticmethod
    def _enclosing(scope: Scope) -> Scope | None:
        parent = scope.parent
        # A function body does not see the names of the class around it.
        while parent is not None and isinstance(parent.node, ast.ClassDef) and scope.is_function:
            parent = parent.parent
        return parent

    def _binding(self, binding: Binding, depth: int) -> str | None:
        if binding.value is None:
            return None
        value = binding.value
        return self._value(value, self.module.scope_of(value), binding.line, depth + 1)

    def _param(self, name: str, scope: Scope, depth: int) -> str | None:
        candidates: list[str | None] = []
        default = scope.defaults.get(name)
        if default is not None:
            candidates.append(self._value(default, self.module.scope_of(default), default.lineno, depth + 1))
        for arg in self._call_site_arguments(name, scope):
            candidates.append(self._value(arg, self.module.scope_of(arg), arg.lineno, depth + 1))
        models = [c for c in candidates if is_model_location(c)]
        if models:
            return models[0]
        known = {c for c in candidates if c is not None}
        return known.pop() if len(known) == 1 else None

    def _call_site_arguments(self, name: str, scope: Scope) -> Iterator[ast.expr]:
        node = scope.node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return
        if len(self.module.functions.get(node.name, [])) != 1:
            return  # two functions of that name: which one a call reaches is unknown
        positional = [a.arg for a in (*node.args.posonlyargs, *node.args.args)]
        for call in self._calls_to(node.name):
            if any(isinstance(a, ast.Starred) for a in call.args):
                continue
            keyword = next((k.value for k in call.keywords if k.arg == name), None)
            if keyword is not None:
                yield keyword
            elif name in positional and positional.index(name) < len(call.args):
                yield call.args[positional.index(name)]

    def _calls_to(self, function: str) -> list[ast.Call]:
        if self._calls_by_name is None:
            self._calls_by_name = {}
            for node in self.module.nodes:
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    self._calls_by_name.setdefault(node.func.id, []).append(node)
        return self._calls_by_name.get(function, [])

    # -- environment ----------------------------------------------------------------------

    def _env_access(self, node: ast.AST) -> Iterator[EnvAccess]:
        qualname = self.module.qualname
        if isinstance(node, ast.Subscript) and qualname(node.value) == "os.environ":
            name = self.name_of(node.slice)
            if name and not isinstance(node.ctx, ast.Del):
                yield EnvAccess(node, name, writes=isinstance(node.ctx, ast.Store))
        elif isinstance(node, ast.Call):
            func = qualname(node.func)
            if (func in _ENV_READ_CALLS or func in _ENV_WRITE_CALLS) and node.args:
                name = self.name_of(node.args[0])
                if name:
                    yield EnvAccess(node, name, writes=func in _ENV_WRITE_CALLS)
            elif func == "os.environ.update":
                yield from self._env_update(node)
        elif isinstance(node, ast.Compare) and _is_membership(node) and qualname(node.comparators[0]) == "os.environ":
            name = self.name_of(node.left)
            if name:
                yield EnvAccess(node, name, writes=False)

    def _env_update(self, call: ast.Call) -> Iterator[EnvAccess]:
        for arg in call.args:
            if isinstance(arg, ast.Dict):
                for key in arg.keys:
                    name = self.name_of(key) if key is not None else None
                    if key is not None and name:
                        yield EnvAccess(key, name, writes=True)
        for keyword in call.keywords:
            if keyword.arg:
                yield EnvAccess(keyword, keyword.arg, writes=True)


def _is_membership(node: ast.Compare) -> bool:
    """`x in y` or `x not in y`."""
    return len(node.ops) == 1 and isinstance(node.ops[0], ast.In | ast.NotIn)
