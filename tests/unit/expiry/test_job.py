"""The daily expiry job: time zones, FIFO with redemptions, idempotency, races,
refills after expiry, and bounded pages (shared/expiry/service.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from shared.expiry import service as expiry_service
from shared.ledger.entries import EntryDraft, EntryStatus, EntryType
from shared.ledger.lots import replay
from shared.store.layout import SYSTEM
from tests.unit.expiry.conftest import earn, entries, move_to, policy_tenant, write

QUARTER = {"kind": "endOfQuarter", "quartersAfter": 0}  # earned in Q4 2026: valid through 2026-12-31


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def expires(platform, tenant_id: str, customer_id: str = "c1") -> list[dict]:
    return [e for e in entries(platform, tenant_id, customer_id) if e["entryType"] == "EXPIRE"]


def test_a_lot_expires_at_the_tenants_local_midnight_auckland_before_utc(client, platform, clock) -> None:
    nz = policy_tenant(platform, "nz", "Pacific/Auckland", QUARTER)
    utc = policy_tenant(platform, "utc", "UTC", QUARTER)
    earn(client, platform, clock, nz, "o1")
    earn(client, platform, clock, utc, "o1")
    # Valid through local 2026-12-31: the stamped instant is that tenant's next local midnight.
    assert entries(platform, "nz", "c1")[0]["attributes"]["expiresAt"] == "2026-12-31T11:00:00+00:00"
    assert entries(platform, "utc", "c1")[0]["attributes"]["expiresAt"] == "2027-01-01T00:00:00+00:00"
    for tenant_id in ("nz", "utc"):
        assert platform.expiry.upcoming(tenant_id, "c1")["items"][0]["expiresOn"] == "2026-12-31"

    move_to(clock, at("2026-12-31T10:59:00+00:00"))  # 23:59 in Auckland
    assert platform.expiry.run().lots_expired == 0
    move_to(clock, at("2026-12-31T11:01:00+00:00"))  # 00:01 on 1 Jan in Auckland, still 31 Dec in UTC
    report = platform.expiry.run()
    assert report.lots_expired == 1 and report.points_expired == 100
    assert [e["signedAmount"] for e in expires(platform, "nz")] == [-100] and expires(platform, "utc") == []
    move_to(clock, at("2027-01-01T00:01:00+00:00"))
    assert platform.expiry.run().lots_expired == 1
    assert [e["signedAmount"] for e in expires(platform, "utc")] == [-100]
    assert platform.ledger.head("nz", "c1").balance == 0 == platform.ledger.head("utc", "c1").balance


def test_redemptions_take_the_oldest_lot_and_expiry_takes_only_what_is_left(client, platform, clock) -> None:
    keys = policy_tenant(platform, "acme2", "Europe/Paris", {"kind": "rolling", "months": 1})
    earn(client, platform, clock, keys, "o1", "10.00")          # 100, valid through 2026-12-01 (Paris)
    clock.advance(timedelta(days=10))
    earn(client, platform, clock, keys, "o2", "5.00")           # 50, valid through 2026-12-11
    write(platform, "acme2", "c1", "redeem-1", EntryDraft(EntryType.REDEEM, -120))
    book = platform.expiry.book("acme2", "c1")
    first, second = book.lots.values()
    assert (first.remaining, second.remaining) == (0, 30)
    assert book.movements[entries(platform, "acme2", "c1")[-1]["id"]].taken == ((first.lot_id, 100),
                                                                             (second.lot_id, 20))
    move_to(clock, at("2026-12-02T00:30:00+01:00"))
    assert platform.expiry.run().lots_expired == 0              # the first lot is spent: nothing to expire
    move_to(clock, at("2026-12-12T00:30:00+01:00"))
    assert platform.expiry.run().points_expired == 30
    (expire,) = expires(platform, "acme2")
    assert expire["referenceEntryId"] == second.lot_id and expire["referenceOrderId"] == "o2"
    assert expire["idempotencyKey"] == f"expire:{second.lot_id}:0"


def test_running_the_job_twice_writes_the_same_ledger(client, platform, clock) -> None:
    keys = policy_tenant(platform, "twice", "UTC", QUARTER, customers=("c1", "c2", "c3"))
    for n, customer in enumerate(("c1", "c2", "c3")):
        earn(client, platform, clock, keys, f"o{n}", customer_id=customer)
        earn(client, platform, clock, keys, f"p{n}", "3.00", customer_id=customer)
    move_to(clock, at("2027-01-02T00:00:00+00:00"))
    assert platform.expiry.run().lots_expired == 6
    ledger_after = [entries(platform, "twice", c) for c in ("c1", "c2", "c3")]
    # Forget that the day is done (as a crash before saving would): the rerun finds every lot empty.
    platform.store.delete(SYSTEM, expiry_service.STATE_PK, expiry_service._state_id("twice"))
    again = platform.expiry.run()
    assert again.customers == 3 and again.lots_expired == 0
    cutoff = at("2027-01-02T00:00:00+00:00")
    assert platform.expiry.expire_customers("twice", ["c1", "c2", "c3"], cutoff).lots_expired == 0
    assert [entries(platform, "twice", c) for c in ("c1", "c2", "c3")] == ledger_after


def test_a_redemption_racing_the_job_is_planned_on_not_overwritten(client, platform, clock) -> None:
    keys = policy_tenant(platform, "race", "UTC", QUARTER)
    earn(client, platform, clock, keys, "o1")
    move_to(clock, at("2027-01-01T06:00:00+00:00"))
    service = platform.expiry
    books = {"c1": service.book("race", "c1")}
    (lot,) = books["c1"].due(at("2027-01-01T00:00:00+00:00"))
    request = service._request("race", "c1", books, lot.lot_id, expiry_service.expire_key(lot),
                               at("2027-01-01T00:00:00+00:00"))
    write(platform, "race", "c1", "late-redeem", EntryDraft(EntryType.REDEEM, -30))  # after the job's replay
    (outcome,) = platform.ledger.append([request])
    assert outcome.error is None and outcome.entries[0]["signedAmount"] == -70
    assert platform.ledger.head("race", "c1").balance == 0


def test_points_released_into_an_expired_lot_expire_at_the_next_run(client, platform, clock) -> None:
    keys = policy_tenant(platform, "refill", "UTC", QUARTER)
    earn(client, platform, clock, keys, "o1")
    (reservation,) = write(platform, "refill", "c1", "reserve-1",
                           EntryDraft(EntryType.REDEEM, -80, status=EntryStatus.PENDING))
    move_to(clock, at("2027-01-01T01:00:00+00:00"))
    assert platform.expiry.run().points_expired == 20
    write(platform, "refill", "c1", "release-1", EntryDraft(EntryType.RELEASE, 80, settles_entry_id=reservation["id"],
                                                             settles_amount=-80))
    book = platform.expiry.book("refill", "c1")
    (lot,) = book.lots.values()
    assert lot.remaining == 80 and lot.expiries == 1  # the points came back to their own (expired) lot
    assert platform.expiry.upcoming("refill", "c1")["items"][0]["overdue"] is True
    move_to(clock, at("2027-01-02T01:00:00+00:00"))
    assert platform.expiry.run().points_expired == 80
    assert [e["idempotencyKey"] for e in expires(platform, "refill")] == [f"expire:{lot.lot_id}:0",
                                                                          f"expire:{lot.lot_id}:1"]
    assert platform.ledger.head("refill", "c1").balance == 0


def test_the_job_runs_in_bounded_pages_and_resumes(client, platform, clock, monkeypatch) -> None:
    monkeypatch.setattr(expiry_service, "PAGE", 2)
    customers = tuple(f"c{n}" for n in range(7))
    keys = policy_tenant(platform, "paged", "UTC", QUARTER, customers=customers)
    for n, customer in enumerate(customers):
        earn(client, platform, clock, keys, f"o{n}", customer_id=customer)
    move_to(clock, at("2027-01-01T03:00:00+00:00"))
    runs = [platform.expiry.run(max_customers=3) for _ in range(4)]
    assert [r.complete for r in runs] == [False, False, True, True]
    assert [r.customers for r in runs] == [3, 3, 1, 0]
    assert sum(r.lots_expired for r in runs) == 7
    assert all(platform.ledger.head("paged", c).balance == 0 for c in customers)


def test_a_customer_that_failed_before_a_budget_cut_is_retried_not_forgotten(client, platform, clock,
                                                                              monkeypatch) -> None:
    monkeypatch.setattr(expiry_service, "PAGE", 2)
    customers = tuple(f"c{n}" for n in range(4))
    keys = policy_tenant(platform, "flaky", "UTC", QUARTER, customers=customers)
    for n, customer in enumerate(customers):
        earn(client, platform, clock, keys, f"o{n}", customer_id=customer)
    move_to(clock, at("2027-01-01T03:00:00+00:00"))
    real = platform.expiry.expire_customers
    failing = {"c0"}

    def first_page_fails_for_c0(tenant_id, customer_ids, cutoff, report=None):  # type: ignore[no-untyped-def]
        report = real(tenant_id, [c for c in customer_ids if c not in failing], cutoff, report)
        report.failed.extend(c for c in customer_ids if c in failing)
        return report

    monkeypatch.setattr(platform.expiry, "expire_customers", first_page_fails_for_c0)
    cut = platform.expiry.run(max_customers=2)       # c0 fails, then the budget stops the run
    assert not cut.complete and cut.failed == ["c0"]
    failing.clear()
    while not platform.expiry.run(max_customers=2).complete:  # the day's other customers
        pass
    state = platform.store.read(SYSTEM, expiry_service.STATE_PK, expiry_service._state_id("flaky"))
    assert state.get("doneLocalDate") is None  # the failure before the cut keeps the day open
    assert platform.ledger.head("flaky", "c0").balance == 100
    retry = platform.expiry.run()                    # the next hourly run walks the day again
    assert retry.lots_expired == 1 and platform.ledger.head("flaky", "c0").balance == 0
    assert all(platform.ledger.head("flaky", c).balance == 0 for c in customers)


def test_a_lot_written_already_expired_is_still_found(client, platform, clock) -> None:
    keys = policy_tenant(platform, "late", "UTC", QUARTER)
    earn(client, platform, clock, keys, "o1")
    move_to(clock, at("2027-01-05T00:00:00+00:00"))
    assert platform.expiry.run().lots_expired == 1
    # An approval of an earn held since November forms a lot past its expiry today.
    (held,) = write(platform, "late", "c1", "hold", EntryDraft(EntryType.EARN, 40, status=EntryStatus.PENDING,
                                                               attributes={"expiresAt": "2026-12-01T00:00:00+00:00"}))
    write(platform, "late", "c1", "approve", EntryDraft(EntryType.EARN, 40, settles_entry_id=held["id"],
                                                        settles_amount=40))
    move_to(clock, at("2027-01-06T00:00:00+00:00"))
    assert platform.expiry.run().points_expired == 40


@pytest.mark.parametrize("policy", [None, {"kind": "never"}])
def test_without_a_policy_points_never_expire(client, platform, clock, policy) -> None:
    keys = policy_tenant(platform, "forever", "UTC", policy)
    earn(client, platform, clock, keys, "o1")
    assert "expiresAt" not in entries(platform, "forever", "c1")[0].get("attributes", {})
    move_to(clock, at("2036-01-01T00:00:00+00:00"))
    assert platform.expiry.run().lots_expired == 0
    view = platform.expiry.upcoming("forever", "c1")
    assert view["items"] == [] and view["neverExpiring"] == 100


def test_a_policy_change_does_not_rewrite_stamped_lots(client, platform, clock) -> None:
    keys = policy_tenant(platform, "change", "UTC", QUARTER)
    earn(client, platform, clock, keys, "o1")
    settings = platform.tenants.get("change")
    from shared.expiry.policy import ExpiryPolicy
    platform.tenants.save(settings.model_copy(update={"expiry_policy": ExpiryPolicy(kind="rolling", months=24)}))
    earn(client, platform, clock, keys, "o2")
    days = [item["expiresOn"] for item in platform.expiry.upcoming("change", "c1")["items"]]
    assert days == ["2026-12-31", "2028-11-01"]
    assert replay(entries(platform, "change", "c1")).balance == 200
