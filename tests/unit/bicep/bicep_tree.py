"""A small reader of Bicep templates on tree-sitter-bicep, for the template tests.

The Bicep CLI is not available here, so the tests read the templates' syntax
trees instead: syntax errors, the declarations (param, var, resource, module,
output), and the literal values of expressions. ``evaluate`` turns literals
(strings without interpolation, numbers, booleans, null, arrays, objects) into
Python values and resolves identifiers that name a ``var`` of the same file;
anything computed at deployment time (module outputs, function calls,
interpolated strings) comes back as an ``Expr`` holding its source text, so a
test can still look at it but never mistakes it for a known value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import tree_sitter_bicep
from tree_sitter import Language, Node, Parser

_PARSER = Parser(Language(tree_sitter_bicep.language()))

_ESCAPES = {"\\'": "'", "\\\\": "\\", "\\n": "\n", "\\r": "\r", "\\t": "\t", "\\$": "$"}


@dataclass(frozen=True)
class Expr:
    """An expression whose value is only known at deployment time."""

    text: str


@dataclass(frozen=True)
class SyntaxProblem:
    path: Path
    line: int  # 1-based
    column: int  # 1-based
    kind: str  # "ERROR" or "MISSING <node type>"
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.kind} near {self.text!r}"


@dataclass
class Declaration:
    """A resource or module: its symbol, type (or module path) and body object."""

    symbol: str
    target: str  # resource type with API version, or the module's relative path
    body: Node | None  # the object node (inside any for/if wrapper)
    existing: bool = False
    loop: bool = False
    condition: Node | None = None
    line: int = 0


@dataclass
class Template:
    path: Path
    root: Node
    params: dict[str, Node | None] = field(default_factory=dict)  # name -> default value node
    param_types: dict[str, str] = field(default_factory=dict)
    # name -> {decorator name: evaluated arguments}, e.g. {"allowed": [["us", "eu"]]}
    param_decorators: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    variables: dict[str, Node] = field(default_factory=dict)
    resources: dict[str, Declaration] = field(default_factory=dict)
    modules: dict[str, Declaration] = field(default_factory=dict)
    outputs: dict[str, Node] = field(default_factory=dict)

    def var(self, name: str) -> Any:
        return evaluate(self.variables[name], self)

    def resources_of_type(self, type_prefix: str) -> list[Declaration]:
        """Resources whose type (without API version) is exactly ``type_prefix``."""
        return [r for r in self.resources.values() if r.target.split("@")[0] == type_prefix]


def parse(path: Path):
    return _PARSER.parse(path.read_bytes())


def syntax_problems(path: Path) -> list[SyntaxProblem]:
    """Every ERROR and MISSING node of the file's tree, with its position."""
    problems: list[SyntaxProblem] = []

    def walk(node: Node) -> None:
        if node.is_error or node.is_missing:
            kind = "ERROR" if node.is_error else f"MISSING {node.type}"
            text = node.text.decode(errors="replace")[:60] if node.text else ""
            problems.append(SyntaxProblem(path, node.start_point[0] + 1, node.start_point[1] + 1, kind, text))
        for child in node.children:
            walk(child)

    walk(parse(path).root_node)
    return problems


@lru_cache(maxsize=None)
def load(path: Path) -> Template:
    root = parse(path).root_node
    template = Template(path=path, root=root)
    decorators: dict[str, list[Any]] = {}
    for node in root.named_children:
        if node.type == "decorators":
            decorators = _decorators(node, template)
            continue
        if node.type == "parameter_declaration":
            children = node.named_children
            name = children[0].text.decode()
            template.param_decorators[name] = decorators
            type_node = next((c for c in children if c.type == "type"), None)
            template.param_types[name] = type_node.text.decode() if type_node else ""
            rest = [c for c in children[1:] if c.type != "type"]
            template.params[name] = rest[0] if rest else None
        elif node.type == "variable_declaration":
            name_node, value = node.named_children[0], node.named_children[-1]
            template.variables[name_node.text.decode()] = value
        elif node.type == "output_declaration":
            template.outputs[node.named_children[0].text.decode()] = node.named_children[-1]
        elif node.type in ("resource_declaration", "module_declaration"):
            declaration = _declaration(node)
            bucket = template.resources if node.type == "resource_declaration" else template.modules
            bucket[declaration.symbol] = declaration
        if node.type != "comment":
            decorators = {}
    return template


