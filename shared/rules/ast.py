"""The typed syntax tree of a rule set (what the parser produces, the checker
types and both compilers translate).

Nodes are immutable and compared by identity (``eq=False``), so the checker can
key its type table by node. Every node carries its 1-based source position so
that any later stage can point back at the text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union


@dataclass(frozen=True, eq=False)
class Pos:
    line: int
    column: int


# --- expressions ---------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Num:
    value: int                      # scaled by numeric.SCALE
    pos: Pos


@dataclass(frozen=True, eq=False)
class Str:
    value: str
    pos: Pos


@dataclass(frozen=True, eq=False)
class DateLit:
    days: int                       # days since 1970-01-01
    text: str
    pos: Pos


@dataclass(frozen=True, eq=False)
class Bool:
    value: bool
    pos: Pos


@dataclass(frozen=True, eq=False)
class Earned:
    """Points earned so far by this order (after the actions already applied)."""

    pos: Pos


@dataclass(frozen=True, eq=False)
class Field:
    path: tuple[str, ...]           # e.g. ("order", "total"), ("item", "category")
    pos: Pos

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True, eq=False)
class Call:
    name: str
    args: tuple["Expr", ...]
    pos: Pos


@dataclass(frozen=True, eq=False)
class ListLit:
    items: tuple["Expr", ...]
    pos: Pos


@dataclass(frozen=True, eq=False)
class Neg:
    operand: "Expr"
    pos: Pos


@dataclass(frozen=True, eq=False)
class Not:
    operand: "Expr"
    pos: Pos


@dataclass(frozen=True, eq=False)
class Arith:
    op: str                         # + - * /
    left: "Expr"
    right: "Expr"
    pos: Pos


@dataclass(frozen=True, eq=False)
class Compare:
    op: str                         # = != < <= > >=
    left: "Expr"
    right: "Expr"
    pos: Pos


@dataclass(frozen=True, eq=False)
class Member:
    element: "Expr"
    container: "Expr"               # a ListLit of literals, or the field customer.tags
    negated: bool
    pos: Pos


@dataclass(frozen=True, eq=False)
class Between:
    value: "Expr"
    low: "Expr"
    high: "Expr"
    pos: Pos


@dataclass(frozen=True, eq=False)
class And:
    parts: tuple["Expr", ...]
    pos: Pos


@dataclass(frozen=True, eq=False)
class Or:
    parts: tuple["Expr", ...]
    pos: Pos


@dataclass(frozen=True, eq=False)
class Quantifier:
    """``any|all VAR in order.items has BODY``."""

    kind: str                       # "any" | "all"
    var: str
    collection: Field
    body: "Expr"
    pos: Pos


@dataclass(frozen=True, eq=False)
class Count:
    """``count(VAR in order.items where COND)``."""

    var: str
    collection: Field
    where: "Expr | None"
    pos: Pos


@dataclass(frozen=True, eq=False)
class Sum:
    """``sum(VALUE for VAR in order.items where COND)``."""

    value: "Expr"
    var: str
    collection: Field
    where: "Expr | None"
    pos: Pos


Expr = Union[Num, Str, DateLit, Bool, Earned, Field, Call, ListLit, Neg, Not, Arith, Compare,
             Member, Between, And, Or, Quantifier, Count, Sum]
AGGREGATES = (Quantifier, Count, Sum)


def children(node: Expr) -> tuple[Expr, ...]:
    """Direct sub-expressions, in evaluation order."""
    if isinstance(node, (Call,)):
        return node.args
    if isinstance(node, ListLit):
        return node.items
    if isinstance(node, (Neg, Not)):
        return (node.operand,)
    if isinstance(node, (Arith, Compare)):
        return (node.left, node.right)
    if isinstance(node, Member):
        return (node.element, node.container)
    if isinstance(node, Between):
        return (node.value, node.low, node.high)
    if isinstance(node, (And, Or)):
        return node.parts
    if isinstance(node, Quantifier):
        return (node.collection, node.body)
    if isinstance(node, Count):
        return (node.collection,) + ((node.where,) if node.where is not None else ())
    if isinstance(node, Sum):
        return (node.collection, node.value) + ((node.where,) if node.where is not None else ())
    return ()


# --- actions -------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Earn:
    amount: Expr
    expiry_days: int | None
    expiry_date: "DateLit | None"
    pos: Pos
    # "pending for N days" (0..365): the rule's own return window (shared/pending); None: the tenant's.
    pending_days: int | None = None
    # 'into "promo"': the wallet credited (docs/wallets.md); None: the tenant's default wallet.
    wallet: str | None = None


@dataclass(frozen=True, eq=False)
class Multiply:
    factor: Expr
    pos: Pos


@dataclass(frozen=True, eq=False)
class Cap:
    limit: Expr
    pos: Pos


@dataclass(frozen=True, eq=False)
class Tag:
    tag: str
    pos: Pos


@dataclass(frozen=True, eq=False)
class Stop:
    pos: Pos


Action = Union[Earn, Multiply, Cap, Tag, Stop]


def action_kind(action: Action) -> str:
    return type(action).__name__.lower()


# --- rules ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Condition:
    """One top-level conjunct of ``when`` (its value is reported in the trace)."""

    expr: Expr
    text: str


@dataclass(frozen=True, eq=False)
class Rule:
    name: str
    priority: int
    conditions: tuple[Condition, ...]   # all must hold; empty: always
    actions: tuple[Action, ...]
    index: int                          # position in the source
    pos: Pos

    @property
    def stops(self) -> bool:
        return any(isinstance(a, Stop) for a in self.actions)


@dataclass(frozen=True, eq=False)
class RuleSet:
    rules: tuple[Rule, ...]
    valid_from: DateLit | None = None
    valid_until: DateLit | None = None
    source: str = field(default="", repr=False)

    def in_evaluation_order(self) -> tuple[Rule, ...]:
        """Higher priority first; equal priorities in source order."""
        return tuple(sorted(self.rules, key=lambda r: (-r.priority, r.index)))
