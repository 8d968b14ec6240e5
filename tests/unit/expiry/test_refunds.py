"""Refunds and lots (shared/app/corrections.py, docs/expiry.md): the clawback takes
the refunded order's own lots first, then FIFO, then goes into deficit; points
of the order that already expired are not clawed back twice; a later earn pays
the deficit off before it becomes spendable."""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.ledger.entries import EntryDraft, EntryType
from tests.conftest import auth
from tests.unit.expiry.conftest import earn, entries, move_to, policy_tenant, write

ROLLING = {"kind": "rolling", "months": 12}
QUARTER = {"kind": "endOfQuarter", "quartersAfter": 0}


def refund(client, keys, order_id: str, refund_id: str, amount: str) -> dict:
    response = client.post(f"/v1/orders/{order_id}/refunds", json={"refundId": refund_id, "amount": amount,
                                                                   "currency": "EUR"},
                           headers=auth(keys.merchant))
    assert response.status_code == 201, response.text
    return response.json()


def test_a_refund_takes_its_own_order_lots_first_even_if_others_expire_sooner(client, platform, clock) -> None:
    keys = policy_tenant(platform, "own", "UTC", ROLLING)
    earn(client, platform, clock, keys, "soon", "5.00")       # 50, expires first
    clock.advance(timedelta(days=3))
    earn(client, platform, clock, keys, "big", "10.00")       # 100
    assert refund(client, keys, "big", "r1", "5.00")["pointsClawedBack"] == 50
    book = platform.expiry.book("own", "c1")
    soon, big = book.lots.values()
    assert (soon.remaining, big.remaining) == (50, 50)
    reversal = entries(platform, "own", "c1")[-1]
    assert book.movements[reversal["id"]].taken == ((big.lot_id, 50),)


def test_refund_after_partial_redemption_goes_negative_and_the_next_earn_pays_first(client, platform, clock) -> None:
    keys = policy_tenant(platform, "neg", "UTC", ROLLING)
    earn(client, platform, clock, keys, "o1", "10.00")        # lot A: 100
    clock.advance(timedelta(days=1))
    earn(client, platform, clock, keys, "o2", "5.00")         # lot B: 50
    write(platform, "neg", "c1", "redeem-1", EntryDraft(EntryType.REDEEM, -120))  # A 100, B 20
    outcome = refund(client, keys, "o2", "r1", "5.00")
    assert outcome["pointsClawedBack"] == 50 and outcome["balanceAfter"] == -20
    book = platform.expiry.book("neg", "c1")
    reversal = entries(platform, "neg", "c1")[-1]
    lot_b = list(book.lots)[1]
    move = book.movements[reversal["id"]]
    assert move.taken == ((lot_b, 30),) and move.deficit == 20  # B's own remainder, then nothing left: deficit
    view = client.get("/v1/customers/c1/expiries", headers=auth(keys.analyst)).json()
    assert view["available"] == -20 and view["deficit"] == 20 and view["items"] == []
    earn(client, platform, clock, keys, "o3", "3.00")         # 30: 20 pay the deficit, 10 spendable
    lot = list(platform.expiry.book("neg", "c1").lots.values())[-1]
    assert (lot.covered, lot.remaining) == (20, 10)
    view = client.get("/v1/customers/c1/expiries", headers=auth(keys.analyst)).json()
    assert view["available"] == 10 and view["deficit"] == 0 and sum(i["points"] for i in view["items"]) == 10


def test_refund_after_expiry_does_not_claw_back_expired_points_twice(client, platform, clock) -> None:
    keys = policy_tenant(platform, "exp", "UTC", QUARTER)
    earn(client, platform, clock, keys, "o1", "10.00")        # 100, valid through 2026-12-31
    write(platform, "exp", "c1", "redeem-1", EntryDraft(EntryType.REDEEM, -60))
    move_to(clock, datetime.fromisoformat("2027-01-01T08:00:00+00:00"))
    assert platform.expiry.run().points_expired == 40
    half = refund(client, keys, "o1", "r1", "5.00")
    # Half the order: 50 points, of which the expired share (half of 40) is excused; 30 of the spent 60 come back.
    assert (half["pointsClawedBack"], half["pointsExcusedExpired"], half["balanceAfter"]) == (30, 20, -30)
    rest = refund(client, keys, "o1", "r2", "5.00")
    assert (rest["pointsClawedBack"], rest["pointsExcusedExpired"], rest["balanceAfter"]) == (30, 40, -60)
    assert platform.ledger.head("exp", "c1").balance == -60 == -platform.expiry.book("exp", "c1").deficit
