"""Tier behaviour through the real platform: upgrades from the change feed, downgrades
at the periodic evaluation with grace, history, redelivery, healing, isolation."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from shared.clock import iso, parse_iso
from shared.store.layout import CUSTOMERS, LEDGER, WEBHOOK_MESSAGES, customer_pk
from shared.store.port import Filter, Query
from shared.tiers.history import TIER_CHANGE_DOC, change_id
from shared.tiers.schedule import next_evaluation
from tests.conftest import Crashed, crashing, drain, run_in_threads

from .conftest import bare_tenant, earn, program, refund

PARIS = ZoneInfo("Europe/Paris")


def _tier(platform, tenant_id="t1", customer_id="c1"):  # type: ignore[no-untyped-def]
    return platform.customers.get(tenant_id, customer_id).get("tier")


def _history(platform, tenant_id="t1", customer_id="c1"):  # type: ignore[no-untyped-def]
    return list(reversed(platform.tiers.history.list(tenant_id, customer_id, limit=200)))


def _to_next_evaluation(platform, clock, stored_program, after=timedelta(minutes=5)):  # type: ignore
    """Move the clock just past the next scheduled evaluation and run the timer job."""
    target = next_evaluation(stored_program, clock.now(), PARIS) + after
    clock.advance(target - clock.now())
    drain(platform)
    return platform.tiers.run_due()


def test_upgrade_happens_as_soon_as_the_threshold_is_crossed(platform, clock) -> None:
    bare_tenant(platform, "t1")
    platform.tiers.save_program("t1", program())
    earn(platform, "t1", "c1", "o1", 60)
    drain(platform)
    assert _tier(platform) is None
    earn(platform, "t1", "c1", "o2", 60)  # 120: silver
    drain(platform)
    assert _tier(platform) == "silver"
    earn(platform, "t1", "c1", "o3", 2000)  # 2120: straight to platinum, one change
    drain(platform)
    assert _tier(platform) == "platinum"
    history = _history(platform)
    assert [(h["fromTier"], h["toTier"], h["reason"], h["trigger"]) for h in history] == [
        (None, "silver", "threshold-reached", "projection"),
        ("silver", "platinum", "threshold-reached", "projection")]
    assert history[1]["qualifying"]["points"] == 2120 and history[1]["changeSeq"] == 2
    assert history[1]["at"] == iso(clock.now()) and history[1]["programVersion"] == 1


def test_a_refund_never_downgrades_outside_an_evaluation(platform, clock) -> None:
    bare_tenant(platform, "t1")
    platform.tiers.save_program("t1", program())
    earn(platform, "t1", "c1", "o1", 600, amount="60.00")
    drain(platform)
    assert _tier(platform) == "gold"
    assert refund(platform, "t1", "o1", "r1", Decimal("60.00")) == 600
    drain(platform)
    assert _tier(platform) == "gold" and len(_history(platform)) == 1
    assert platform.tiers.customer_tier("t1", "c1")["qualifying"]["points"] == 0


def test_next_evaluation_grace_keeps_the_tier_through_one_evaluation(platform, clock) -> None:
    bare_tenant(platform, "t1")
    stored = program(windowMonths=1)
    platform.tiers.save_program("t1", stored)
    earn(platform, "t1", "c1", "o1", 600)
    drain(platform)
    assert _tier(platform) == "gold"
    # 1 Dec: the earn of 1 Nov is still inside the one-month window.
    [report] = _to_next_evaluation(platform, clock, stored)
    assert report.customers == 1 and _tier(platform) == "gold"
    assert platform.customers.get("t1", "c1").get("tierBelowSince") is None
    # 1 Jan: below (0 points) for the first time: kept, in grace until the next evaluation.
    [report] = _to_next_evaluation(platform, clock, stored)
    assert report.in_grace == 1 and _tier(platform) == "gold"
    view = platform.tiers.customer_tier("t1", "c1")
    assert view["belowSince"] == report.evaluation_at
    assert view["graceUntil"] == iso(next_evaluation(stored, parse_iso(report.evaluation_at), PARIS))
    # A second run on the same date changes nothing.
    assert platform.tiers.run_due() == []
    # 1 Feb: still below: downgraded to the highest tier still reached (none).
    [report] = _to_next_evaluation(platform, clock, stored)
    assert report.downgraded == 1 and _tier(platform) is None
    last = _history(platform)[-1]
    assert (last["fromTier"], last["toTier"], last["reason"], last["trigger"], last["direction"]) == \
        ("gold", None, "below-threshold", "evaluation", "down")
    assert last["evaluationAt"] == report.evaluation_at and last["belowSince"] == view["belowSince"]


def test_requalifying_before_the_evaluation_clears_the_grace_clock(platform, clock) -> None:
    bare_tenant(platform, "t1")
    stored = program(windowMonths=1)
    platform.tiers.save_program("t1", stored)
    earn(platform, "t1", "c1", "o1", 600)
    drain(platform)
    _to_next_evaluation(platform, clock, stored)
    _to_next_evaluation(platform, clock, stored)  # below: in grace
    assert platform.customers.get("t1", "c1")["tierBelowSince"] is not None
    clock.advance(timedelta(days=20))
    earn(platform, "t1", "c1", "o2", 550)
    drain(platform)
    _to_next_evaluation(platform, clock, stored)  # 550 >= gold again: confirmed
    assert _tier(platform) == "gold" and platform.customers.get("t1", "c1")["tierBelowSince"] is None


def test_days_grace_and_downgrade_to_the_tier_still_reached(platform, clock) -> None:
    bare_tenant(platform, "t1")
    stored = program(windowMonths=1, grace={"kind": "days", "days": 45})
    platform.tiers.save_program("t1", stored)
    earn(platform, "t1", "c1", "o1", 2500)
    drain(platform)
    assert _tier(platform) == "platinum"
    _to_next_evaluation(platform, clock, stored)  # 1 Dec: still inside the window
    clock.advance(timedelta(days=5))
    earn(platform, "t1", "c1", "o2", 150)  # keeps silver
    [first_below] = _to_next_evaluation(platform, clock, stored)  # 1 Jan: 150 points: below platinum
    assert first_below.in_grace == 1 and _tier(platform) == "platinum"
    [second] = _to_next_evaluation(platform, clock, stored)  # 1 Feb: 31 days < 45: still in grace
    assert second.in_grace == 1 and _tier(platform) == "platinum"
    earn(platform, "t1", "c1", "o3", 150)
    [third] = _to_next_evaluation(platform, clock, stored)  # 1 Mar: 59 days >= 45: down to silver (150)
    assert third.downgraded == 1 and _tier(platform) == "silver"


def test_spend_qualifies_and_refunds_reduce_it(platform, clock) -> None:
    bare_tenant(platform, "t1")
    platform.tiers.save_program("t1", program(tiers=[{"name": "silver", "minSpend": "100"},
                                                     {"name": "gold", "minSpend": "1000", "multiplier": "2"}]))
    earn(platform, "t1", "c1", "o1", 0, amount="99.99")
    drain(platform)
    assert _tier(platform) is None
    earn(platform, "t1", "c1", "o2", 0, amount="0.01")
    drain(platform)
    assert _tier(platform) == "silver"
    earn(platform, "t1", "c1", "o3", 50, amount="950.00")
    drain(platform)
    assert _tier(platform) == "gold"
    refund(platform, "t1", "o3", "r1", Decimal("100"))
    drain(platform)
    assert platform.tiers.customer_tier("t1", "c1")["qualifying"]["spend"] == "950.00"


def test_redelivered_and_reordered_changes_are_no_ops(platform, clock) -> None:
    bare_tenant(platform, "t1", customers=("c1", "c2"))
    platform.tiers.save_program("t1", program())
    endpoint, _ = _tier_endpoint(platform, "t1")
    for n in range(6):
        earn(platform, "t1", f"c{1 + n % 2}", f"o{n}", 150 * (n + 1))
        drain(platform)
    before = _snapshot(platform)
    changes = [c.doc for c in platform.store.changes(LEDGER, 0, 10_000)]
    assert any(d["docType"] == TIER_CHANGE_DOC for d in changes)
    for _ in range(3):
        random.Random(7).shuffle(changes)
        platform.projector.apply(changes)
        platform.projector.apply(changes[: len(changes) // 2])
    assert _snapshot(platform) == before


def _tier_endpoint(platform, tenant_id):  # type: ignore[no-untyped-def]
    from shared.webhooks.ssrf import TestAllowance

    platform.webhooks.allowance = TestAllowance(frozenset({"127.0.0.1"}))
    return platform.webhooks.register(tenant_id, "http://127.0.0.1:9/hook", ["tier.changed"])


def _snapshot(platform):  # type: ignore[no-untyped-def]
    ledger = platform.store.query(LEDGER, Query(pk=None, filters=(), order_by="id", limit=10_000))
    messages = platform.store.query(WEBHOOK_MESSAGES, Query(pk=None, filters=(), order_by="id", limit=10_000))
    profiles = platform.store.query(CUSTOMERS, Query(pk=None, filters=(), order_by="id", limit=10_000))
    return ([(d["pk"], d["id"]) for d in ledger], [(d["id"], d["body"]) for d in messages],
            [(d["id"], d.get("tier"), d.get("tierChangeSeq")) for d in profiles])


def test_tier_changed_webhook_is_published_once_per_change_without_pii(platform, clock) -> None:
    from shared.schemas import REGISTRY

    bare_tenant(platform, "t1")
    platform.tiers.save_program("t1", program())
    _tier_endpoint(platform, "t1")
    earn(platform, "t1", "c1", "o1", 150)
    drain(platform)
    earn(platform, "t1", "c1", "o2", 500)
    drain(platform)
    import json

    bodies = [json.loads(m["body"]) for m in platform.store.query(
        WEBHOOK_MESSAGES, Query(pk=None, filters=(Filter("tenantId", "=", "t1"),), order_by="createdAt", limit=100)) if m["eventType"] == "tier.changed"]
    assert [b["data"] for b in bodies] == [{"customerId": "c1", "fromTier": None, "toTier": "silver"},
                                          {"customerId": "c1", "fromTier": "silver", "toTier": "gold"}]
    for body in bodies:
        REGISTRY.validate(body, "webhook.tier.changed", 1)


def test_evaluation_is_idempotent_for_one_scheduled_instant(platform, clock) -> None:
    bare_tenant(platform, "t1", customers=("c1", "c2", "c3"))
    stored = program(windowMonths=1, grace={"kind": "none"})
    platform.tiers.save_program("t1", stored)
    for n, customer in enumerate(("c1", "c2", "c3")):
        earn(platform, "t1", customer, f"o{n}", 600 * (n + 1))
    drain(platform)
    _to_next_evaluation(platform, clock, stored)
    due = next_evaluation(stored, clock.now(), PARIS)
    clock.advance(due - clock.now() + timedelta(minutes=1))
    first = platform.tiers.evaluate_tenant("t1", due)
    snapshot = _snapshot(platform)
    again = platform.tiers.evaluate_tenant("t1", due)  # a crashed run redone
    assert first.downgraded == 3 and again.downgraded == 0 and _snapshot(platform) == snapshot


def test_the_profile_copy_heals_after_a_crash_between_the_two_writes(platform, clock) -> None:
    bare_tenant(platform, "t1")
    platform.tiers.save_program("t1", program())
    earn(platform, "t1", "c1", "o1", 150)
    drain(platform)
    # As if a writer died after the history record and before the profile copy:
    platform.tiers.history.append({"tenantId": "t1", "customerId": "c1", "changeSeq": 2, "fromTier": "silver",
                                   "toTier": "gold", "direction": "up", "reason": "threshold-reached",
                                   "trigger": "projection", "qualifying": {}, "at": iso(clock.now())})
    assert _tier(platform) == "silver"
    earn(platform, "t1", "c1", "o2", 1)
    drain(platform)
    profile = platform.customers.get("t1", "c1")
    assert profile["tier"] == "gold" and profile["tierChangeSeq"] == 2
    assert platform.store.read(LEDGER, customer_pk("t1", "c1"), change_id(3)) is None


def test_a_tier_dropped_from_the_programme_is_replaced_at_the_evaluation(platform, clock) -> None:
    bare_tenant(platform, "t1")
    stored = program()
    platform.tiers.save_program("t1", stored)
    earn(platform, "t1", "c1", "o1", 600)
    drain(platform)
    assert _tier(platform) == "gold"
    renamed = program(tiers=[{"name": "silver", "minPoints": 100}, {"name": "diamond", "minPoints": 5000}])
    platform.tiers.save_program("t1", renamed)
    assert platform.tiers.multiplier("t1", "gold") == Decimal(1)
    _to_next_evaluation(platform, clock, renamed)
    last = _history(platform)[-1]
    assert (last["fromTier"], last["toTier"], last["reason"]) == ("gold", "silver", "tier-removed")


def test_saving_a_programme_never_evaluates_a_date_that_passed_before(platform, clock) -> None:
    bare_tenant(platform, "t1")
    platform.customers.register  # noqa: B018 - the registered customer below has a legacy tier
    from datetime import date

    from shared.app.customers import CustomerProfile

    platform.customers.register("t1", CustomerProfile(customerId="legacy", joinDate=date(2024, 1, 1), tier="vip"))
    platform.tiers.save_program("t1", program())
    assert platform.tiers.run_due() == []
    assert _tier(platform, customer_id="legacy") == "vip"


def test_a_save_that_died_before_its_schedule_still_never_evaluates_a_passed_date(platform, clock,
                                                                                monkeypatch) -> None:
    """The programme is written, then the process dies before the evaluation state is moved to
    the date that passed: the programme carries that date itself (one write), so the next run
    still does not downgrade the legacy tier retroactively."""
    bare_tenant(platform, "t1")
    from datetime import date

    from shared.app.customers import CustomerProfile
    from shared.tiers.service import TierService

    platform.customers.register("t1", CustomerProfile(customerId="legacy", joinDate=date(2024, 1, 1), tier="vip"))

    with monkeypatch.context() as patched:
        patched.setattr(TierService, "_start_schedule", crashing("died after the programme's write"))
        with pytest.raises(Crashed):
            platform.tiers.save_program("t1", program())
    assert platform.tiers.current_program("t1") is not None
    assert platform.tiers.run_due() == []
    assert _tier(platform, customer_id="legacy") == "vip"


def test_tenants_are_isolated(platform, clock) -> None:
    bare_tenant(platform, "t1")
    bare_tenant(platform, "t2")
    platform.tiers.save_program("t1", program())
    earn(platform, "t1", "c1", "o1", 600)
    earn(platform, "t2", "c1", "o1", 600)
    drain(platform)
    assert _tier(platform, "t1") == "gold" and _tier(platform, "t2") is None
    assert platform.tiers.multiplier("t2", "gold") == Decimal(1)
    assert platform.tiers.multiplier("t1", "gold") == Decimal("1.5")
    assert _history(platform, "t2") == []


def test_a_deleted_tenants_leftover_programme_stops_nothing(platform, clock) -> None:
    from shared.store.layout import TENANTS

    bare_tenant(platform, "t1")
    bare_tenant(platform, "t2")
    stored = program(windowMonths=1, grace={"kind": "none"})
    for tenant_id in ("t1", "t2"):
        platform.tiers.save_program(tenant_id, stored)
        earn(platform, tenant_id, "c1", "o1", 600)
    drain(platform)
    platform.store.delete(TENANTS, "t1", "t1")  # as the governance act does
    platform.tenants.cache.forget("t1")  # this process's cache, as after its 5 s
    earn(platform, "t1", "c1", "o2", 5000)
    drain(platform)  # the projection skips the deleted tenant instead of failing the feed
    reports = []
    for _ in range(2):
        reports += _to_next_evaluation(platform, clock, stored)
    assert {r.tenant_id for r in reports} == {"t2"} and _tier(platform, "t2") is None


def test_concurrent_projectors_write_one_change(platform, clock) -> None:
    import threading

    bare_tenant(platform, "t1")
    platform.tiers.save_program("t1", program())
    drain(platform)
    start = platform.checkpoint.load()["lsn"]
    earn(platform, "t1", "c1", "o1", 2500)
    changes = [c.doc for c in platform.store.changes(LEDGER, start, 100)]
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def project() -> None:
        barrier.wait()
        try:
            platform.tiers.project(changes)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    run_in_threads(project, [()] * 4)
    assert errors == []
    assert [(h["fromTier"], h["toTier"]) for h in _history(platform)] == [(None, "platinum")]
    assert platform.customers.get("t1", "c1")["tierChangeSeq"] == 1
