"""A wallet-filtered ledger page scans at most ``WALLET_SCAN`` entries; when the scan stops
before the oldest entry, the page must say so with a ``next`` that continues after the last
entry scanned, never ``next: null`` (that hid every older entry of the wallet for good)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from shared.api.routes import customers
from shared.app.corrections import AdjustmentRequest
from shared.platform import Platform
from tests.conftest import TenantKeys, auth

WALLETS = {"wallets": {"wallets": [{"name": "main"}, {"name": "promo"}], "default": "main",
                       "spendingOrder": ["promo", "main"]}}


def adjust(platform: Platform, key: str, wallet: str) -> None:
    platform.corrections.adjust("acme", "c1", AdjustmentRequest(points=1, reasonCode="goodwill", reason="r",
                                                                idempotencyKey=key, wallet=wallet), "test")


def walk(client: TestClient, link: str, key: str) -> tuple[list[int], int]:
    seqs, pages = [], 0
    while link:
        page = client.get(link, headers=auth(key))
        assert page.status_code == 200, page.text
        seqs += [e["seq"] for e in page.json()["items"]]
        link, pages = page.json()["next"], pages + 1
        assert pages < 100, "the pages never ended"
    return seqs, pages


# where the promo entries sit among main ones: (promo before, main between, promo after);
# the scan reads 200 entries a step, so a bound of 200 stops it after each step.
@pytest.mark.parametrize("older, gap, newer", [(1, 201, 0), (2, 430, 1)])
def test_every_entry_of_a_wallet_is_reached_past_the_scan_bound(client: TestClient, platform: Platform,
                                                                 tenant: TenantKeys, monkeypatch, older: int,
                                                                 gap: int, newer: int) -> None:
    monkeypatch.setattr(customers, "WALLET_SCAN", 200)  # the bound, small: a scan stops a few times
    assert client.patch("/v1/tenant", headers=auth(tenant.admin), json=WALLETS).status_code == 200
    for n in range(older):
        adjust(platform, f"p-old-{n}", "promo")
    for n in range(gap):
        adjust(platform, f"m-{n}", "main")
    for n in range(newer):
        adjust(platform, f"p-new-{n}", "promo")
    everything = client.get("/v1/customers/c1/ledger?limit=200", headers=auth(tenant.merchant)).json()
    promo = [e["seq"] for e in platform.ledger.entries("acme", "c1", limit=5000)
             if e.get("wallet") == "promo" or "promo" in (e.get("walletSplit") or {})]
    assert len(promo) == older + newer and everything["items"]
    for limit in (1, 10):
        seqs, _ = walk(client, f"/v1/customers/c1/ledger?wallet=promo&limit={limit}", tenant.merchant)
        assert seqs == promo, f"limit {limit}: each promo entry once, newest first"