def _decorators(node: Node, template: Template) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for decorator in node.named_children:
        call = decorator.named_children[0] if decorator.named_children else None
        if call is None or call.type != "call_expression":
            continue
        name = call.named_children[0].text.decode().split(".")[-1]
        arguments = call.named_children[-1]
        found[name] = [evaluate(a, template) for a in arguments.named_children if a.type != "comment"]
    return found


def _declaration(node: Node) -> Declaration:
    symbol = node.named_children[0].text.decode()
    target = string_value(node.named_children[1])
    existing = any(c.type == "existing" or c.text == b"existing" for c in node.children if not c.is_named)
    value = node.named_children[-1]
    loop = False
    condition = None
    if value.type == "for_statement":
        loop = True
        value = value.named_children[-1]
    if value.type == "if_statement":
        condition = value.named_children[0]
        value = value.named_children[-1]
    body = value if value.type == "object" else None
    return Declaration(symbol, target, body, existing, loop, condition, node.start_point[0] + 1)


def string_value(node: Node) -> str | Expr:
    """A string literal's value, or an Expr when it interpolates."""
    parts: list[str] = []
    for child in node.named_children:
        if child.type == "interpolation":
            return Expr(node.text.decode())
        text = child.text.decode()
        parts.append(_ESCAPES.get(text, text) if child.type == "escape_sequence" else text)
    return "".join(parts)


def properties(node: Node | None) -> dict[str, Node]:
    """The properties of an object node, by key, as nodes."""
    if node is None or node.type != "object":
        return {}
    result: dict[str, Node] = {}
    for prop in node.named_children:
        if prop.type != "object_property":
            continue
        key_node, value = prop.named_children[0], prop.named_children[-1]
        key = string_value(key_node) if key_node.type == "string" else key_node.text.decode()
        result[str(key)] = value
    return result


def path(node: Node | None, *keys: str) -> Node | None:
    """Follow object keys: path(body, 'properties', 'siteConfig')."""
    for key in keys:
        node = properties(node).get(key)
        if node is None:
            return None
    return node


def evaluate(node: Node | None, template: Template | None = None, _depth: int = 0) -> Any:
    """The Python value of a literal expression; ``Expr`` for anything computed."""
    if node is None:
        return None
    if _depth > 20:
        return Expr(node.text.decode())
    kind = node.type
    if kind == "string":
        return string_value(node)
    if kind == "number":
        return int(node.text.decode())
    if kind == "boolean":
        return node.text == b"true"
    if kind == "null":
        return None
    if kind == "array":
        return [evaluate(c, template, _depth + 1) for c in node.named_children if c.type != "comment"]
    if kind == "object":
        return {k: evaluate(v, template, _depth + 1) for k, v in properties(node).items()}
    if kind == "parenthesized_expression":
        return evaluate(node.named_children[0], template, _depth + 1)
    if kind == "identifier" and template is not None:
        name = node.text.decode()
        if name in template.variables:
            return evaluate(template.variables[name], template, _depth + 1)
    if kind == "member_expression" and template is not None:
        owner = evaluate(node.named_children[0], template, _depth + 1)
        prop = node.named_children[-1].text.decode()
        if isinstance(owner, dict) and prop in owner:
            return owner[prop]
    return Expr(node.text.decode())


def references(node: Node | None) -> set[str]:
    """Identifiers used anywhere in an expression (first element of member chains included)."""
    found: set[str] = set()

    def walk(n: Node) -> None:
        if n.type == "identifier":
            found.add(n.text.decode())
        for child in n.named_children:
            # Object keys are identifiers too, but not references.
            if n.type == "object_property" and child is n.named_children[0]:
                continue
            walk(child)

    if node is not None:
        walk(node)
    return found
