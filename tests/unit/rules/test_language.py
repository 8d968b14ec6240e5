"""The rule language front end: parsing, type checking, the cost budget, and the
closure evaluator's semantics on the issue's example rule set."""

from __future__ import annotations

import pytest

from shared.errors import ValidationFailed
from shared.rules import numeric
from shared.rules.errors import RuleBudgetExceeded, RuleSyntaxError, RuleTypeError
from shared.rules.program import build
from shared.rules.ruleset import CompiledRuleSet

from .helpers import TENANT, customer, order

EXAMPLE = '''
# The example of the issue.
rule "Base earn" priority 10
  when order.channel in ["web", "store"]
  then earn floor(order.total * 10) points

rule "Platinum double"
  when customer.tier = "platinum" and order.total >= 50
  then multiply earned by 2

rule "Coffee bonus"
  when any item in order.items has item.category = "coffee"
  then earn 50 points expiring in 90 days
'''


def evaluate(source: str, the_order=None, the_customer=None):
    compiled = CompiledRuleSet.from_source(source, "rs1", 1)
    return compiled.evaluate(TENANT, the_order or order(), the_customer or customer())


def test_issue_example_earns_base_double_and_coffee():
    result = evaluate(EXAMPLE, order("12.34", items=(("A", "coffee", 1, "12.34"),)), customer(tier="platinum"))
    # floor(12.34 * 10) = 123; platinum needs total >= 50, so no doubling; coffee bonus 50.
    assert [lot.points for lot in result.lots] == [123, 50]
    assert result.lots[1].expires_at is not None and result.lots[0].expires_at is None
    assert [t["status"] for t in result.trace] == ["applied", "not-matched", "applied"]
    assert result.trace[1]["conditions"] == [
        {"condition": 'customer.tier = "platinum"', "value": True},
        {"condition": "order.total >= 50", "value": False}]


def test_platinum_doubles_everything_earned_before():
    result = evaluate(EXAMPLE, order("60.00"), customer(tier="platinum"))
    assert result.points == 1200
    assert result.trace[1]["actions"] == [{"action": "multiply", "factor": "2", "before": 600, "after": 1200}]


def test_decimal_arithmetic_is_exact():
    result = evaluate('rule "r" when 0.1 + 0.2 = 0.3 then earn 1 points')
    assert result.points == 1
    assert numeric.mul(numeric.from_decimal(numeric.Decimal("0.1")), 30000) == 3000
    assert numeric.div(10000, 30000) == 3333 and numeric.div(-10000, 30000) == -3333


@pytest.mark.parametrize("expr, points", [
    ("floor(-1.5) = -2", 1), ("ceil(-1.5) = -1", 1), ("round(2.5) = 3", 1), ("round(-2.5) = -3", 1),
    ("min(3, 1, 2) = 1 and max(3, 1, 2) = 3", 1), ("7 / 2 = 3.5", 1), ("-7 / 2 = -3.5", 1),
    ("1 / 3 = 0.3333", 1), ("-1 / 3 = -0.3333", 1), ("0.0001 * 0.5 = 0", 1), ("0.0003 * 0.5 = 0.0001", 1),
])
def test_numeric_functions(expr, points):
    assert evaluate(f'rule "r" when {expr} then earn 1 points').points == points


def test_division_by_zero_is_recorded_and_later_rules_still_run():
    result = evaluate('rule "boom" when order.total / 0 > 1 then earn 5 points\n'
                      'rule "after" then earn 7 points')
    assert result.points == 7
    assert result.trace[0]["status"] == "failed"
    assert result.trace[0]["error"]["code"] == "division-by-zero"
    assert result.trace[0]["conditions"][0]["value"] == "failed"


def test_failed_action_rolls_back_the_whole_rule():
    result = evaluate('rule "a" then earn 10 points\n'
                      'rule "b" then earn 5 points, multiply earned by 100000000000000')
    assert result.points == 10
    assert result.trace[1]["status"] == "failed"
    assert result.trace[1]["error"]["in"] == "action 2 (multiply)"


def test_overflow_is_a_recorded_failure():
    result = evaluate('rule "big" then earn 100000000000000 * 100000000000000 points')
    assert result.points == 0 and result.trace[0]["error"]["code"] == "overflow"


def test_cap_trims_latest_lots_first_and_stop_skips_the_rest():
    result = evaluate('rule "a" priority 5 then earn 100 points\n'
                      'rule "b" priority 4 then earn 50 points expiring in 10 days\n'
                      'rule "cap" priority 3 then cap earned at 120, stop\n'
                      'rule "late" then earn 1000 points')
    assert [(lot.rule, lot.points) for lot in result.lots] == [("a", 100), ("b", 20)]
    assert result.trace[3]["status"] == "skipped"


def test_priority_orders_rules_and_ties_keep_source_order():
    result = evaluate('rule "low" then earn 1 points\nrule "high" priority 9 then earn 2 points\n'
                      'rule "low2" then earn 3 points')
    assert [t["rule"] for t in result.trace] == ["high", "low", "low2"]


