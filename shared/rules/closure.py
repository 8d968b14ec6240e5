"""The fast evaluator: a rule set compiled once into nested Python closures.

Each expression node becomes one small function of an evaluation context;
names were resolved by the checker to fixed slots, so evaluation does no
lookup by name, no ``getattr`` and no ``eval``/``exec`` of anything a user
wrote. The compiled program fills the outcome record of ``shared.rules.program``
with exactly the semantics of the wasm evaluator:

* arithmetic is ``shared.rules.numeric`` (fixed point, overflow and division
  by zero raise ``RuleFailure``, caught at the rule boundary);
* ``and``/``or``/``any``/``all`` short-circuit left to right, the same in both;
  ``between`` and function arguments evaluate every operand, left to right;
* a rule is atomic: if an action fails, the lots and the running total are
  restored and the rule is recorded as failed; later rules still run.
"""

from __future__ import annotations

import operator
from typing import Any, Callable

from shared.rules import ast, numeric
from shared.rules.checker import Typed, resolve_field
from shared.rules.facts import Facts
from shared.rules.numeric import MAX_POINTS, SCALE, FailureCode, RuleFailure
from shared.rules.program import (
    APPLIED, COND_FAILED, FAILED, NOT_MATCHED, RULESET_ACTIVE, RULESET_AFTER, RULESET_BEFORE, UNSET, Program,
)
from shared.rules.schema import S_DATE

Fn = Callable[["Ctx"], Any]


class Ctx:
    """Per-order evaluation state."""

    __slots__ = ("s", "items", "it", "lots", "earned")

    def __init__(self, facts: Facts, n_lots: int) -> None:
        self.s = facts.scalars
        self.items = facts.items
        self.it: tuple = ()
        self.lots = [UNSET] * n_lots
        self.earned = 0


_COMPARE = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
            ">": operator.gt, ">=": operator.ge}
_ARITH = {"+": numeric.add, "-": numeric.sub, "*": numeric.mul, "/": numeric.div}
_UNARY = {"floor": numeric.floor, "ceil": numeric.ceil, "round": numeric.round_half_away}


class _ExprCompiler:
    def __init__(self, program: Program) -> None:
        self.program = program
        self.typed: Typed = program.typed
        self.loop_var: str | None = None

    def compile(self, node: ast.Expr) -> Fn:
        if isinstance(node, (ast.Num, ast.Str, ast.Bool)):
            value = node.value
            return lambda c: value
        if isinstance(node, ast.DateLit):
            days = node.days
            return lambda c: days
        if isinstance(node, ast.Earned):
            return lambda c: c.earned * SCALE
        if isinstance(node, ast.Field):
            spec = resolve_field(node, self.loop_var)
            assert spec is not None, node.dotted
            index = spec.slot
            if self.loop_var is not None and node.path[0] == self.loop_var:
                return lambda c: c.it[index]
            return lambda c: c.s[index]
        if isinstance(node, ast.Call):
            args = [self.compile(a) for a in node.args]
            if node.name in _UNARY:
                fn, (arg,) = _UNARY[node.name], args
                return lambda c: fn(arg(c))
            pick = min if node.name == "min" else max
            return lambda c: pick([a(c) for a in args])
        if isinstance(node, ast.Neg):
            operand = self.compile(node.operand)
            return lambda c: -operand(c)
        if isinstance(node, ast.Not):
            operand = self.compile(node.operand)
            return lambda c: not operand(c)
        if isinstance(node, ast.Arith):
            fn, left, right = _ARITH[node.op], self.compile(node.left), self.compile(node.right)
            return lambda c: fn(left(c), right(c))
        if isinstance(node, ast.Compare):
            fn, left, right = _COMPARE[node.op], self.compile(node.left), self.compile(node.right)
            return lambda c: fn(left(c), right(c))
        if isinstance(node, ast.Member):
            return self.member(node)
        if isinstance(node, ast.Between):
            value, low, high = (self.compile(n) for n in (node.value, node.low, node.high))

            def between(c: Ctx) -> bool:
                v, lo, hi = value(c), low(c), high(c)   # all three, left to right, as in wasm
                return lo <= v <= hi
            return between
        if isinstance(node, ast.And):
            parts = [self.compile(p) for p in node.parts]

            def all_of(c: Ctx) -> bool:
                for part in parts:
                    if not part(c):
                        return False
                return True
            return all_of
        if isinstance(node, ast.Or):
            parts = [self.compile(p) for p in node.parts]

            def any_of(c: Ctx) -> bool:
                for part in parts:
                    if part(c):
                        return True
                return False
            return any_of
        if isinstance(node, ast.AGGREGATES):
            return self.aggregate(node)
        raise AssertionError(f"unhandled node {type(node).__name__}")

    def member(self, node: ast.Member) -> Fn:
        negated = node.negated
        if isinstance(node.container, ast.Field):
            assert isinstance(node.element, ast.Str)
            slot = self.program.tag_slot(node.element.value)
            return (lambda c: c.s[slot] != 1) if negated else (lambda c: c.s[slot] == 1)
        assert isinstance(node.container, ast.ListLit)
        values = frozenset(self.compile(item)(None) for item in node.container.items)  # literals only
        element = self.compile(node.element)
        return (lambda c: element(c) not in values) if negated else (lambda c: element(c) in values)

    def aggregate(self, node: ast.Quantifier | ast.Count | ast.Sum) -> Fn:
        self.loop_var = node.var
        try:
            if isinstance(node, ast.Quantifier):
                body = self.compile(node.body)
                if node.kind == "any":
                    def any_item(c: Ctx) -> bool:
                        for item in c.items:
                            c.it = item
                            if body(c):
                                return True
                        return False
                    return any_item

                def all_items(c: Ctx) -> bool:
                    for item in c.items:
                        c.it = item
                        if not body(c):
                            return False
                    return True
                return all_items
            where = self.compile(node.where) if node.where is not None else None
            if isinstance(node, ast.Count):
                def count(c: Ctx) -> int:
                    n = 0
                    for item in c.items:
                        c.it = item
                        if where is None or where(c):
                            n += 1
                    return n * SCALE
                return count
            value = self.compile(node.value)
            add = numeric.add

            def total(c: Ctx) -> int:
                acc = 0
                for item in c.items:
                    c.it = item
                    if where is None or where(c):
                        acc = add(acc, value(c))
                return acc
            return total
        finally:
            self.loop_var = None


