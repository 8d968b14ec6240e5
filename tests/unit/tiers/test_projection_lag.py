"""Upgrades are decided on what the decision read, not on when the projector wrote it.

An outside review found two ways a lagging projector lost an upgrade for good (until the
next evaluation, a month or a year away): an earn committed while the projector was
deciding on the customer's previous earn was taken as already seen, because the new tier
record was stamped with the projector's clock (later than the earn) instead of the end of
the window it read; and a programme saved meanwhile with the same thresholds (a perk
added) refused every change before it, as if the tier table had changed. The class of
test: the projector behind the ledger, a write landing between its read and its record."""

from __future__ import annotations

from datetime import timedelta

from shared.store.layout import LEDGER, customer_pk
from shared.store.port import Filter, Query
from tests.conftest import drain
from tests.unit.tiers.conftest import GOLDEN, bare_tenant, earn, program


def _docs(platform, order_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    docs = platform.store.query(LEDGER, Query(pk=customer_pk("t1", "c1"), filters=(), limit=1000))
    return [d for d in docs if d.get("referenceOrderId") == order_id or d.get("orderId") == order_id]


def test_an_earn_committed_while_the_projector_decides_still_upgrades(platform, clock) -> None:  # type: ignore
    bare_tenant(platform, "t1")
    platform.tiers.save_program("t1", program())  # silver 100, gold 500
    clock.advance(timedelta(seconds=1))
    earn(platform, "t1", "c1", "o1", 300)
    real, first = platform.projector.apply, [True]

    def projector_at_work(docs):  # type: ignore[no-untyped-def]
        if first[0]:
            first[0] = False
            clock.advance(timedelta(milliseconds=200))
            earn(platform, "t1", "c1", "o2", 300)  # committed by ingestion while the projector works
            clock.advance(timedelta(milliseconds=200))
        return real(docs)

    platform.projector.apply = projector_at_work
    drain(platform)
    view = platform.tiers.customer_tier("t1", "c1")
    assert view["tier"] == "gold", (view["tier"], view["qualifying"])


def test_changes_delivered_in_two_batches_after_a_lag_upgrade_on_the_second(platform, clock) -> None:  # type: ignore
    bare_tenant(platform, "t1")
    platform.tiers.save_program("t1", program())
    clock.advance(timedelta(seconds=1))
    earn(platform, "t1", "c1", "o1", 300)  # silver on its own
    clock.advance(timedelta(seconds=1))
    earn(platform, "t1", "c1", "o2", 300)  # gold with the first
    clock.advance(timedelta(seconds=1))  # the projector is a moment behind
    platform.tiers.project(_docs(platform, "o1"))
    assert platform.tiers.customer_tier("t1", "c1")["tier"] == "silver"
    platform.tiers.project(_docs(platform, "o2"))
    assert platform.tiers.customer_tier("t1", "c1")["tier"] == "gold"
    # Redelivered, both batches decide nothing more: one record each.
    platform.tiers.project(_docs(platform, "o1") + _docs(platform, "o2"))
    records = platform.store.query(LEDGER, Query(pk=customer_pk("t1", "c1"), filters=(
        Filter("docType", "=", "tierChange"),), limit=100))
    assert [r["toTier"] for r in sorted(records, key=lambda r: r["changeSeq"])] == ["silver", "gold"]


def test_a_save_that_keeps_the_thresholds_cancels_no_upgrade_in_flight(platform, clock) -> None:  # type: ignore
    bare_tenant(platform, "t1")
    platform.tiers.save_program("t1", program())
    clock.advance(timedelta(seconds=1))
    earn(platform, "t1", "c1", "o1", 600)  # gold under the programme in force
    clock.advance(timedelta(milliseconds=300))
    tiers = [dict(t) for t in GOLDEN["tiers"]]
    tiers[1]["perks"] = ["free delivery"]
    tiers[0]["displayName"] = "Silver club"
    platform.tiers.save_program("t1", program(tiers=tiers))
    platform.tiers.cache.invalidate("t1")
    clock.advance(timedelta(milliseconds=300))
    drain(platform)  # the projector catches up after the save
    assert platform.tiers.customer_tier("t1", "c1")["tier"] == "gold"


def test_a_save_that_changes_the_thresholds_still_is_not_retroactive(platform, clock) -> None:  # type: ignore
    """The documented rule stands: an earn before a new tier table is the evaluation's to judge."""
    bare_tenant(platform, "t1")
    platform.tiers.save_program("t1", program())
    clock.advance(timedelta(seconds=1))
    earn(platform, "t1", "c1", "o1", 300)  # silver under the old table, gold under the new one
    clock.advance(timedelta(milliseconds=300))
    tiers = [dict(t) for t in GOLDEN["tiers"]]
    tiers[1]["minPoints"] = 250
    platform.tiers.save_program("t1", program(tiers=tiers))
    platform.tiers.cache.invalidate("t1")
    clock.advance(timedelta(milliseconds=300))
    drain(platform)
    assert platform.tiers.customer_tier("t1", "c1")["tier"] is None
    earn(platform, "t1", "c1", "o2", 1)  # a change after the save decides under the new table
    drain(platform)
    assert platform.tiers.customer_tier("t1", "c1")["tier"] == "gold"
