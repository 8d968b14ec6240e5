"""Vouchers under concurrency, on the embedded SQLite store and on Cosmos DB
(cosmosdb-server): a single-use code redeemed by ~20 points of sale at once is
redeemed exactly once; ~20 hand-outs from a partner's pool never give one code twice."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

from shared.clock import ManualClock, iso
from shared.errors import AccrueError, OutOfStock
from shared.store.layout import CODES, voucher_pk
from shared.vouchers import codes
from shared.vouchers.pools import CodePools
from shared.vouchers.service import ACTIVE, VOUCHER_DOC_ID, VoucherRedeemRequest, Vouchers
from tests.conftest import run_in_threads

RACERS = 20
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


def _digest(tenant_id: str, purpose: str, data: str) -> bytes:
    import hashlib
    return hashlib.sha256(f"{tenant_id}/{purpose}/{data}".encode()).digest()


def _vouchers(store) -> Vouchers:
    clock = ManualClock(NOW)
    # Redeeming at a point of sale reads and writes the voucher document only.
    return Vouchers(store, None, clock, None, None, None, _digest, CodePools(store, clock, _digest))  # type: ignore[arg-type]


def _voucher(store, uses: int) -> str:
    code = codes.encode(b"race-code!")
    digest = codes.code_hash("acme", code)
    store.create(CODES, {"id": VOUCHER_DOC_ID, "pk": voucher_pk("acme", digest), "docType": "voucher",
                         "tenantId": "acme", "voucherId": "vc-" + "0" * 24, "customerId": "c1",
                         "redemptionId": "rd-" + "0" * 24, "entryId": "e-000000000002", "points": 500,
                         "uses": uses, "used": 0, "productSku": "COFFEE", "channel": "any",
                         "expiresAt": "2027-01-01T00:00:00.000000Z", "status": ACTIVE, "createdAt": iso(NOW),
                         "redemptions": {}})
    return code


@pytest.mark.parametrize("uses", [1, 3])
def test_concurrent_redemptions_use_a_code_exactly_as_often_as_it_allows(store, uses: int) -> None:
    vouchers = _vouchers(store)
    code = _voucher(store, uses)
    won: list[int] = []
    refused: list[str] = []
    lock = threading.Lock()

    def attempt(number: int) -> None:
        try:
            outcome = vouchers.redeem("acme", code, f"pos-{number}", VoucherRedeemRequest(channel="in-store"), "k")
            with lock:
                won.append(outcome.body["use"])
        except AccrueError as error:
            with lock:
                refused.append(getattr(error, "extensions", {}).get("state", error.code))

    run_in_threads(attempt, [(n,) for n in range(RACERS)], timeout=120)
    assert sorted(won) == list(range(1, uses + 1))  # each use given once, none twice
    assert refused == ["used"] * (RACERS - uses)
    doc = store.read(CODES, voucher_pk("acme", codes.code_hash("acme", code)), VOUCHER_DOC_ID)
    assert doc["used"] == uses and doc["status"] == "used" and len(doc["redemptions"]) == uses


def test_concurrent_retries_of_one_use_are_one_use(store) -> None:
    vouchers = _vouchers(store)
    code = _voucher(store, 1)
    answers: list[tuple[bool, int]] = []
    lock = threading.Lock()

    def attempt() -> None:
        outcome = vouchers.redeem("acme", code, "same-key", VoucherRedeemRequest(channel="online"), "k")
        with lock:
            answers.append((outcome.created, outcome.body["use"]))

    run_in_threads(attempt, [() for _ in range(RACERS)], timeout=120)
    assert sorted(answers) == [(False, 1)] * (RACERS - 1) + [(True, 1)]


def test_concurrent_hand_outs_never_give_a_code_twice(store) -> None:
    clock = ManualClock(NOW)
    pools = CodePools(store, clock, _digest)
    report = pools.add_codes("acme", "cinema", [(n, f"CINE-{n:04d}") for n in range(1, 11)])
    assert (report.accepted, report.duplicates) == (10, 0)
    given: list[str] = []
    empty: list[int] = []
    lock = threading.Lock()

    def hand_out(number: int) -> None:
        try:
            code = pools.hand_out("acme", "cinema", f"rd-{number:024d}", f"c{number}")
            with lock:
                given.append(code)
        except OutOfStock:
            with lock:
                empty.append(number)

    run_in_threads(hand_out, [(n,) for n in range(RACERS)], timeout=120)
    assert len(given) == len(set(given)) == 10 and len(empty) == RACERS - 10
    assert set(given) == {f"CINE-{n:04d}" for n in range(1, 11)}


def test_cancel_racing_redemptions_ends_one_way_with_at_most_one_refund(store) -> None:
    from shared.ledger.service import Ledger
    from shared.spend.policy import SpendPolicies
    from shared.vouchers.service import voucher_id_of

    clock = ManualClock(NOW)
    ledger = Ledger(store, clock)
    vouchers = Vouchers(store, ledger, clock, None, SpendPolicies(store, clock), None, _digest,  # type: ignore[arg-type]
                        CodePools(store, clock, _digest))
    rid = "rd-" + "1" * 24
    code = vouchers.code_of("acme", rid)
    store.create(CODES, {"id": VOUCHER_DOC_ID, "pk": voucher_pk("acme", codes.code_hash("acme", code)),
                         "docType": "voucher", "tenantId": "acme", "voucherId": voucher_id_of(rid),
                         "customerId": "c1", "redemptionId": rid, "entryId": "e-000000000001", "points": 500,
                         "uses": 1, "used": 0, "productSku": "COFFEE", "channel": "any",
                         "expiresAt": "2027-01-01T00:00:00.000000Z", "status": ACTIVE, "createdAt": iso(NOW),
                         "redemptions": {}})
    outcomes: list[str] = []
    lock = threading.Lock()

    def act(number: int) -> None:
        try:
            if number % 2:
                vouchers.cancel("acme", "c1", voucher_id_of(rid), "k")
                result = "cancelled"
            else:
                vouchers.redeem("acme", code, f"pos-{number}", VoucherRedeemRequest(channel="online"), "k")
                result = "redeemed"
        except AccrueError as error:
            result = "refused:" + error.code
        with lock:
            outcomes.append(result)

    run_in_threads(act, [(n,) for n in range(RACERS)], timeout=120)
    refunds = [e for e in ledger.entries("acme", "c1", newest_first=False, limit=100) if e["entryType"] == "ADJUST"]
    if "redeemed" in outcomes:
        assert outcomes.count("redeemed") == 1 and "cancelled" not in outcomes and refunds == []
    else:
        assert outcomes.count("cancelled") >= 1 and [e["signedAmount"] for e in refunds] == [500]


def test_twenty_referees_qualifying_at_once_respect_the_cap(store) -> None:
    from shared.ledger.service import Ledger
    from shared.referrals import ReferralProgramme, Referrals

    clock = ManualClock(NOW)
    ledger = Ledger(store, clock)
    referrals = Referrals(store, ledger, clock, _digest, lambda doc: {})
    referrals.save_programme("acme", ReferralProgramme(referrerPoints=500, refereePoints=250, capPerPeriod=5))
    owner = {"customerId": "ann"}
    records = []
    for number in range(RACERS):
        referrals.enrol("acme", f"r{number}", owner)
        records.append({"docType": "order", "status": "credited", "tenantId": "acme", "customerId": f"r{number}",
                        "orderId": f"o{number}", "acceptedAt": iso(NOW),
                        "order": {"amount": "40.00", "currency": "EUR", "timestamp": iso(NOW)}})
    run_in_threads(lambda doc: referrals.project([doc]), [(r,) for r in records] + [(records[0],)] * 5,
                   timeout=120)
    states = [referrals.get("acme", f"r{n}")["status"] for n in range(RACERS)]
    assert states.count("qualified") == 5 and states.count("capped") == RACERS - 5
    credited = [e["signedAmount"] for e in ledger.entries("acme", "ann", newest_first=False, limit=100)]
    assert credited == [500] * 5
