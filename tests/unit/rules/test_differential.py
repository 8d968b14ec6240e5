"""Differential property test: the closure and wasm evaluators agree exactly.

For random well-typed rule sets and random orders, both evaluators must give
the same outcome records (every condition value, action effect, failure code
and lot) and therefore the same ``EarnResult`` (points, lots, tags, trace)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.rules.facts import extract
from shared.rules.ruleset import CompiledRuleSet

from .helpers import TENANT
from .strategies import order_and_customer, ruleset_source

ZONE = ZoneInfo(TENANT.time_zone)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=ruleset_source(), orders=st.lists(order_and_customer(), min_size=1, max_size=6))
def test_closure_and_wasm_agree(source, orders):
    compiled = CompiledRuleSet.from_source(source, "rs", 3)
    facts = [extract(o, c, ZONE, compiled.program.tag_literals) for o, c in orders]
    closure = [list(r) for r in compiled.records(facts, "closure")]
    wasm = [list(r) for r in compiled.records(facts, "wasm")]
    assert closure == wasm, source
    by_closure = compiled.evaluate_batch(TENANT, orders, evaluator="closure")
    by_wasm = compiled.evaluate_batch(TENANT, orders, evaluator="wasm")
    assert by_closure == by_wasm
    assert all(r.trace and r.trace[0].get("ruleset") != "failed" for r in by_closure), "internal failure"
