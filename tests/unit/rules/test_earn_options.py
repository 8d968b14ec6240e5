"""The earn options of issue 19: ``pending for N days`` and ``into "wallet"`` are kept
on the lot by both evaluators (closures and wasm), beside ``expiring``."""

from __future__ import annotations

import pytest

from shared.rules.errors import RuleSyntaxError
from shared.rules.ruleset import CompiledRuleSet

from .helpers import TENANT, WASM_TENANT, customer, order

SOURCE = '''
rule "base" then earn 10 points
rule "promo" when order.amount >= 50 then earn 50 points into "promo" pending for 14 days
rule "instant" then earn 5 points pending for 0 days expiring in 30 days into "partner-air"
'''


@pytest.mark.parametrize("tenant", [TENANT, WASM_TENANT], ids=["closure", "wasm"])
def test_both_evaluators_give_each_lot_its_window_and_wallet(tenant) -> None:
    result = CompiledRuleSet.from_source(SOURCE, "rs1", 1).evaluate(tenant, order("100.00"), customer())
    lots = {lot.rule: lot for lot in result.lots}
    assert (lots["base"].points, lots["base"].pending_days, lots["base"].wallet) == (10, None, None)
    assert (lots["promo"].points, lots["promo"].pending_days, lots["promo"].wallet) == (50, 14, "promo")
    assert (lots["instant"].pending_days, lots["instant"].wallet) == (0, "partner-air")
    assert lots["instant"].expires_at is not None


@pytest.mark.parametrize("source, fragment", [
    ('rule "a" then earn 1 points pending for 366 days', "pending window must be a whole number from 0 to 365"),
    ('rule "a" then earn 1 points pending for 1.5 days', "pending window must be a whole number"),
    ('rule "a" then earn 1 points into "Promo"', "wallet 'Promo' must be"),
    ('rule "a" then earn 1 points into ""', "wallet '' must be"),
    ('rule "a" then earn 1 points into "a" into "b"', "takes one wallet option"),
    ('rule "a" then earn 1 points expiring in 3 days expiring in 4 days', "takes one expiry option"),
])
def test_bad_options_are_refused_with_the_place(source, fragment) -> None:
    with pytest.raises(RuleSyntaxError) as refused:
        CompiledRuleSet.from_source(source, "rs1", 1)
    assert fragment in str(refused.value)
