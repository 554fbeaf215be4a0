"""A parsed Python file as the rules see it: the tree, its scopes and bindings, its imports.

The file is parsed with `ast` and its comments read with `tokenize`; nothing is imported
or run.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import tokenize
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from ._grammar import parse
from ._locations import DEFAULT_MOUNT_POINTS
from ._suppress import Suppressions, parse_directive

if TYPE_CHECKING:
    from ._resolve import Resolver

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
ScopeNode = ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda


@dataclasses.dataclass(frozen=True)
class Imported:
    """`from module import name` (`level` leading dots): a constant another file may hold."""

    module: str
    name: str
    level: int


@dataclasses.dataclass(frozen=True)
class Binding:
    """A name bound at `line`; `value` is None where the bound value cannot be known.

    A loop variable has `loop` (what the loop iterates) and `index` (where the name sits in
    a tuple target: `for name, path in ...` binds `path` at `(1,)`); a name imported from
    another module has `imported`."""

    line: int
    value: ast.expr | None
    loop: ast.expr | None = None
    index: tuple[int, ...] = ()
    imported: Imported | None = None
    # Where the binding takes effect, as `position()` counts: the end of its statement, so
    # `x = "/a"; use(x)` on one line sees it and `x = f(x)` does not.
    at: float = 0.0


def position(node: ast.AST) -> float:
    """A node's start as one comparable number: line, then column."""
    line: int = getattr(node, "lineno", 0)
    col: int = getattr(node, "col_offset", 0)
    return line + col / 1_000_000


def end_position(node: ast.AST) -> float:
    """A node's end as `position` counts."""
    end_line: int | None = getattr(node, "end_lineno", None)
    end_col: int | None = getattr(node, "end_col_offset", None)
    line = end_line if end_line is not None else int(getattr(node, "lineno", 0))
    col = end_col if end_col is not None else 0
    return line + col / 1_000_000


@dataclasses.dataclass
class Scope:
    """A module, function, class or lambda body and the names it binds, in order."""

    node: ScopeNode
    parent: Scope | None
    bindings: dict[str, list[Binding]] = dataclasses.field(default_factory=dict)
    params: list[str] = dataclasses.field(default_factory=list)
    defaults: dict[str, ast.expr] = dataclasses.field(default_factory=dict)

    def bind(self, name: str, line: int, value: ast.expr | None, at: float | None = None) -> None:
        self.bindings.setdefault(name, []).append(Binding(line, value, at=float(line) if at is None else at))

    def add(self, name: str, binding: Binding) -> None:
        self.bindings.setdefault(name, []).append(binding)

    @property
    def is_method(self) -> bool:
        return self.is_function and self.parent is not None and isinstance(self.parent.node, ast.ClassDef)

    @property
    def is_function(self) -> bool:
        return isinstance(self.node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)


