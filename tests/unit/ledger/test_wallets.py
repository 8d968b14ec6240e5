"""Wallets (sub-balances) over the API and ingestion: earning into a rule's wallet with
the wallet's expiry policy, spending in the configured order or from a named wallet,
adjustments targeting one, per-wallet balances and history, per-wallet invariants,
and a tenant without wallets exactly as before."""

from __future__ import annotations

from datetime import datetime

import pytest

from shared.app.reconcile import reconcile
from shared.domain.wallets import WalletSettings
from tests.conftest import add_customer, auth, drain, make_tenant
from tests.unit.expiry.conftest import earn, entries, move_to
from tests.unit.spend.conftest import partner, register_partner  # noqa: F401 - the fake partner fixture

WALLETS = {"wallets": [{"name": "main"},
                       {"name": "promo", "expiryPolicy": {"kind": "rolling", "months": 1}},
                       {"name": "partner-air"}],
           "default": "main", "spendingOrder": ["promo", "main", "partner-air"]}
REASON = {"code": "campaign", "text": "wallet tests"}
RULES = 'rule "base" then earn 100 points\nrule "promo" then earn 50 points into "promo"\n'


def wallet_tenant(client, platform, tenant_id: str = "shop", wallets=WALLETS, rules: str | None = RULES):
    keys = make_tenant(platform, tenant_id)
    add_customer(platform, tenant_id, "c1")
    if wallets is not None:
        answer = client.patch("/v1/tenant", json={"wallets": wallets}, headers=auth(keys.admin))
        assert answer.status_code == 200, answer.text
    if rules is not None:
        saved = client.post("/v1/rules/versions", json={"ruleSetId": "main", "source": rules, "reason": REASON},
                            headers=auth(keys.admin))
        assert saved.status_code == 201, saved.text
        active = client.post("/v1/rules/activate", json={"target": {"ruleSetId": "main", "version": 1},
                                                         "reason": REASON}, headers=auth(keys.admin))
        assert active.status_code == 200, active.text
    return keys


def balance(client, keys) -> dict:
    return client.get("/v1/customers/c1/balance", headers=auth(keys.analyst)).json()


def redeem(client, keys, key: str, points: int, wallet: str | None = None):
    body = {"idempotencyKey": key, "points": points, **({"wallet": wallet} if wallet else {})}
    return client.post("/v1/customers/c1/redemptions", json=body, headers=auth(keys.merchant))


def test_earns_go_into_their_wallet_with_its_expiry_policy(client, platform, clock) -> None:
    keys = wallet_tenant(client, platform)
    earn(client, platform, clock, keys, "o1")
    base, promo = entries(platform, "shop", "c1")
    assert (base["walletSplit"], promo["walletSplit"]) == ({"main": 100}, {"promo": 50})
    assert promo["runningWallets"] == {"main": 100, "partner-air": 0, "promo": 50}
    assert "expiresAt" not in base.get("attributes", {})          # main: the tenant's policy (never)
    assert promo["attributes"]["expiresAt"].startswith("2026-12-01")  # promo: one month
    assert balance(client, keys)["wallets"] == {"main": 100, "promo": 50, "partner-air": 0}
    assert reconcile(platform.store, "shop").ok


def test_spending_follows_the_order_and_a_named_wallet_draws_only_from_it(client, platform, clock) -> None:
    keys = wallet_tenant(client, platform)
    earn(client, platform, clock, keys, "o1")
    assert redeem(client, keys, "r1", 70).status_code == 201       # promo 50 first, then 20 of main
    drain(platform)
    assert balance(client, keys)["wallets"] == {"main": 80, "promo": 0, "partner-air": 0}
    refused = redeem(client, keys, "r2", 1, wallet="promo")
    assert refused.status_code == 422 and refused.headers["content-type"].startswith("application/problem+json")
    unknown = redeem(client, keys, "r3", 1, wallet="nope")
    assert unknown.status_code == 422
    assert redeem(client, keys, "r4", 30, wallet="main").status_code == 201
    drain(platform)
    assert balance(client, keys)["wallets"] == {"main": 50, "promo": 0, "partner-air": 0}
    book_lots = platform.expiry.book("shop", "c1").lots.values()
    assert {lot.wallet: lot.remaining for lot in book_lots} == {"main": 50, "promo": 0}
    assert reconcile(platform.store, "shop").ok


