"""``customer.tier_multiplier`` in the rule language: both evaluators read it alike, and
ingestion fills it from the tenant's tier programme."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.app.customers import CustomerProfile
from shared.domain.orders import Order
from shared.earning import CustomerContext
from shared.platform import build_platform
from shared.rules.facts import extract
from shared.rules.ruleset import CompiledRuleSet
from shared.settings import Settings
from tests.conftest import drain, order_body

from .conftest import bare_tenant, earn, program
from tests.unit.rules.helpers import TENANT, order

SOURCES = (
    'rule "tiered" then earn floor(order.total * 10 * customer.tier_multiplier) points',
    'rule "base" then earn floor(order.total) points\n'
    'rule "boost" when customer.tier_multiplier > 1 then multiply earned by customer.tier_multiplier',
    'rule "cap" when customer.tier_multiplier >= 2 and customer.tier = "gold" then earn 7 points',
)


@settings(max_examples=150, deadline=None)
@given(source=st.sampled_from(SOURCES),
       multiplier=st.decimals("0.0001", "10", places=4),
       amount=st.sampled_from(("0.01", "1", "12.34", "99.99", "9999999.99")),
       tier=st.sampled_from((None, "gold", "silver")))
def test_closure_and_wasm_agree_on_the_multiplier(source, multiplier, amount, tier) -> None:
    compiled = CompiledRuleSet.from_source(source, "rs", 1)
    pair = (order(amount), CustomerContext("c1", date(2025, 1, 1), tier=tier, tier_multiplier=multiplier))
    facts = [extract(*pair, ZoneInfo(TENANT.time_zone), compiled.program.tag_literals)]
    assert [list(r) for r in compiled.records(facts, "closure")] == [list(r) for r in compiled.records(facts, "wasm")]
    by_closure = compiled.evaluate_batch(TENANT, [pair], evaluator="closure")
    assert by_closure == compiled.evaluate_batch(TENANT, [pair], evaluator="wasm")
    if source == SOURCES[0]:
        assert by_closure[0].points == int((Decimal(amount) * 10 * multiplier) // 1)


class _Provider:
    """Ingestion earns by one compiled rule set (the real rule language, closure evaluator)."""

    def __init__(self, source: str) -> None:
        self.compiled = CompiledRuleSet.from_source(source, "tiered", 1)

    def for_tenant(self, tenant, customer_id):  # type: ignore[no-untyped-def]
        return self.compiled


def test_ingestion_reads_the_multiplier_of_the_customers_current_tier(tmp_path, clock) -> None:
    settings_ = Settings.from_env({"ACCRUE_DATA_DIR": str(tmp_path / "data"), "ACCRUE_SQLITE_SYNCHRONOUS": "NORMAL"})
    platform = build_platform(settings_, clock=clock, rules=_Provider(SOURCES[0]))
    try:
        bare_tenant(platform, "t1")
        platform.customers.register("t1", CustomerProfile(customerId="legacy", joinDate=date(2025, 1, 1),
                                                          tier="diamond"))
        platform.tiers.save_program("t1", program())
        earn(platform, "t1", "c1", "seed", 600)  # gold: multiplier 1.5
        drain(platform)
        for customer_id, order_id in (("c1", "o1"), ("legacy", "o2")):
            platform.intake.accept("t1", [Order.model_validate(order_body(customer_id, order_id, amount="10.00"))])
        drain(platform)
        assert platform.ledger.head("t1", "c1").lifetime_earned == 600 + 150   # floor(10 * 10 * 1.5)
        assert platform.ledger.head("t1", "legacy").lifetime_earned == 100     # not in the programme: 1
    finally:
        platform.close()
