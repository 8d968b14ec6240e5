"""The anomaly check over random earning histories: the sums come from the ledger
(entries written at random past instants), and the decision is exactly the rule:
never held at or under the floor, always held above both the floor and 50x the
customer's own 30-day daily baseline."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from fractions import Fraction

from hypothesis import HealthCheck, given, settings, strategies as st

from shared.clock import ManualClock
from shared.domain.orders import Order
from shared.fraud.anomaly import is_anomalous
from shared.fraud.controls import FraudControls
from shared.fraud.policy import AnomalyPolicy, FraudPolicies, FraudPolicy
from shared.ledger.entries import EntryDraft, EntryStatus, EntryType
from shared.ledger.service import Ledger, Plan, TransactionRequest

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
START = NOW - timedelta(days=40)
FLOOR = 1_000
POLICY = FraudPolicy(anomaly=AnomalyPolicy(floorPoints=FLOOR))
customers = itertools.count()

# (minutes after START, points, held?) for each past earn.
histories = st.lists(st.tuples(st.integers(0, 40 * 24 * 60 - 1), st.integers(0, 5_000), st.booleans()),
                     max_size=25)


def _order(customer: str) -> Order:
    return Order.model_validate({"customerId": customer, "orderId": "now", "amount": "1", "currency": "EUR",
                                 "timestamp": NOW.isoformat()})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories, points=st.integers(1, 200_000))
def test_the_decision_is_the_rule_over_ledger_histories(sqlite_store, history, points) -> None:
    # One store for all examples; each example has its own customer and its own clock.
    customer = f"h{next(customers)}"
    clock = ManualClock(START)
    ledger = Ledger(sqlite_store, clock)
    recent = baseline = 0
    for number, (minute, amount, held) in enumerate(sorted(history)):
        clock.advance(START + timedelta(minutes=minute) - clock.now())
        status = EntryStatus.PENDING if held and amount else EntryStatus.COMMITTED
        ledger.append_one(TransactionRequest("acme", customer, f"k{number}", "f",
                                             lambda head, a=amount, s=status: Plan([EntryDraft(EntryType.EARN, a, s)], {})))
        at = clock.now()
        if at > NOW - timedelta(days=1):
            recent += amount
        elif at > NOW - timedelta(days=31):
            baseline += amount
    clock.advance(NOW - clock.now())
    controls = FraudControls(sqlite_store, ledger, clock, FraudPolicies(sqlite_store, clock))
    reasons = controls.earn_reasons("acme", _order(customer), ledger.head("acme", customer), points, POLICY)
    held = any(r["code"] == "anomaly" for r in reasons)
    total = recent + points
    assert held == is_anomalous(total, baseline, POLICY.anomaly)
    if total <= FLOOR:
        assert not held
    if total > FLOOR and total * 30 > 50 * baseline:
        assert held


@settings(max_examples=300, deadline=None)
@given(recent=st.integers(0, 10**9), baseline=st.integers(0, 10**9), floor=st.integers(0, 10**6),
       multiplier=st.integers(2, 1000), days=st.integers(7, 365))
def test_the_rule_itself(recent, baseline, floor, multiplier, days) -> None:
    policy = AnomalyPolicy(multiplier=multiplier, baselineDays=days, floorPoints=floor)
    held = is_anomalous(recent, baseline, policy)
    if recent <= floor:
        assert not held
    rate = Fraction(baseline, days)  # exact: the oracle must not round either
    assert held == (recent > floor and recent > multiplier * rate)


def test_disabled_never_holds() -> None:
    assert not is_anomalous(10**12, 0, AnomalyPolicy(enabled=False))


def test_an_anomalous_order_is_held_over_http(client, platform, tenant, set_policy, send) -> None:
    set_policy({"anomaly": {"floorPoints": 500}})
    assert send("o1", amount="20.00")["status"] == "credited"     # 200 points: under the floor
    held = send("o2", amount="100.00")                              # 1,000 more in a day, no baseline
    assert held["status"] == "held"
    assert held["reason"]["reasons"][0]["code"] == "anomaly"
    assert held["reason"]["reasons"][0]["recent"] == 1_200