def test_a_cancelled_reservation_gives_back_to_the_wallets_it_took_from(client, platform, clock) -> None:
    keys = wallet_tenant(client, platform)
    earn(client, platform, clock, keys, "o1")
    body = {"idempotencyKey": "res", "points": 120, "mode": "reserve"}
    reserved = client.post("/v1/customers/c1/redemptions", json=body, headers=auth(keys.merchant)).json()
    drain(platform)
    assert balance(client, keys)["wallets"] == {"main": 30, "promo": 0, "partner-air": 0}
    client.post(f"/v1/customers/c1/redemptions/{reserved['redemptionId']}/cancel", headers=auth(keys.merchant))
    drain(platform)
    assert balance(client, keys)["wallets"] == {"main": 100, "promo": 50, "partner-air": 0}
    assert reconcile(platform.store, "shop").ok


def test_adjustments_target_a_wallet_and_history_reads_per_wallet(client, platform, clock) -> None:
    keys = wallet_tenant(client, platform)
    earn(client, platform, clock, keys, "o1")
    adjust = {"points": 25, "reasonCode": "goodwill", "reason": "sorry", "idempotencyKey": "a1",
              "wallet": "partner-air"}
    assert client.post("/v1/customers/c1/adjustments", json=adjust, headers=auth(keys.admin)).status_code == 201
    too_much = dict(adjust, points=-26, idempotencyKey="a2")
    assert client.post("/v1/customers/c1/adjustments", json=too_much, headers=auth(keys.admin)).status_code == 422
    items = client.get("/v1/customers/c1/ledger?wallet=partner-air", headers=auth(keys.analyst)).json()["items"]
    assert [(i["entryType"], i["walletSplit"]) for i in items] == [("ADJUST", {"partner-air": 25})]
    promo = client.get("/v1/customers/c1/ledger?wallet=promo", headers=auth(keys.analyst)).json()["items"]
    assert [i["signedAmount"] for i in promo] == [50]
    assert client.get("/v1/customers/c1/ledger?wallet=nope", headers=auth(keys.analyst)).status_code == 422
    assert reconcile(platform.store, "shop").ok


def test_a_wallet_lot_expires_out_of_its_wallet(client, platform, clock) -> None:
    keys = wallet_tenant(client, platform)
    earn(client, platform, clock, keys, "o1")
    move_to(clock, datetime.fromisoformat("2026-12-03T00:00:00+00:00"))
    assert platform.expiry.run().points_expired == 50
    drain(platform)
    expire = entries(platform, "shop", "c1")[-1]
    assert expire["entryType"] == "EXPIRE" and expire["walletSplit"] == {"promo": -50}
    assert balance(client, keys)["wallets"] == {"main": 100, "promo": 0, "partner-air": 0}
    assert reconcile(platform.store, "shop").ok


@pytest.mark.parametrize("bad", [
    {"wallets": [], "default": "main", "spendingOrder": []},
    {"wallets": [{"name": "main"}, {"name": "main"}], "default": "main", "spendingOrder": ["main", "main"]},
    {"wallets": [{"name": "main"}], "default": "promo", "spendingOrder": ["main"]},
    {"wallets": [{"name": "main"}, {"name": "promo"}], "default": "main", "spendingOrder": ["main"]},
    {"wallets": [{"name": "Main"}], "default": "Main", "spendingOrder": ["Main"]},
    {"wallets": [{"name": "main", "expiryPolicy": {"kind": "rolling"}}], "default": "main",
     "spendingOrder": ["main"]},
])
def test_bad_wallet_settings_are_refused_and_change_nothing(client, platform, bad) -> None:
    keys = wallet_tenant(client, platform, wallets=None, rules=None)
    answer = client.patch("/v1/tenant", json={"wallets": bad}, headers=auth(keys.admin))
    assert answer.status_code == 422, answer.text
    assert platform.tenants.get("shop").wallets is None


