"""A small taint-like resolver: what path a Python expression names, as far as the file says.

It follows string literals, f-strings, `+`, `%` and `.format()`, `os.path.join`, `Path(...)`
and `/` joins, `os.environ[...]` (spelled `$NAME`), `os.getenv(NAME, default)` and
`os.environ.get(NAME, default)` (spelled `${NAME:-default}`, so both are kept), names
assigned in the same scope before the use (the latest assignment wins), names of enclosing
scopes, loop variables over literal lists, tuples and dicts, constants imported from a
sibling module (`from .config import MODEL_DIR`, read from that file), the return value
of `hf_hub_download` / `snapshot_download` (a path inside the Hub cache), and parameters
of functions in the same file through their default and their call sites (`f(x)` for a
plain function that is not shadowed by an import, `self.f(x)` for a method). It does not
follow attributes (`self.cache_dir`, `settings.home`), other return values or containers
built at run time: those are unknown, and a rule that sees an unknown path stays silent.
Unknown parts of a known path are spelled `*` (`f"{base}/models"` -> `*/models`).
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Iterator

from ._locations import UNKNOWN, env_reference, is_model_location
from ._python import Binding, Imported, PythonModule, Scope, keyword_value, position
from ._siblings import sibling_module

_PATH_TYPES = frozenset({"pathlib.Path", "pathlib.PurePath", "pathlib.PosixPath", "pathlib.PurePosixPath"})
_JOINS = frozenset({"os.path.join", "posixpath.join"})
_SAME_PATH = frozenset({"os.path.expanduser", "os.path.abspath", "os.path.realpath", "os.path.normpath", "os.fspath"})
_ENV_GETTERS = frozenset({"os.getenv", "os.environ.get", "os.environ.setdefault"})
_SAME_PATH_METHODS = frozenset({"resolve", "absolute", "expanduser", "as_posix"})
_ENV_READ_CALLS = frozenset({"os.getenv", "os.environ.get", "os.environ.pop"})
_ENV_WRITE_CALLS = frozenset({"os.environ.setdefault", "os.putenv"})
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
_PERCENT_FIELD = re.compile(r"%[-#0 +]*[0-9]*(?:\.[0-9]+)?[sdrif]")
_FORMAT_FIELD = re.compile(r"\{[^{}]*\}")
_MAX_DEPTH = 8
_HUB_DOWNLOADS = frozenset({"hf_hub_download", "snapshot_download"})
_STATIC = frozenset({"staticmethod"})
_SELF = frozenset({"self", "cls"})


def choose(candidates: list[str | None]) -> str | None:
    """One value for a name that may hold several: the first model location (a rule asks
    whether any of them is one), else the only known value, else None."""
    models = [c for c in candidates if is_model_location(c)]
    if models:
        return models[0]
    known = {c for c in candidates if c is not None}
    return known.pop() if len(known) == 1 else None


def join(parts: list[str]) -> str:
    """`os.path.join` on resolved parts: an absolute part starts over."""
    result = ""
    for part in parts:
        result = part if part.startswith("/") or not result else result.rstrip("/") + "/" + part
    return result


@dataclasses.dataclass(frozen=True)
class EnvAccess:
    """A read or write of environment variable `name` at `node`; `value` is what a write
    sets, where the code says."""

    node: ast.AST
    name: str
    writes: bool
    value: ast.expr | None = None


class Resolver:
    """Resolves expressions of one module to the paths they name."""

    def __init__(self, module: PythonModule) -> None:
        self.module = module
        self._calls_by_name: dict[str, list[ast.Call]] | None = None
        self._env: list[EnvAccess] | None = None
        self._assigned: dict[int, ast.expr] = {}
        # What a parameter or a binding resolves to, computed once: call sites fan out, and a
        # chain of functions that pass a path on would otherwise be walked exponentially.
        # A key is set to None while its value is computed, which also stops recursion.
        self._memo: dict[tuple[int, str], str | None] = {}

    # -- public ---------------------------------------------------------------------------

    def value(self, expr: ast.expr) -> str | None:
        """The path `expr` names (unknown parts `*`), or None when nothing is known."""
        return self._value(expr, self.module.scope_of(expr), position(expr), 0)

    def sequence(self, expr: ast.expr) -> list[ast.expr] | None:
        """The elements of a list/tuple/set literal, or of one a plain name was last bound to."""
        if isinstance(expr, ast.List | ast.Tuple | ast.Set):
            return list(expr.elts)
        if isinstance(expr, ast.Name):
            bindings = self.module.scope_of(expr).bindings.get(expr.id, [])
            before = [b for b in bindings if b.at < position(expr)]
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
            assigned: dict[int, ast.expr] = {}
            for node in self.module.nodes:
                if isinstance(node, ast.Assign):
                    assigned.update({id(t): node.value for t in node.targets})
            self._assigned = assigned
            self._env = [a for node in self.module.nodes for a in self._env_access(node)]
        return self._env

    # -- expressions ----------------------------------------------------------------------

    def _value(self, expr: ast.expr, scope: Scope, line: float, depth: int) -> str | None:
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
        if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
            return self._module_attribute(expr, depth)
        return None

    def _module_attribute(self, expr: ast.Attribute, depth: int) -> str | None:
        """`config.MODEL_DIR` after `import config`: the constant of a sibling module."""
        assert isinstance(expr.value, ast.Name)
        target = self.module.aliases.get(expr.value.id)
        if target is None or target != expr.value.id:
            return None  # `import config`, not `import pkg.config as c` or a from-import
        return self._imported(Imported(target, expr.attr, 0), depth)

    def _fstring(self, expr: ast.JoinedStr, scope: Scope, line: float, depth: int) -> str | None:
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

    def _binop(self, expr: ast.BinOp, scope: Scope, line: float, depth: int) -> str | None:
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

    def _call(self, call: ast.Call, scope: Scope, line: float, depth: int) -> str | None:
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
            default_expr = call.args[1] if len(call.args) > 1 else keyword_value(call, "default")
            default = self._value(default_expr, scope, line, depth + 1) if default_expr is not None else None
            return env_reference(key, default) if key and _VARIABLE.fullmatch(key) else None
        if self._is_hub_download(call, name):
            return self._download_result(call, scope, line, depth)
        if name == "pathlib.Path.home":
            return "~"
        if isinstance(call.func, ast.Attribute):
            return self._method(call, args, scope, line, depth)
        return None

    def _method(self, call: ast.Call, args: list[str | None], scope: Scope, line: float, depth: int) -> str | None:
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

    def _is_hub_download(self, call: ast.Call, name: str | None) -> bool:
        if name is not None:
            return name.startswith("huggingface_hub.") and name.rsplit(".", 1)[-1] in _HUB_DOWNLOADS
        # `HfApi().snapshot_download(...)`, `api.hf_hub_download(...)` in a file that uses the client
        return (
            isinstance(call.func, ast.Attribute)
            and call.func.attr in _HUB_DOWNLOADS
            and any(t.startswith("huggingface_hub") for t in self.module.aliases.values())
        )

    def _download_result(self, call: ast.Call, scope: Scope, line: float, depth: int) -> str | None:
        """Where `hf_hub_download`/`snapshot_download` put what they return: a snapshot of
        the Hub cache (`$HF_HUB_CACHE/models--org--name/snapshots/*/file`), or `local_dir`."""
        assert isinstance(call.func, ast.Name | ast.Attribute)
        repo_type = keyword_value(call, "repo_type")
        if repo_type is not None and not (isinstance(repo_type, ast.Constant) and repo_type.value in (None, "model")):
            return None  # a dataset or a Space: not model weights, as far as the file says
        function = call.func.id if isinstance(call.func, ast.Name) else call.func.attr
        single_file = (self.module.qualname(call.func) or function).endswith("hf_hub_download")

        def known(index: int, keyword: str) -> str | None:
            expr = call.args[index] if index < len(call.args) else keyword_value(call, keyword)
            return self._value(expr, scope, line, depth + 1) if expr is not None else None

        filename = known(1, "filename") if single_file else None
        subfolder = keyword_value(call, "subfolder")
        sub = self._value(subfolder, scope, line, depth + 1) if subfolder is not None else None
        file_part = join([p for p in (sub, filename or UNKNOWN) if p]) if single_file else None
        local_dir = keyword_value(call, "local_dir")
        local = self._value(local_dir, scope, line, depth + 1) if local_dir is not None else None
        if local is not None:
            return join([local, file_part]) if file_part else local
        cache_dir = keyword_value(call, "cache_dir")
        cache = self._value(cache_dir, scope, line, depth + 1) if cache_dir is not None else None
        repo = known(0, "repo_id")
        folder = "models--" + repo.replace("/", "--") if repo and _REPO_ID.fullmatch(repo) else "models--*"
        snapshot = join([cache or env_reference("HF_HUB_CACHE"), folder, "snapshots", UNKNOWN])
        return join([snapshot, file_part]) if file_part else snapshot

    def _is_builtin_str(self, func: ast.expr) -> bool:
        return isinstance(func, ast.Name) and func.id == "str" and "str" not in self.module.aliases

    # -- names ----------------------------------------------------------------------------

    def _name(self, name: str, scope: Scope, line: float, depth: int) -> str | None:
        current: Scope | None = scope
        same_scope = True
        while current is not None:
            bindings = current.bindings.get(name, [])
            if same_scope:
                before = [b for b in bindings if b.at < line]
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
        key = (id(binding), "")
        if key not in self._memo:
            self._memo[key] = None
            self._memo[key] = self._bound_value(binding, depth)
        return self._memo[key]

    def _bound_value(self, binding: Binding, depth: int) -> str | None:
        if binding.loop is not None:
            return self._loop_value(binding, depth)
        if binding.imported is not None:
            return self._imported(binding.imported, depth)
        if binding.value is None:
            return None
        value = binding.value
        return self._value(value, self.module.scope_of(value), binding.at, depth + 1)

    def _loop_value(self, binding: Binding, depth: int) -> str | None:
        """A loop variable over a literal list, tuple, set or dict (`.items()`, `.values()`,
        `.keys()`): one of the values it takes (see `choose`)."""
        assert binding.loop is not None
        items = self._iterated(binding.loop)
        if items is None:
            return None
        candidates: list[str | None] = []
        for item in items:
            picked: ast.expr | None = item
            for place in binding.index:
                inside = isinstance(picked, ast.Tuple | ast.List) and place < len(picked.elts)
                picked = picked.elts[place] if inside and isinstance(picked, ast.Tuple | ast.List) else None
                if picked is None:
                    break
            if picked is not None:
                candidates.append(self._value(picked, self.module.scope_of(binding.loop), binding.at, depth + 1))
        return choose(candidates)

    def _iterated(self, expr: ast.expr) -> list[ast.expr] | None:
        method = None
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and not expr.args:
            method, expr = expr.func.attr, expr.func.value
        literal = self._literal(expr)
        if isinstance(literal, ast.Dict):
            keys = [k for k in literal.keys if k is not None]
            if method == "items" and len(keys) == len(literal.values):
                return [ast.Tuple(elts=[k, v], ctx=ast.Load()) for k, v in zip(keys, literal.values, strict=True)]
            return list(literal.values) if method == "values" else keys if method in (None, "keys") else None
        if isinstance(literal, ast.List | ast.Tuple | ast.Set) and method is None:
            return list(literal.elts)
        return None

    def _literal(self, expr: ast.expr) -> ast.expr | None:
        """A list/tuple/set/dict literal, written here or last bound to a plain name."""
        if isinstance(expr, ast.List | ast.Tuple | ast.Set | ast.Dict):
            return expr
        if not isinstance(expr, ast.Name):
            return None
        current: Scope | None = self.module.scope_of(expr)
        same_scope = True
        while current is not None:
            bindings = current.bindings.get(expr.id, [])
            if same_scope:
                bindings = [b for b in bindings if b.at < position(expr)]
            if bindings:
                value = bindings[-1].value
                return value if isinstance(value, ast.List | ast.Tuple | ast.Set | ast.Dict) else None
            current, same_scope = self._enclosing(current), False
        return None

    def _imported(self, imported: Imported, depth: int) -> str | None:
        """A module-level constant of a sibling module of the same project."""
        if self.module.source is None or depth > _MAX_DEPTH:
            return None
        other = sibling_module(self.module.source, imported.module, imported.level, self.module.mount_points)
        if other is None:
            return None
        bindings = other.module_scope.bindings.get(imported.name, [])
        return other.resolver._binding(bindings[-1], depth + 1) if bindings else None

    def _param(self, name: str, scope: Scope, depth: int) -> str | None:
        key = (id(scope.node), name)
        if key not in self._memo:
            self._memo[key] = None
            self._memo[key] = self._param_value(name, scope, depth)
        return self._memo[key]

    def _param_value(self, name: str, scope: Scope, depth: int) -> str | None:
        candidates: list[str | None] = []
        default = scope.defaults.get(name)
        if default is not None:
            candidates.append(self._value(default, self.module.scope_of(default), position(default), depth + 1))
        for arg in self._call_site_arguments(name, scope):
            candidates.append(self._value(arg, self.module.scope_of(arg), position(arg), depth + 1))
        return choose(candidates)

    def _call_site_arguments(self, name: str, scope: Scope) -> Iterator[ast.expr]:
        node = scope.node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return
        if len(self.module.functions.get(node.name, [])) != 1:
            return  # two functions of that name: which one a call reaches is unknown
        positional = [a.arg for a in (*node.args.posonlyargs, *node.args.args)]
        if scope.is_method:
            calls = self._method_calls_to(node.name)
            if not any(isinstance(d, ast.Name) and d.id in _STATIC for d in node.decorator_list):
                positional = positional[1:]  # `self.f(a)` passes `a` to the second parameter
        elif node.name in self.module.aliases:
            return  # an imported function of that name is what a plain call reaches
        else:
            calls = self._calls_to(node.name)
        for call in calls:
            if any(isinstance(a, ast.Starred) for a in call.args):
                continue
            keyword = next((k.value for k in call.keywords if k.arg == name), None)
            if keyword is not None:
                yield keyword
            elif name in positional and positional.index(name) < len(call.args):
                yield call.args[positional.index(name)]

    def _calls_to(self, function: str) -> list[ast.Call]:
        """Calls `function(...)` of a plain name."""
        if self._calls_by_name is None:
            self._index_calls()
        assert self._calls_by_name is not None
        return self._calls_by_name.get(function, [])

    def _method_calls_to(self, method: str) -> list[ast.Call]:
        """Calls `self.method(...)` and `cls.method(...)`."""
        if self._calls_by_name is None:
            self._index_calls()
        assert self._calls_by_name is not None
        return self._calls_by_name.get("self." + method, [])

    def _index_calls(self) -> None:
        self._calls_by_name = {}
        for node in self.module.nodes:
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name):
                self._calls_by_name.setdefault(func.id, []).append(node)
            elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in _SELF:
                self._calls_by_name.setdefault("self." + func.attr, []).append(node)

    # -- environment ----------------------------------------------------------------------

    def _env_access(self, node: ast.AST) -> Iterator[EnvAccess]:
        qualname = self.module.qualname
        if isinstance(node, ast.Subscript) and qualname(node.value) == "os.environ":
            name = self.name_of(node.slice)
            if name and not isinstance(node.ctx, ast.Del):
                writes = isinstance(node.ctx, ast.Store)
                yield EnvAccess(node, name, writes, self._assigned.get(id(node)) if writes else None)
        elif isinstance(node, ast.Call):
            func = qualname(node.func)
            if (func in _ENV_READ_CALLS or func in _ENV_WRITE_CALLS) and node.args:
                name = self.name_of(node.args[0])
                if name:
                    writes = func in _ENV_WRITE_CALLS
                    value = node.args[1] if writes and len(node.args) > 1 else None
                    yield EnvAccess(node, name, writes, value)
            elif func == "os.environ.update":
                yield from self._env_update(node)
        elif isinstance(node, ast.Compare) and _is_membership(node) and qualname(node.comparators[0]) == "os.environ":
            name = self.name_of(node.left)
            if name:
                yield EnvAccess(node, name, writes=False)

    def _env_update(self, call: ast.Call) -> Iterator[EnvAccess]:
        for arg in call.args:
            if isinstance(arg, ast.Dict):
                for key, value in zip(arg.keys, arg.values, strict=True):
                    name = self.name_of(key) if key is not None else None
                    if key is not None and name:
                        yield EnvAccess(key, name, True, value)
        for keyword in call.keywords:
            if keyword.arg:
                yield EnvAccess(keyword, keyword.arg, True, keyword.value)


def _is_membership(node: ast.Compare) -> bool:
    """`x in y` or `x not in y`."""
    return len(node.ops) == 1 and isinstance(node.ops[0], ast.In | ast.NotIn)