def test_aggregates_over_items():
    items = (("A", "coffee", 2, "3.50"), ("B", "tea", 1, "2.00"), ("C", "coffee", 1, "1.25"))
    source = '''
    rule "count" when count(i in order.items where i.category = "coffee") = 2 then earn 1 points
    rule "sum" then earn sum(i.quantity * i.unit_price for i in order.items where i.category = "coffee") points
    rule "all" when all i in order.items has i.quantity >= 1 then earn 100 points
    rule "none" when any i in order.items has i.category = "juice" then earn 1000 points
    '''
    result = evaluate(source, order("10.25", items=items))
    assert [lot.points for lot in result.lots] == [1, 8, 100]


def test_dates_times_weekday_and_validity_window():
    # 2026-05-01T22:30Z is Saturday 00:30 on 2026-05-02 in Paris (UTC+2).
    source = '''
    valid from 2026-05-01 until 2026-05-31
    rule "weekend night" when order.weekday in ["saturday", "sunday"] and order.hour < 6
      and order.date between 2026-05-02 and 2026-05-02 then earn 5 points
    '''
    assert evaluate(source, order(timestamp="2026-05-01T22:30:00Z")).points == 5
    outside = evaluate(source, order(timestamp="2026-06-01T10:00:00Z"))
    assert outside.points == 0 and outside.trace[0]["ruleset"] == "inactive"


def test_customer_fields_and_tags():
    source = '''
    rule "vip" when "vip" in customer.tags and customer.order_count >= 3 and customer.member_days > 100
      then earn 10 points, tag customer "loyal", tag customer "vip"
    rule "no tier" when customer.tier = "" then earn 1 points
    '''
    result = evaluate(source, the_customer=customer(tags=("vip",), order_count=3))
    assert result.points == 11
    assert result.tags_to_add == ("loyal",)     # "vip" is already there


def test_unknown_field_names_the_rule_line_and_suggests():
    with pytest.raises(RuleTypeError) as caught:
        build('rule "Base"\n  when order.totl > 5\n  then earn 1 points')
    text = str(caught.value)
    assert 'rule "Base", line 2, column 8: unknown name order.totl' in text
    assert "did you mean order.total?" in text
    assert "\n    " + "  when order.totl > 5" in text and "       ^" in text
    assert isinstance(caught.value, ValidationFailed)


def test_syntax_error_suggests_keyword():
    with pytest.raises(RuleSyntaxError) as caught:
        build('rule "x" wen order.total > 5 then earn 1 points')
    assert "did you mean when?" in str(caught.value)


@pytest.mark.parametrize("source, fragment", [
    ('rule "a" when order.channel > "web" then earn 1 points', "supports = and != only"),
    ('rule "a" when order.total then earn 1 points', "needs a boolean"),
    ('rule "a" then earn order.channel points', "earn needs a number"),
    ('rule "a" when order.weekday = "sundy" then earn 1 points', 'did you mean "sunday"?'),
    ('rule "a" then stop, earn 1 points', "stop must be the last action"),
    ('rule "a" then earn 1 points\nrule "a" then earn 2 points', "already named"),
    ('rule "a" when order.items = 1 then earn 1 points', "only be used in any/all/count/sum"),
    ('rule "a" when flor(order.total) > 1 then earn 1 points', "did you mean floor?"),
    ('rule "a" when order.total in [1, "x"] then earn 1 points', "same type"),
    ('rule "a" when any i in order.items has any j in order.items has true then earn 1 points', "nested"),
])
def test_type_errors(source, fragment):
    with pytest.raises(RuleTypeError) as caught:
        build(source)
    assert fragment in str(caught.value)


def test_budget_rejects_with_cost_per_rule():
    heavy = "\n and ".join(f'any i in order.items has i.category = "c{n}"' for n in range(30))
    with pytest.raises(RuleBudgetExceeded) as caught:
        build(f'rule "heavy" when {heavy} then earn 1 points\nrule "light" then earn 1 points')
    assert caught.value.per_rule["heavy"] > 10_000
    assert '"heavy"' in str(caught.value) and '"light" 4' in str(caught.value)


def test_cost_model_charges_aggregates_by_max_items():
    program = build('rule "r" when any i in order.items has i.category = "coffee" then earn 1 points')
    # rule 1 + aggregate (1 + 100 * (compare 3 + 1)) + earn (2 + 1)
    assert program.cost.total == 1 + 401 + 3


def test_the_reference_example_is_valid_and_costs_what_it_says():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "grammar" / "README.md").read_text(encoding="utf-8")
    example = readme.split("```text", 1)[1].split("```", 1)[0]
    program = build(example)
    assert 430 <= program.cost.total <= 450          # "about 440 units"
    result = CompiledRuleSet(program, "doc").evaluate(
        TENANT, order("60.00", items=(("A", "coffee", 1, "60.00"),), timestamp="2026-07-01T10:00:00Z"),
        customer(tier="platinum"))
    assert [lot.points for lot in result.lots] == [1200, 50] and result.tags_to_add == ("coffee-lover",)
