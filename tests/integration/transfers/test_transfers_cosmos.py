"""Transfers and the hash chain on Cosmos DB (cosmosdb-server): the entries' ``prevHash`` and
``hash`` are written in the transactional batch that writes them, concurrent transfers in a
ring keep the total with no balance negative, and a crash after the debit is recovered.

The emulator's batches are all or nothing, as the service's are (tests/emulators/cosmosdb-server.js,
fix 3): a replayed step whose plan passes is refused at its records and writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from shared.app.corrections import AdjustmentRequest
from shared.app.reconcile import reconcile
from shared.bus.local_queue import LocalQueue
from shared.clock import ManualClock
from shared.platform import Platform, build_platform
from shared.settings import Settings
from shared.transfers.saga import RECOVERY_GRACE, Transfers, TransferRequest
from tests.conftest import add_customer, make_tenant, run_in_threads

pytestmark = pytest.mark.cosmos

RING = [f"r{n}" for n in range(8)]


@pytest.fixture
def cosmos_platform(cosmos_store, tmp_path: Path, clock: ManualClock) -> Iterator[Platform]:
    settings = Settings.from_env({"ACCRUE_DATA_DIR": str(tmp_path / "data"), "ACCRUE_SQLITE_SYNCHRONOUS": "NORMAL"})
    (tmp_path / "data").mkdir()
    bus = LocalQueue(tmp_path / "data" / "queue.db", synchronous="NORMAL")
    platform = build_platform(settings, store=cosmos_store, bus=bus, clock=clock)
    make_tenant(platform, "acme")
    for customer in RING:
        add_customer(platform, "acme", customer)
        platform.corrections.adjust("acme", customer, AdjustmentRequest(
            points=10, reasonCode="goodwill", reason="seed", idempotencyKey=f"seed-{customer}"), "k1")
    yield platform
    bus.close()


def _request(to: str, points: int, key: str) -> TransferRequest:
    return TransferRequest.model_validate({"toCustomerId": to, "points": points, "idempotencyKey": key})


def test_entries_are_chained_on_cosmos(cosmos_platform) -> None:
    cosmos_platform.transfers.transfer("acme", "r0", _request("r1", 4, "t1"))
    for customer in ("r0", "r1"):
        entries = cosmos_platform.ledger.entries("acme", customer, newest_first=False)
        assert all(e["hash"] and e["prevHash"] for e in entries)
        assert cosmos_platform.chains.verify_customer("acme", customer).ok
    assert cosmos_platform.chains.verify_tenant("acme").ok


def test_a_ring_of_concurrent_transfers_keeps_the_total_on_cosmos(cosmos_platform) -> None:
    platform = cosmos_platform
    total = sum(platform.ledger.head("acme", c).balance for c in RING)

    def send(n: int) -> None:
        try:
            platform.transfers.transfer("acme", RING[n % len(RING)],
                                        _request(RING[(n + 1) % len(RING)], 1 + n % 4, f"ring-{n}"))
        except Exception:  # noqa: BLE001 - refusals and conflicts leave the transfer to recovery or undone
            pass

    run_in_threads(send, [(n,) for n in range(40)], timeout=300)
    platform.clock.advance(RECOVERY_GRACE + timedelta(seconds=1))
    platform.transfers.recover()
    balances = [platform.ledger.head("acme", c).balance for c in RING]
    assert sum(balances) == total and min(balances) >= 0
    assert platform.transfers.open_transfers(due_only=False) == []
    assert reconcile(platform.store, "acme").ok
    assert platform.chains.verify_tenant("acme").ok


@pytest.mark.parametrize("points", [7, 4], ids=["sender-cannot-afford-it-again", "sender-could-afford-it-again"])
def test_a_crash_after_the_debit_is_recovered_on_cosmos(cosmos_platform, monkeypatch, points: int) -> None:
    """Recovery replays the debit: when the sender could still afford the transfer, the replay's
    plan passes and its batch (a new entry, then the transfer record that exists) must write
    nothing. A stray debit entry here lost points on an emulator whose batches were not atomic."""
    platform = cosmos_platform
    debit = Transfers._debit

    def debit_then_die(self, intent):
        debit(self, intent)
        raise RuntimeError("crash after the debit")

    with monkeypatch.context() as patched:
        patched.setattr(Transfers, "_debit", debit_then_die)
        with pytest.raises(RuntimeError):
            platform.transfers.transfer("acme", "r0", _request("r1", points, "t1"))
    sender_seq = platform.ledger.head("acme", "r0").seq
    assert platform.ledger.head("acme", "r0").balance == 10 - points
    assert platform.ledger.head("acme", "r1").balance == 10
    platform.clock.advance(RECOVERY_GRACE + timedelta(seconds=1))
    assert platform.transfers.recover()["recovered"] == 1
    assert platform.ledger.head("acme", "r1").balance == 10 + points
    assert platform.ledger.head("acme", "r0").balance == 10 - points
    assert platform.ledger.head("acme", "r0").seq == sender_seq  # the completion writes no entry
    assert reconcile(platform.store, "acme").ok
