"""Type checking of a parsed rule set against the order/customer schema.

Run at validate and save time, before anything is stored. It resolves every
name against ``shared.rules.schema`` (unknown names get a "did you mean"), gives
every expression a type, and enforces the language's structural rules:

* conditions are boolean; ``earn``/``multiply``/``cap`` take numbers;
* strings support ``=``, ``!=`` and ``in`` only; ordering is for numbers and dates;
* ``order.items`` appears only as the collection of any/all/count/sum, and
  aggregates do not nest (so evaluation is at most linear in the item count);
* ``customer.tags`` appears only as ``"literal" in customer.tags``;
* list literals hold literals of one type; enumerated fields (``order.weekday``)
  compare only with their values;
* rule names are unique; ``stop`` is the last action.

The result, ``Typed``, is what both compilers consume: the tree plus a type per
expression node. Never raises anything but ``RuleTypeError``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from shared.rules import ast
from shared.rules.errors import Diagnostic, RuleTypeError
from shared.rules.limits import MAX_DIAGNOSTICS
from shared.rules.numeric import MAX_SCALED, MAX_UNITS
from shared.rules.schema import CUSTOMER_FIELDS, FUNCTIONS, ITEM_FIELDS, ORDER_FIELDS, ROOTS, FieldSpec, Type
from shared.rules.source import rule_at

_LITERALS = (ast.Num, ast.Str, ast.DateLit)


@dataclass
class Typed:
    """A checked rule set: every expression node has a type."""

    ruleset: ast.RuleSet
    types: dict[object, Type] = field(default_factory=dict)
    list_types: dict[object, Type] = field(default_factory=dict)   # ListLit -> element type

    def type_of(self, node: ast.Expr) -> Type:
        return self.types[node]


def resolve_field(node: ast.Field, loop_var: str | None) -> FieldSpec | None:
    """The schema entry a field path names (None if it names nothing)."""
    if len(node.path) != 2:
        return None
    root, name = node.path
    if loop_var is not None and root == loop_var:
        return ITEM_FIELDS.get(name)
    fields = ROOTS.get(root)
    return fields.get(name) if fields else None


def check(ruleset: ast.RuleSet) -> Typed:
    checker = _Checker(ruleset)
    checker.run()
    if checker.problems:
        raise RuleTypeError(checker.problems[:MAX_DIAGNOSTICS])
    return checker.typed


class _Checker:
    def __init__(self, ruleset: ast.RuleSet) -> None:
        self.typed = Typed(ruleset)
        self.lines = ruleset.source.split("\n")
        self.problems: list[Diagnostic] = []
        self.rule: ast.Rule | None = None
        self.loop_var: str | None = None

    def problem(self, message: str, pos: ast.Pos, hint: str | None = None) -> None:
        if len(self.problems) < MAX_DIAGNOSTICS:
            line = self.lines[pos.line - 1] if 0 < pos.line <= len(self.lines) else None
            name = self.rule.name if self.rule else rule_at(self.typed.ruleset.source, pos.line)
            self.problems.append(Diagnostic(message, pos.line, pos.column, name, hint, line))

    def run(self) -> None:
        if not self.typed.ruleset.rules:
            self.problem("a rule set needs at least one rule", ast.Pos(1, 1),
                         'e.g. rule "Base earn" then earn floor(order.total) points')
        seen: dict[str, ast.Rule] = {}
        for rule in self.typed.ruleset.rules:
            self.rule = rule
            if rule.name in seen:
                self.problem(f'another rule is already named "{rule.name}" (line {seen[rule.name].pos.line})',
                             rule.pos, "give each rule a unique name: the trace and the ledger refer to it")
            seen.setdefault(rule.name, rule)
            for condition in rule.conditions:
                self.expect(condition.expr, Type.BOOL, "a condition")
            if not rule.actions:
                self.problem("a rule needs at least one action after then", rule.pos)
            for index, action in enumerate(rule.actions):
                if isinstance(action, ast.Stop) and index != len(rule.actions) - 1:
                    self.problem("stop must be the last action of a rule", action.pos)
                elif isinstance(action, ast.Earn):
                    self.expect(action.amount, Type.NUMBER, "earn")
                elif isinstance(action, ast.Multiply):
                    self.expect(action.factor, Type.NUMBER, "multiply earned by")
                elif isinstance(action, ast.Cap):
                    self.expect(action.limit, Type.NUMBER, "cap earned at")

    def expect(self, node: ast.Expr, wanted: Type, what: str) -> None:
        got = self.expr(node)
        if got is not None and got is not wanted:
            self.problem(f"{what} needs a {wanted.value}, but this is a {got.value}", node.pos)

    # --- expressions: return the type, or None after reporting a problem ---

    def expr(self, node: ast.Expr) -> Type | None:
        result = self._expr(node)
        if result is not None:
            self.typed.types[node] = result
        return result

    def _expr(self, node: ast.Expr) -> Type | None:
        if isinstance(node, ast.Num):
            # The parser bounds what it reads, but a rule set's tree can come from elsewhere
            # (a stored or generated one): every evaluator relies on |v| <= MAX_SCALED (the
            # wasm evaluator cannot even compile a literal outside i64), so the checker refuses it.
            if not -MAX_SCALED <= node.value <= MAX_SCALED:
                self.problem(f"number literal is outside ±{MAX_UNITS:,}", node.pos)
                return None
            return Type.NUMBER
        if isinstance(node, ast.Str):
            return Type.STRING
        if isinstance(node, ast.DateLit):
            return Type.DATE
        if isinstance(node, ast.Bool):
            return Type.BOOL
        if isinstance(node, ast.Earned):
            return Type.NUMBER
        if isinstance(node, ast.Field):
            return self.field(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.ListLit):
            self.problem("a list can only follow in, as in: order.channel in [\"web\", \"store\"]", node.pos)
            return None
        if isinstance(node, ast.Neg):
            return self.numeric(node.operand, "-")
        if isinstance(node, ast.Not):
            self.expect(node.operand, Type.BOOL, "not")
            return Type.BOOL
        if isinstance(node, ast.Arith):
            left = self.numeric(node.left, node.op)
            right = self.numeric(node.right, node.op)
            return Type.NUMBER if left and right else None
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Member):
            return self.member(node)
        if isinstance(node, ast.Between):
            kinds = [self.expr(n) for n in (node.value, node.low, node.high)]
            if None in kinds:
                return None
            if kinds[0] not in (Type.NUMBER, Type.DATE) or len(set(kinds)) != 1:
                self.problem(f"between needs three numbers or three dates, got {', '.join(k.value for k in kinds)}",
                             node.pos)
                return None
            return Type.BOOL
        if isinstance(node, (ast.And, ast.Or)):
            word = "and" if isinstance(node, ast.And) else "or"
            for part in node.parts:
                self.expect(part, Type.BOOL, word)
            return Type.BOOL
        if isinstance(node, ast.AGGREGATES):
            return self.aggregate(node)
        raise AssertionError(f"unhandled node {type(node).__name__}")

    def numeric(self, node: ast.Expr, op: str) -> Type | None:
        got = self.expr(node)
        if got is not None and got is not Type.NUMBER:
            self.problem(f"{op} needs numbers, but this is a {got.value}", node.pos)
            return None
        return got

    def candidates(self) -> list[str]:
        names = [f"order.{n}" for n in ORDER_FIELDS] + [f"customer.{n}" for n in CUSTOMER_FIELDS] + ["earned"]
        if self.loop_var:
            names += [f"{self.loop_var}.{n}" for n in ITEM_FIELDS]
        return names

    def field(self, node: ast.Field) -> Type | None:
        spec = resolve_field(node, self.loop_var)
        if spec is None:
            dotted = node.dotted
            close = difflib.get_close_matches(dotted, self.candidates(), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else None
            if node.path[0] not in ROOTS and node.path[0] != self.loop_var and len(node.path) == 2 \
                    and node.path[1] in ITEM_FIELDS and not close:
                hint = f"{node.path[0]} is only defined inside any/all/count/sum over order.items"
            if node.path[0].startswith("_") or any(p.startswith("__") for p in node.path):
                hint = "rules can only read the fields listed in grammar/README.md"
            self.problem(f"unknown name {dotted}", node.pos, hint)
            return None
        if spec.type is Type.ITEMS:
            self.problem("order.items can only be used in any/all/count/sum", node.pos,
                         "e.g. any item in order.items has item.category = \"coffee\"")
            return None
        if spec.type is Type.TAGS:
            self.problem("customer.tags can only be used as: \"tag\" in customer.tags", node.pos)
            return None
        return spec.type

    def call(self, node: ast.Call) -> Type | None:
        arity = FUNCTIONS.get(node.name)
        if arity is None:
            close = difflib.get_close_matches(node.name, list(FUNCTIONS), n=1, cutoff=0.5)
            self.problem(f"unknown function {node.name}", node.pos,
                         f"did you mean {close[0]}?" if close else f"functions are {', '.join(FUNCTIONS)}")
            return None
        low, high = arity
        if not low <= len(node.args) <= high:
            count = f"{low}" if low == high else f"{low} to {high}"
            self.problem(f"{node.name} takes {count} argument(s), got {len(node.args)}", node.pos)
        ok = all([self.numeric(arg, node.name) for arg in node.args])
        return Type.NUMBER if ok else None

    def enum_values(self, node: ast.Expr) -> tuple[str, ...]:
        if isinstance(node, ast.Field):
            spec = resolve_field(node, self.loop_var)
            if spec is not None:
                return spec.values
        return ()

    def check_enum(self, values: tuple[str, ...], literal: ast.Expr, field_text: str) -> None:
        if values and isinstance(literal, ast.Str) and literal.value not in values:
            close = difflib.get_close_matches(literal.value, values, n=1, cutoff=0.5)
            self.problem(f'{field_text} is never "{literal.value}"', literal.pos,
                         f'did you mean "{close[0]}"?' if close else f"values are {', '.join(values)}")

    def compare(self, node: ast.Compare) -> Type | None:
        left, right = self.expr(node.left), self.expr(node.right)
        if left is None or right is None:
            return None
        if left is not right:
            self.problem(f"cannot compare a {left.value} with a {right.value}", node.pos)
            return None
        if node.op not in ("=", "!=") and left not in (Type.NUMBER, Type.DATE):
            self.problem(f"{node.op} compares numbers or dates; a {left.value} supports = and != only", node.pos)
            return None
        for a, b in ((node.left, node.right), (node.right, node.left)):
            if isinstance(a, ast.Field):
                self.check_enum(self.enum_values(a), b, a.dotted)
        return Type.BOOL

    def member(self, node: ast.Member) -> Type | None:
        container = node.container
        if isinstance(container, ast.Field) and container.path == ("customer", "tags"):
            if not isinstance(node.element, ast.Str):
                self.problem("only a literal tag can be looked up: \"vip\" in customer.tags", node.element.pos)
                return None
            self.typed.types[node.element] = Type.STRING
            return Type.BOOL
        if not isinstance(container, ast.ListLit):
            self.problem("in needs a list of literals, e.g. [\"web\", \"store\"], or customer.tags", container.pos)
            self.expr(container)
            return None
        element = self.expr(node.element)
        kinds = set()
        for item in container.items:
            if not isinstance(item, _LITERALS):
                self.problem("a list holds literals only (numbers, strings or dates)", item.pos)
                return None
            kinds.add(self.expr(item))
        if not container.items:
            self.problem("the list is empty", container.pos)
            return None
        if len(kinds) != 1:
            self.problem("the elements of a list must all have the same type", container.pos)
            return None
        (kind,) = kinds
        self.typed.list_types[container] = kind
        if element is not None and element is not kind:
            self.problem(f"cannot look for a {element.value} in a list of {kind.value}s", node.pos)
            return None
        values = self.enum_values(node.element)
        for item in container.items:
            self.check_enum(values, item, node.element.dotted if isinstance(node.element, ast.Field) else "")
        return Type.BOOL if element is not None else None

    def aggregate(self, node: ast.Quantifier | ast.Count | ast.Sum) -> Type | None:
        word = node.kind if isinstance(node, ast.Quantifier) else type(node).__name__.lower()
        if self.loop_var is not None:
            self.problem(f"{word} cannot be nested inside another aggregate", node.pos,
                         "aggregates run over order.items once; combine the conditions instead")
            return None
        if node.collection.path != ("order", "items"):
            self.problem(f"{word} runs over order.items, not {node.collection.dotted}", node.collection.pos)
            return None
        if node.var in ROOTS or node.var in ("earned",):
            self.problem(f"{node.var} is already a name; call the item something else, e.g. item", node.pos)
            return None
        self.loop_var = node.var
        try:
            if isinstance(node, ast.Quantifier):
                self.expect(node.body, Type.BOOL, f"{word} ... has")
                return Type.BOOL
            if node.where is not None:
                self.expect(node.where, Type.BOOL, "where")
            if isinstance(node, ast.Sum):
                self.expect(node.value, Type.NUMBER, "sum")
            return Type.NUMBER
        finally:
            self.loop_var = None