# --- actions ---------------------------------------------------------------------------

Act = Callable[[Ctx, list], None]


def _earn(amount: Fn, slot: int, lot: int) -> Act:
    def earn(c: Ctx, out: list) -> None:
        value = amount(c)
        if value < 0:
            raise RuleFailure(FailureCode.NEGATIVE_POINTS)
        points = value // SCALE
        if c.earned + points > MAX_POINTS:
            raise RuleFailure(FailureCode.POINTS_LIMIT)
        out[slot] = points
        c.lots[lot] = points
        c.earned += points
    return earn


def _multiply(factor_fn: Fn, slot: int) -> Act:
    mul = numeric.mul

    def multiply(c: Ctx, out: list) -> None:
        factor = factor_fn(c)
        if factor < 0:
            raise RuleFailure(FailureCode.NEGATIVE_FACTOR)
        lots = c.lots
        total = 0
        for index, points in enumerate(lots):
            if points >= 0:
                scaled = mul(points * SCALE, factor) // SCALE
                lots[index] = scaled
                total += scaled
        if total > MAX_POINTS:
            raise RuleFailure(FailureCode.POINTS_LIMIT)
        out[slot], out[slot + 1], out[slot + 2] = factor, c.earned, total
        c.earned = total
    return multiply


def _cap(limit_fn: Fn, slot: int) -> Act:
    def cap(c: Ctx, out: list) -> None:
        value = limit_fn(c)
        if value < 0:
            raise RuleFailure(FailureCode.NEGATIVE_CAP)
        limit = value // SCALE
        before = c.earned
        if before > limit:
            excess = before - limit
            lots = c.lots
            for index in range(len(lots) - 1, -1, -1):   # latest lots are trimmed first
                points = lots[index]
                if points > 0:
                    take = points if points < excess else excess
                    lots[index] = points - take
                    excess -= take
            c.earned = limit
        out[slot], out[slot + 1], out[slot + 2] = limit, before, c.earned
    return cap


def _mark(slot: int) -> Act:
    def mark(c: Ctx, out: list) -> None:
        out[slot] = 1
    return mark


class ClosureEvaluator:
    """Evaluates one order's facts into an outcome record (a list of ints)."""

    def __init__(self, program: Program) -> None:
        self.program = program
        compiler = _ExprCompiler(program)
        self._template = [UNSET] * program.size
        self._n_lots = len(program.lots)
        ruleset = program.ruleset
        self._from = ruleset.valid_from.days if ruleset.valid_from else None
        self._until = ruleset.valid_until.days if ruleset.valid_until else None
        self._rules = []
        for plan in program.rules:
            conditions = tuple(compiler.compile(c.expr) for c in plan.rule.conditions)
            actions = []
            for action_plan in plan.actions:
                action = action_plan.action
                if isinstance(action, ast.Earn):
                    actions.append(_earn(compiler.compile(action.amount), action_plan.slot, action_plan.lot))
                elif isinstance(action, ast.Multiply):
                    actions.append(_multiply(compiler.compile(action.factor), action_plan.slot))
                elif isinstance(action, ast.Cap):
                    actions.append(_cap(compiler.compile(action.limit), action_plan.slot))
                else:
                    actions.append(_mark(action_plan.slot))
            self._rules.append((plan.status, plan.fail_code, plan.fail_where, plan.cond_base,
                                conditions, tuple(actions), plan.rule.stops))

    def run(self, facts: Facts) -> list[int]:
        out = self._template.copy()
        day = facts.scalars[S_DATE]
        if self._from is not None and day < self._from:
            out[0] = RULESET_BEFORE
            return out
        if self._until is not None and day > self._until:
            out[0] = RULESET_AFTER
            return out
        out[0] = RULESET_ACTIVE
        c = Ctx(facts, self._n_lots)
        for status, fail_code, fail_where, cond_base, conditions, actions, stops in self._rules:
            matched = True
            for index, condition in enumerate(conditions):
                try:
                    value = condition(c)
                except RuleFailure as failure:
                    out[cond_base + index] = COND_FAILED
                    out[status], out[fail_code], out[fail_where] = FAILED, int(failure.failure), index
                    matched = False
                    break
                if not value:
                    out[cond_base + index] = 0
                    out[status] = NOT_MATCHED
                    matched = False
                    break
                out[cond_base + index] = 1
            if not matched:
                continue
            saved_lots, saved_earned = c.lots.copy(), c.earned
            step = 0
            try:
                for step, action in enumerate(actions):
                    action(c, out)
            except RuleFailure as failure:
                c.lots, c.earned = saved_lots, saved_earned
                out[status], out[fail_code], out[fail_where] = FAILED, int(failure.failure), len(conditions) + step
                continue
            out[status] = APPLIED
            if stops:
                break
        base = self.program.lots_base
        out[base:base + self._n_lots] = c.lots
        return out