def test_a_wallet_cannot_be_removed(client, platform) -> None:
    keys = wallet_tenant(client, platform, rules=None)
    fewer = {"wallets": [{"name": "main"}], "default": "main", "spendingOrder": ["main"]}
    answer = client.patch("/v1/tenant", json={"wallets": fewer}, headers=auth(keys.admin))
    assert answer.status_code == 422 and "promo" in answer.text
    nulled = client.patch("/v1/tenant", json={"wallets": None}, headers=auth(keys.admin))
    assert nulled.status_code == 422 and "main" in nulled.text
    assert platform.tenants.get("shop").wallets == WalletSettings.model_validate(WALLETS)


def test_a_tenant_without_wallets_writes_exactly_what_it_wrote_before(client, platform, clock) -> None:
    """The same orders, redemption, adjustment and refund for a tenant without wallets and for
    one with: the first tenant's entries carry no wallet field at all and its answers have no
    ``wallets``; apart from the wallet fields, both ledgers are the same."""
    plain = wallet_tenant(client, platform, "plain", wallets=None)
    walled = wallet_tenant(client, platform, "walled")
    for keys in (plain, walled):
        earn(client, platform, clock, keys, "o1")
        earn(client, platform, clock, keys, "o2", "3.00")
        assert redeem(client, keys, "r1", 120).status_code == 201
        adjust = {"points": -10, "reasonCode": "correction", "reason": "x", "idempotencyKey": "a1"}
        assert client.post("/v1/customers/c1/adjustments", json=adjust, headers=auth(keys.admin)).status_code == 201
        refund = {"refundId": "f1", "amount": "3.00", "currency": "EUR"}
        assert client.post("/v1/orders/o2/refunds", json=refund, headers=auth(keys.admin)).status_code == 201
        drain(platform)
    wallet_fields = {"wallet", "walletSplit", "runningWallets"}
    # hash and prevHash: the chain (shared/ledger/chain.py) covers the partition key, which differs.
    volatile = {"transactionId", "pk", "tenantId", "_etag", "_ts", "idempotencyKey", "attributes", "hash", "prevHash"}
    plain_entries, walled_entries = entries(platform, "plain", "c1"), entries(platform, "walled", "c1")
    assert all(not wallet_fields & set(e) for e in plain_entries)
    assert all("runningWallets" in e for e in walled_entries)

    def core(entry: dict) -> dict:
        return {k: v for k, v in entry.items() if k not in wallet_fields | volatile}

    assert [core(e) for e in plain_entries] == [core(e) for e in walled_entries]
    assert "wallets" not in balance(client, plain) and "wallets" in balance(client, walled)
    assert reconcile(platform.store, "plain").ok and reconcile(platform.store, "walled").ok



def test_a_conversion_draws_from_its_named_wallet(client, platform, clock, partner) -> None:  # noqa: F811
    keys = wallet_tenant(client, platform, rules=None)
    adjust = {"points": 3000, "reasonCode": "goodwill", "reason": "air", "idempotencyKey": "a1",
              "wallet": "partner-air"}
    assert client.post("/v1/customers/c1/adjustments", json=adjust, headers=auth(keys.admin)).status_code == 201
    register_partner(platform, "air", partner.url)
    programme = {"partnerId": "air", "name": "Air miles", "rate": "0.5", "minimumPoints": 1000}
    assert client.put("/v1/conversion-programmes/miles", json=programme, headers=auth(keys.admin)).status_code == 200
    body = {"idempotencyKey": "v1", "programmeId": "miles", "points": 1000, "partnerAccount": "FF123",
            "wallet": "promo"}
    refused = client.post("/v1/customers/c1/conversions", json=body, headers=auth(keys.merchant))
    assert refused.status_code == 422, refused.text                 # promo holds nothing: nothing written
    assert len(entries(platform, "shop", "c1")) == 1
    done = client.post("/v1/customers/c1/conversions", json=dict(body, idempotencyKey="v2", wallet="partner-air"),
                       headers=auth(keys.merchant))
    assert done.status_code == 201, done.text
    drain(platform)
    reservation = next(e for e in entries(platform, "shop", "c1") if e["entryType"] == "CONVERT")
    assert reservation["walletSplit"] == {"partner-air": -1000}
    assert balance(client, keys)["wallets"] == {"main": 0, "promo": 0, "partner-air": 2000}
    assert reconcile(platform.store, "shop").ok
