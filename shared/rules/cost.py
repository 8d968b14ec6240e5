"""The static cost model: an upper bound on the work of evaluating one order.

Computed from the syntax tree at validate/save time; a rule set over
``COST_BUDGET`` (10,000 units) is rejected with the cost of each rule. The
units are abstract "node visits", chosen so the bound holds for any order the
schema admits:

=====================================  =========================================
construct                              cost
=====================================  =========================================
literal, field, ``earned``             1
``-x``, ``not x``                      1 + cost(x)
``a op b`` (arithmetic, comparison)    1 + cost(a) + cost(b)
``f(a, ...)``                          1 + sum of the arguments
``and`` / ``or`` of n parts            1 + sum of the parts
``x between a and b``                  1 + cost(x) + cost(a) + cost(b)
``x in [l1..ln]``                      1 + cost(x) + n
``"t" in customer.tags``               2 (a precomputed flag)
``any/all v in order.items has B``     1 + 100 * (cost(B) + 1)
``count(v in order.items where W)``    1 + 100 * (cost(W) + 1)
``sum(E for v in order.items where W)`` 1 + 100 * (cost(E) + cost(W) + 1)
``earn E points``                      2 + cost(E)
``multiply earned by E``, ``cap``      2 + cost(E) + number of earn actions in the set
``tag``, ``stop``                      1
a rule                                 1 + its conditions + its actions
=====================================  =========================================

100 is the schema's maximum item count (``MAX_ITEMS_PER_ORDER``). The wasm
evaluator's fuel is derived from this cost (``shared.rules.wasm_runtime``).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.rules import ast
from shared.rules.errors import Diagnostic, RuleBudgetExceeded
from shared.rules.limits import COST_BUDGET, ITEMS_BOUND


@dataclass(frozen=True)
class CostReport:
    total: int
    per_rule: dict[str, int]
    budget: int = COST_BUDGET

    def to_dict(self) -> dict:
        return {"total": self.total, "budget": self.budget, "perRule": dict(self.per_rule)}


def expr_cost(node: ast.Expr) -> int:
    if isinstance(node, (ast.Num, ast.Str, ast.DateLit, ast.Bool, ast.Earned, ast.Field)):
        return 1
    if isinstance(node, ast.Member):
        if isinstance(node.container, ast.Field):
            return 2
        assert isinstance(node.container, ast.ListLit)
        return 1 + expr_cost(node.element) + len(node.container.items)
    if isinstance(node, ast.Quantifier):
        return 1 + ITEMS_BOUND * (expr_cost(node.body) + 1)
    if isinstance(node, ast.Count):
        return 1 + ITEMS_BOUND * ((expr_cost(node.where) if node.where else 0) + 1)
    if isinstance(node, ast.Sum):
        return 1 + ITEMS_BOUND * (expr_cost(node.value) + (expr_cost(node.where) if node.where else 0) + 1)
    return 1 + sum(expr_cost(child) for child in ast.children(node))


def action_cost(action: ast.Action, lots: int) -> int:
    if isinstance(action, ast.Earn):
        return 2 + expr_cost(action.amount)
    if isinstance(action, ast.Multiply):
        return 2 + expr_cost(action.factor) + lots
    if isinstance(action, ast.Cap):
        return 2 + expr_cost(action.limit) + lots
    return 1


def rule_cost(rule: ast.Rule, lots: int) -> int:
    return (1 + sum(expr_cost(c.expr) for c in rule.conditions)
            + sum(action_cost(a, lots) for a in rule.actions))


def measure(ruleset: ast.RuleSet) -> CostReport:
    lots = sum(isinstance(a, ast.Earn) for r in ruleset.rules for a in r.actions)
    per_rule = {rule.name: rule_cost(rule, lots) for rule in ruleset.rules}
    return CostReport(sum(per_rule.values()), per_rule)


def enforce(ruleset: ast.RuleSet, budget: int = COST_BUDGET) -> CostReport:
    report = measure(ruleset)
    if report.total > budget:
        ranked = sorted(report.per_rule.items(), key=lambda kv: -kv[1])
        listing = ", ".join(f'"{name}" {cost:,}' for name, cost in ranked[:20])
        more = f" and {len(ranked) - 20} more" if len(ranked) > 20 else ""
        first = max(ruleset.rules, key=lambda r: report.per_rule[r.name])
        diagnostic = Diagnostic(
            f"rule set costs {report.total:,} units; the budget is {budget:,}. Cost per rule: {listing}{more}",
            first.pos.line, first.pos.column, None,
            "aggregates over order.items cost 100x their body: merge them or simplify their conditions")
        raise RuleBudgetExceeded([diagnostic], report.total, budget, report.per_rule)
    return CostReport(report.total, report.per_rule, budget)
