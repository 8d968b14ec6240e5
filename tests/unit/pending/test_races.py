"""Writes that can race, fired ~20 at once: the maturation job against itself (two
instances, redelivered timers) and against refunds inside the window. Each pending
earn is settled exactly once, the running totals hold, nothing is matured twice."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from shared.app.corrections import RefundRequest
from shared.app.reconcile import reconcile
from shared.errors import AccrueError
from tests.conftest import run_in_threads
from tests.unit.expiry.conftest import earn, entries, move_to
from tests.unit.pending.conftest import window_tenant


def test_twenty_maturation_runs_at_once_mature_each_earn_once(client, platform, clock) -> None:
    keys = window_tenant(platform, "shop", days=1, time_zone="UTC", customers=("c1", "c2"))
    for n in range(3):
        earn(client, platform, clock, keys, f"a{n}", customer_id="c1")
        earn(client, platform, clock, keys, f"b{n}", customer_id="c2")
    move_to(clock, datetime.fromisoformat("2026-11-03T00:00:00+00:00"))
    matured: list[int] = []
    run_in_threads(lambda: matured.append(platform.maturation.mature_customers("shop", ["c1", "c2"]).matured),
                   [() for _ in range(20)], timeout=60)
    assert len(matured) == 20 and sum(matured) == 6
    for customer in ("c1", "c2"):
        written = entries(platform, "shop", customer)
        settles = [e["settlesEntryId"] for e in written if e.get("settlesEntryId")]
        assert len(settles) == 3 == len(set(settles))
        head = platform.ledger.head("shop", customer)
        assert (head.balance, head.pending) == (300, 0)
    assert reconcile(platform.store, "shop").ok


def test_refunds_racing_the_job_cancel_or_claw_back_never_both(client, platform, clock) -> None:
    keys = window_tenant(platform, "shop", days=1, time_zone="UTC")
    earn(client, platform, clock, keys, "o1", "20.00")  # 200 points, pending until 2 Nov 12:00
    move_to(clock, datetime.fromisoformat("2026-11-02T12:00:00+00:00"))
    errors: list[BaseException] = []

    def refund(n: int) -> None:
        try:
            platform.corrections.refund("shop", "o1", RefundRequest(refundId=f"r{n}", amount=Decimal("1.00"),
                                                                    currency="EUR"))
        except AccrueError as error:  # a lost race past every retry is a clean refusal, never a partial write
            errors.append(error)

    def mature() -> None:
        platform.maturation.mature_customers("shop", ["c1"])

    run_in_threads(lambda job, n: job(n) if job is refund else job(),
                   [(refund, n) if n % 2 else (mature, n) for n in range(20)], timeout=60)
    written = entries(platform, "shop", "c1")
    settles = [e["settlesEntryId"] for e in written if e.get("settlesEntryId")]
    assert len(settles) == len(set(settles)), "a pending earn was settled twice"
    refunds = [e for e in written if e["entryType"] == "REVERSAL"]
    taken = sum(-e["signedAmount"] + e["attributes"].get("pendingCancelled", 0) for e in refunds)
    assert taken == 10 * len(refunds)  # 1.00 EUR of a 20.00 order: 10 points each, cancelled or clawed
    head = platform.ledger.head("shop", "c1")
    matured = sum(e["signedAmount"] for e in written if e["entryType"] == "EARN" and e["status"] == "COMMITTED")
    assert head.balance == matured - sum(-e["signedAmount"] for e in refunds)
    assert head.balance + head.pending == 200 - taken
    assert len(refunds) + len(errors) == 10
    assert reconcile(platform.store, "shop").ok
