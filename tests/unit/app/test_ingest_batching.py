"""Batched rule evaluation at ingest: wasm tenants' orders are evaluated in one
wasmtime call per batch, and a result computed on a stale head is never used."""

from __future__ import annotations

import pytest

from shared.app.messages import order_message
from shared.ledger.entries import order_record_id
from shared.platform import Platform
from shared.rules.ruleset import CompiledRuleSet
from tests.conftest import add_customer, auth, claimed, order_body

REASON = {"code": "campaign", "text": "first-order bonus"}
# Points depend on the head (how many orders came before): the batch must not guess them.
SOURCE = ('rule "base" then earn floor(order.total) points\n'
          'rule "second order" when customer.order_count = 1 then earn 7 points')


@pytest.fixture
def wasm_tenant(client, platform, tenant):
    assert client.patch("/v1/tenant", json={"evaluator": "wasm"}, headers=auth(tenant.admin)).status_code == 200
    saved = client.post("/v1/rules/versions", json={"ruleSetId": "main", "source": SOURCE, "reason": REASON},
                        headers=auth(tenant.admin))
    assert saved.status_code == 201, saved.text
    activated = client.post("/v1/rules/activate", json={"target": {"ruleSetId": "main", "version": 1},
                                                        "reason": REASON}, headers=auth(tenant.admin))
    assert activated.status_code == 200, activated.text
    return tenant


@pytest.fixture
def wasm_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = CompiledRuleSet.records

    def counting(self, facts, evaluator):  # type: ignore[no-untyped-def]
        if evaluator == "wasm":
            calls.append(len(facts))
        return real(self, facts, evaluator)

    monkeypatch.setattr(CompiledRuleSet, "records", counting)
    return calls


def _bodies(platform: Platform, orders: list[tuple[str, str, str]]) -> list[dict]:
    from shared.domain.orders import Order

    now = platform.clock.now()
    return [claimed(platform, order_message("acme", Order.model_validate(order_body(c, o, a)), now).to_body())
            for c, o, a in orders]


def _points(platform: Platform, customer: str, order_id: str) -> int:
    return platform.ledger.record("acme", customer, order_record_id(order_id))["points"]


def test_a_batch_costs_one_wasm_call_for_its_customers_first_orders(platform, wasm_tenant, wasm_calls) -> None:
    add_customer(platform, "acme", "c4")
    orders = [("c1", "a1", "10.00"), ("c2", "a2", "20.00"), ("c3", "a3", "30.00"), ("c4", "a4", "5.00"),
              ("c1", "a5", "10.00")]  # c1's second order depends on the first: evaluated in its own plan
    report = platform.ingest.handle(_bodies(platform, orders))
    assert report.credited == 5
    assert wasm_calls == [4, 1]
    assert [_points(platform, c, o) for c, o, _ in orders] == [10, 20, 30, 5, 17]


def test_a_result_computed_on_a_stale_head_is_discarded(platform, wasm_tenant, wasm_calls, tmp_path) -> None:
    platform.ingest.handle(_bodies(platform, [("c1", "b1", "10.00")]))  # this process caches c1's head
    other = Platform(settings=platform.settings, store=platform.store, bus=platform.bus, clock=platform.clock,
                     rules=None, key_provider=platform.key_provider)
    other.ingest.handle(_bodies(platform, [("c1", "b2", "10.00")]))  # a second writer moves c1 on
    assert _points(platform, "c1", "b2") == 17
    wasm_calls.clear()
    platform.ingest.handle(_bodies(platform, [("c1", "b3", "10.00")]))
    assert wasm_calls == [1, 1]  # the hint (order_count 1) was wrong: evaluated again on the true head
    assert _points(platform, "c1", "b3") == 10  # third order: no second-order bonus


def test_closure_tenants_are_evaluated_in_their_plans_only(client, platform, tenant, monkeypatch) -> None:
    saved = client.post("/v1/rules/versions", json={"ruleSetId": "main", "source": SOURCE, "reason": REASON},
                        headers=auth(tenant.admin))
    assert saved.status_code == 201
    assert client.post("/v1/rules/activate", json={"target": {"ruleSetId": "main", "version": 1}, "reason": REASON},
                       headers=auth(tenant.admin)).status_code == 200
    sizes: list[tuple[str, int]] = []
    real = CompiledRuleSet.records
    monkeypatch.setattr(CompiledRuleSet, "records",
                        lambda self, facts, evaluator: sizes.append((evaluator, len(facts))) or real(self, facts,
                                                                                                     evaluator))
    platform.ingest.handle(_bodies(platform, [("c1", "d1", "10.00"), ("c2", "d2", "10.00"), ("c1", "d3", "1.00")]))
    # The fast path costs little per call: no guessing ahead, one exact evaluation per order.
    assert sizes == [("closure", 1)] * 3
    assert [_points(platform, c, o) for c, o in (("c1", "d1"), ("c2", "d2"), ("c1", "d3"))] == [10, 10, 8]
