"""A checked rule set laid out for evaluation: the contract between the two evaluators.

``build`` turns a parsed source into a ``Program``: the rules in evaluation
order (priority descending, then source order), each with fixed slots in the
*outcome record*, a flat array of integers that both evaluators fill in
exactly the same way (the closure evaluator as a Python list, the wasm
evaluator as i64s in linear memory). ``shared.rules.result`` turns an outcome
record into an ``EarnResult`` with its trace, so the two evaluators agree as
soon as their records agree, and the differential test compares both.

Outcome record layout (every slot starts at -1, "not evaluated"):

* slot 0: rule set status (0 active, 1 before ``valid from``, 2 after ``valid until``)
* per rule: status (0 not matched, 1 applied, 2 failed), failure code,
  failure place (index of the condition, or condition count + action index),
  one slot per condition (0 false, 1 true, 2 failed), then each action's slots
  (earn: points; multiply: factor, before, after; cap: cap, before, after;
  tag / stop: 1 when done)
* then one slot per ``earn`` action: the lot's final points (-1: none)

Earn actions own one lot each, numbered in evaluation order, so "trim the
latest lots first" (``cap``) is a walk down the lot numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.rules import ast
from shared.rules.checker import Typed, check
from shared.rules.cost import CostReport, enforce
from shared.rules.parser import parse
from shared.rules.schema import N_SCALARS

RULESET_ACTIVE, RULESET_BEFORE, RULESET_AFTER = 0, 1, 2
NOT_MATCHED, APPLIED, FAILED = 0, 1, 2
COND_FALSE, COND_TRUE, COND_FAILED = 0, 1, 2
UNSET = -1

_WIDTH = {"earn": 1, "multiply": 3, "cap": 3, "tag": 1, "stop": 1}


@dataclass(frozen=True)
class ActionPlan:
    action: ast.Action
    kind: str
    slot: int
    lot: int = -1                    # earn only

    @property
    def width(self) -> int:
        return _WIDTH[self.kind]


@dataclass(frozen=True)
class RulePlan:
    rule: ast.Rule
    base: int
    actions: tuple[ActionPlan, ...]

    @property
    def status(self) -> int:
        return self.base

    @property
    def fail_code(self) -> int:
        return self.base + 1

    @property
    def fail_where(self) -> int:
        return self.base + 2

    @property
    def cond_base(self) -> int:
        return self.base + 3

    @property
    def changes_lots(self) -> bool:
        """Whether an action rewrites existing lots (so a failure must restore them)."""
        return any(a.kind in ("multiply", "cap") for a in self.actions)


@dataclass(frozen=True)
class Program:
    typed: Typed
    cost: CostReport
    rules: tuple[RulePlan, ...]
    lots: tuple[tuple[RulePlan, ActionPlan], ...]    # by lot number
    lots_base: int
    size: int                                          # slots in the outcome record
    tag_literals: tuple[str, ...]                      # input slot N_SCALARS + i: 1 if the customer has tag i
    string_literals: tuple[str, ...]                   # every string literal (wasm interns them first)

    @property
    def ruleset(self) -> ast.RuleSet:
        return self.typed.ruleset

    @property
    def n_inputs(self) -> int:
        return N_SCALARS + len(self.tag_literals)

    def tag_slot(self, tag: str) -> int:
        return N_SCALARS + self.tag_literals.index(tag)


def _walk(node: ast.Expr):
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(ast.children(current))


def layout(typed: Typed, cost: CostReport) -> Program:
    slot = 1
    plans: list[RulePlan] = []
    lots: list[tuple[RulePlan, ActionPlan]] = []
    earn_slots: list[tuple[int, ActionPlan]] = []
    for rule in typed.ruleset.in_evaluation_order():
        base = slot
        slot += 3 + len(rule.conditions)
        actions = []
        for action in rule.actions:
            kind = ast.action_kind(action)
            plan = ActionPlan(action, kind, slot, len(earn_slots) if kind == "earn" else -1)
            if kind == "earn":
                earn_slots.append((len(plans), plan))
            actions.append(plan)
            slot += plan.width
        plans.append(RulePlan(rule, base, tuple(actions)))
    lots = [(plans[index], plan) for index, plan in earn_slots]
    tags: list[str] = []
    strings: list[str] = []
    for rule in typed.ruleset.rules:
        exprs = [c.expr for c in rule.conditions] + [
            e for a in rule.actions for e in (getattr(a, "amount", None), getattr(a, "factor", None),
                                              getattr(a, "limit", None)) if e is not None]
        for expr in exprs:
            for node in _walk(expr):
                if isinstance(node, ast.Member) and isinstance(node.container, ast.Field):
                    assert isinstance(node.element, ast.Str)
                    if node.element.value not in tags:
                        tags.append(node.element.value)
                elif isinstance(node, ast.Str) and node.value not in strings:
                    strings.append(node.value)
    return Program(typed, cost, tuple(plans), tuple(lots), slot, slot + len(lots), tuple(tags), tuple(strings))


def build(source: str) -> Program:
    """Parse, type-check, cost-check and lay out: the whole front end.

    Raises ``RuleSourceRejected``, ``RuleSyntaxError``, ``RuleTypeError`` or
    ``RuleBudgetExceeded`` (all ``ValidationFailed``)."""
    ruleset = parse(source)
    typed = check(ruleset)
    cost = enforce(ruleset)
    return layout(typed, cost)
