"""A cancelled or expired voucher's refund gives the points back where the purchase took
them: to the lots they came from, with the expiry those lots had, and for a tenant with
wallets to the wallets the purchase drew from. (An outside review found the refund formed a
new lot that never expired: points about to expire, spent on a voucher and cancelled, lived
for ever; and in a wallet tenant they came back into the default wallet.)"""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.app.reconcile import reconcile
from shared.expiry.service import read_book
from shared.jobs import BY_NAME, run_job
from tests.conftest import auth, drain
from tests.unit.expiry.conftest import earn, entries, move_to, policy_tenant
from tests.unit.ledger.test_wallets import wallet_tenant

VOUCHER = {"rewardId": "ten-off", "name": "10 EUR off", "pointsCost": 500, "type": "voucher",
           "voucher": {"value": {"amount": "10.00", "currency": "EUR"}, "validDays": 10}}


def _buy(client, keys, key: str = "b1") -> dict:
    bought = client.post("/v1/customers/c1/redemptions", json={"idempotencyKey": key, "rewardId": "ten-off"},
                         headers=auth(keys.merchant))
    assert bought.status_code == 201, bought.text
    return bought.json()["voucher"]


@pytest.mark.parametrize("ending", ["cancelled", "expired"])
def test_refunded_points_keep_the_expiry_of_the_points_that_bought_the_voucher(client, platform, clock,
                                                                              ending: str) -> None:
    keys = policy_tenant(platform, "exp", policy={"kind": "rolling", "months": 1})
    earn(client, platform, clock, keys, "o1", amount="100.00")  # 1,000 points expiring in a month
    [lot] = read_book(platform.store, "exp", "c1").open_lots()
    assert client.post("/v1/rewards", json=VOUCHER, headers=auth(keys.admin)).status_code == 201
    assert client.put("/v1/spend/policy", json={"voucherExpiry": "refund"}, headers=auth(keys.admin)
                      ).status_code == 200
    voucher = _buy(client, keys)
    if ending == "cancelled":
        cancelled = client.post(f"/v1/customers/c1/vouchers/{voucher['voucherId']}/cancel",
                                headers=auth(keys.admin))
        assert cancelled.status_code == 201, cancelled.text
    else:
        clock.advance(timedelta(days=11))
        assert run_job(BY_NAME["vouchers"], platform) == {"expired": 1, "refunded": 1, "announced": 0}
    book = read_book(platform.store, "exp", "c1")
    assert [(open_.lot_id, open_.remaining, open_.expires_at) for open_ in book.open_lots()] == \
           [(lot.lot_id, 1000, lot.expires_at)]
    move_to(clock, lot.expires_at + timedelta(days=1))
    platform.expiry.run()
    assert platform.ledger.head("exp", "c1").balance == 0  # the refunded points expired with their lot
    assert reconcile(platform.store, "exp").ok


def test_a_wallet_tenant_gets_the_points_back_in_the_wallets_the_purchase_drew_from(client, platform,
                                                                                    clock) -> None:
    keys = wallet_tenant(client, platform)
    for order in ("o1", "o2", "o3", "o4"):
        earn(client, platform, clock, keys, order)  # main 100 and promo 50 each
    assert client.post("/v1/rewards", json=dict(VOUCHER, pointsCost=250), headers=auth(keys.admin)
                       ).status_code == 201
    voucher = _buy(client, keys)  # promo first (200), then 50 of main
    purchase = entries(platform, "shop", "c1")[-1]
    assert purchase["walletSplit"] == {"main": -50, "promo": -200}
    assert client.post(f"/v1/customers/c1/vouchers/{voucher['voucherId']}/cancel",
                       headers=auth(keys.admin)).status_code == 201
    refund = entries(platform, "shop", "c1")[-1]
    assert refund["entryType"] == "ADJUST" and refund["walletSplit"] == {"main": 50, "promo": 200}
    assert refund["runningWallets"] == {"main": 400, "partner-air": 0, "promo": 200}
    by_wallet: dict[str, int] = {}
    for lot in read_book(platform.store, "shop", "c1").lots.values():
        by_wallet[lot.wallet] = by_wallet.get(lot.wallet, 0) + lot.remaining
    assert by_wallet == {"main": 400, "promo": 200}  # the lots agree with the running wallets
    assert reconcile(platform.store, "shop").ok


def test_a_refund_into_a_lot_already_past_its_expiry_is_expired_by_the_next_run(client, platform, clock) -> None:
    """Cancelled after the points' expiry day (the job found nothing left then): the refund
    refills the expired lot, so the next run must visit the customer again and expire it."""
    keys = policy_tenant(platform, "exp", policy={"kind": "rolling", "months": 1})
    earn(client, platform, clock, keys, "o1", amount="100.00")
    [lot] = read_book(platform.store, "exp", "c1").open_lots()
    assert client.post("/v1/rewards", json=dict(VOUCHER, pointsCost=1000, voucher=dict(
        VOUCHER["voucher"], validDays=90)), headers=auth(keys.admin)).status_code == 201
    voucher = _buy(client, keys)  # every point: nothing left to expire
    for days in (1, 6):  # runs past the job's look-back window over the lot's own calendar day
        move_to(clock, lot.expires_at + timedelta(days=days))
        platform.expiry.run()
    assert platform.ledger.head("exp", "c1").balance == 0
    assert client.post(f"/v1/customers/c1/vouchers/{voucher['voucherId']}/cancel",
                       headers=auth(keys.admin)).status_code == 201
    assert platform.ledger.head("exp", "c1").balance == 1000
    drain(platform)
    clock.advance(timedelta(days=1))
    platform.expiry.run()
    assert platform.ledger.head("exp", "c1").balance == 0
    assert reconcile(platform.store, "exp").ok