class _ScopeBuilder(ast.NodeVisitor):
    """Records every binding per scope and which scope each node belongs to."""

    def __init__(self, tree: ast.Module) -> None:
        self.module_scope = Scope(tree, None)
        self.scope_of: dict[ast.AST, Scope] = {}
        self.functions: dict[str, list[tuple[FunctionNode, Scope]]] = {}
        self._scope = self.module_scope
        self.generic_visit(tree)

    def visit(self, node: ast.AST) -> None:
        self.scope_of[node] = self._scope
        super().visit(node)

    def _enter(self, scope: Scope, nodes: list[ast.stmt] | list[ast.expr]) -> None:
        outer, self._scope = self._scope, scope
        for child in nodes:
            self.visit(child)
        self._scope = outer

    def _function(self, node: FunctionNode | ast.Lambda) -> Scope:
        for default in [*node.args.defaults, *[d for d in node.args.kw_defaults if d]]:
            self.visit(default)
        scope = Scope(node, self._scope)
        args = node.args
        positional = [*args.posonlyargs, *args.args]
        scope.params = [a.arg for a in positional]
        for arg, default in zip(reversed(positional), reversed(args.defaults), strict=False):
            scope.defaults[arg.arg] = default
        for arg, kw_default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
            scope.params.append(arg.arg)
            if kw_default is not None:
                scope.defaults[arg.arg] = kw_default
        return scope

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._def(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._def(node)

    def _def(self, node: FunctionNode) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        self._scope.bind(node.name, node.lineno, None)
        scope = self._function(node)
        self.functions.setdefault(node.name, []).append((node, scope))
        self._enter(scope, node.body)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._enter(self._function(node), [node.body])

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases]:
            self.visit(expr)
        self._scope.bind(node.name, node.lineno, None)
        self._enter(Scope(node, self._scope), node.body)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._assign(target, node.value, node.lineno, end_position(node))
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self._assign(node.target, node.value, node.lineno, end_position(node))
        self.generic_visit(node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self._assign(node.target, node.value, node.lineno, end_position(node))
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._assign(node.target, None, node.lineno)
        self.generic_visit(node)

    def visit_For(self, node: ast.For) -> None:
        self._loop(node.target, node.iter, node.lineno, ())
        self.generic_visit(node)

    def visit_AsyncFor(self, node: ast.AsyncFor) -> None:
        self._assign(node.target, None, node.lineno)
        self.generic_visit(node)

    def _loop(self, target: ast.expr, iterated: ast.expr, line: int, index: tuple[int, ...]) -> None:
        if isinstance(target, ast.Name):
            self._scope.add(target.id, Binding(line, None, loop=iterated, index=index, at=end_position(target)))
        elif isinstance(target, ast.Tuple | ast.List):
            for position, element in enumerate(target.elts):
                self._loop(element, iterated, line, (*index, position))
        else:
            self._assign(target, None, line)

    def visit_withitem(self, node: ast.withitem) -> None:
        if node.optional_vars is not None:
            self._assign(node.optional_vars, None, node.context_expr.lineno)
        self.generic_visit(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self._scope.bind(node.name, node.lineno, None)
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._scope.bind((alias.asname or alias.name).split(".")[0], node.lineno, None, end_position(node))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            imported = Imported(node.module or "", alias.name, node.level)
            binding = Binding(node.lineno, None, imported=imported, at=end_position(node))
            self._scope.add(alias.asname or alias.name, binding)

    def _assign(self, target: ast.expr, value: ast.expr | None, line: int, at: float | None = None) -> None:
        if isinstance(target, ast.Name):
            self._scope.bind(target.id, line, value, at)
        elif isinstance(target, ast.Tuple | ast.List):
            values = value.elts if isinstance(value, ast.Tuple | ast.List) else None
            if values is not None and len(values) != len(target.elts):
                values = None
            for index, element in enumerate(target.elts):
                self._assign(element, values[index] if values else None, line, at)
        elif isinstance(target, ast.Starred):
            self._assign(target.value, None, line, at)


def keyword_value(call: ast.Call, name: str) -> ast.expr | None:
    """The value a call passes as keyword argument `name`, if any."""
    return next((k.value for k in call.keywords if k.arg == name), None)


def _import_aliases(nodes: list[ast.AST]) -> dict[str, str]:
    """Local name -> what it imports: `sh` -> `shutil`, `copytree` -> `shutil.copytree`."""
    aliases: dict[str, str] = {}
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    aliases[top] = top
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
    return aliases


class PythonModule:
    """One Python file, parsed; `path` is how findings name it, `source` where it lies on
    disk when it was read from a file (constants imported from sibling modules are read
    from there)."""

    def __init__(
        self,
        path: str,
        text: str,
        mount_points: tuple[str, ...] = DEFAULT_MOUNT_POINTS,
        source: Path | None = None,
    ) -> None:
        self.path = path
        self.text = text
        self.mount_points = mount_points
        self.source = source
        self.tree = parse(text, path)
        self.lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")

    # What follows is computed on first use: most files need only some of it.

    @cached_property
    def nodes(self) -> list[ast.AST]:
        """Every node of the tree, once."""
        return list(ast.walk(self.tree))

    @cached_property
    def aliases(self) -> dict[str, str]:
        return _import_aliases(self.nodes)

    @cached_property
    def _scopes(self) -> _ScopeBuilder:
        return _ScopeBuilder(self.tree)

    @property
    def module_scope(self) -> Scope:
        return self._scopes.module_scope

    @property
    def functions(self) -> dict[str, list[tuple[FunctionNode, Scope]]]:
        """Functions by name, each with its scope."""
        return self._scopes.functions

    def scope_of(self, node: ast.AST) -> Scope:
        return self._scopes.scope_of.get(node, self._scopes.module_scope)

    def col(self, node: ast.AST) -> int:
        """1-based character column of `node` (ast counts UTF-8 bytes from 0)."""
        line = self.lines[node.lineno - 1] if 0 < node.lineno <= len(self.lines) else ""  # type: ignore[attr-defined]
        prefix = line.encode("utf-8")[: node.col_offset]  # type: ignore[attr-defined]
        return len(prefix.decode("utf-8", errors="replace")) + 1

    def qualname(self, expr: ast.expr) -> str | None:
        """The dotted name `expr` refers to through the imports (`sh.copy` -> `shutil.copy`)."""
        if isinstance(expr, ast.Name):
            return self.aliases.get(expr.id)
        if isinstance(expr, ast.Attribute):
            base = self.qualname(expr.value)
            return f"{base}.{expr.attr}" if base else None
        return None

    def calls(self) -> list[tuple[ast.Call, str]]:
        """Every call whose function is a known imported name, with that name."""
        return self._calls

    @cached_property
    def _calls(self) -> list[tuple[ast.Call, str]]:
        found = []
        for node in self.nodes:
            if isinstance(node, ast.Call):
                name = self.qualname(node.func)
                if name:
                    found.append((node, name))
        return found

    @cached_property
    def suppressions(self) -> Suppressions:
        """`# volcache: ignore[...]` comments by line."""
        found = Suppressions()
        if "volcache" not in self.text:
            return found
        try:
            for token in tokenize.generate_tokens(io.StringIO(self.text).readline):
                if token.type == tokenize.COMMENT:
                    codes = parse_directive(token.string)
                    if codes is not None:
                        found.add(token.start[0], codes)
        except (tokenize.TokenError, SyntaxError):  # ast accepted it; keep what was read
            pass
        return found

    @cached_property
    def resolver(self) -> Resolver:
        """The path resolver for this module (built on first use)."""
        from ._resolve import Resolver

        return Resolver(self)
