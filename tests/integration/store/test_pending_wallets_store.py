"""Pending points and wallets on both stores (the embedded SQLite store and the Cosmos
DB adapter against cosmosdb-server): the maturation writes one settling EARN per due
earn and its settlement record in one batch, exactly once; wallet splits and running
wallets keep their invariants; the same ledger documents on both."""

from __future__ import annotations

from datetime import datetime, timezone

from shared.app.tenants import TenantDirectory
from shared.clock import ManualClock
from shared.domain.tenants import TenantSettings
from shared.domain.wallets import WalletSettings
from shared.ledger.entries import EntryDraft, EntryStatus, EntryType, settlement_id
from shared.ledger.service import Ledger, Plan, TransactionRequest
from shared.pending.maturation import Maturation
from shared.store.layout import LEDGER, customer_pk
from shared.store.port import DocumentStore

WALLETS = WalletSettings.model_validate({"wallets": [{"name": "main"}, {"name": "promo"}], "default": "main",
                                         "spendingOrder": ["promo", "main"]})


def _write(ledger: Ledger, key: str, *drafts: EntryDraft) -> list[dict]:
    return ledger.append_one(TransactionRequest("shop", "c1", key, key, lambda head: Plan(list(drafts), {}))).entries


def test_maturation_and_wallets_keep_the_ledger_invariants(store: DocumentStore) -> None:
    clock = ManualClock(datetime(2026, 11, 1, 12, tzinfo=timezone.utc))
    tenants = TenantDirectory(store)
    tenants.save(TenantSettings(tenantId="shop", name="shop", timeZone="UTC", pendingDays=2, wallets=WALLETS))
    ledger = Ledger(store, clock)
    ledger.wallets_of = lambda tenant_id: tenants.get(tenant_id).wallets
    _write(ledger, "earn-1", EntryDraft(EntryType.EARN, 70, wallet="promo"), EntryDraft(EntryType.EARN, 30))
    (held,) = _write(ledger, "earn-2", EntryDraft(EntryType.EARN, 50, status=EntryStatus.PENDING, wallet="promo",
                                                  attributes={"maturesAt": "2026-11-03T12:00:00+00:00"}))
    (spent,) = _write(ledger, "spend", EntryDraft(EntryType.REDEEM, -80))
    assert spent["walletSplit"] == {"main": -10, "promo": -70}
    assert spent["runningWallets"] == {"main": 20, "promo": 0} and spent["runningBalance"] == 20

    job = Maturation(store, ledger, tenants, clock)
    assert job.mature_customers("shop", ["c1"]).matured == 0          # not due yet
    clock.advance(datetime(2026, 11, 3, 13, tzinfo=timezone.utc) - clock.now())
    assert job.mature_customers("shop", ["c1"]).matured == 1
    assert job.mature_customers("shop", ["c1"]).matured == 0          # exactly once
    matured = ledger.entries("shop", "c1", limit=1)[0]
    assert matured["settlesEntryId"] == held["id"] and matured["walletSplit"] == {"promo": 50}
    assert matured["runningWallets"] == {"main": 20, "promo": 50}
    assert store.read(LEDGER, customer_pk("shop", "c1"), settlement_id(held["id"]))["resolution"] == "matured"
    head = ledger.head("shop", "c1")
    assert (head.balance, head.pending, head.seq) == (70, 0, 5)
    assert sum(dict(head.wallets).values()) == head.balance
