"""Imports and birthday awards on Cosmos DB (cosmosdb-server): the ledger's invariants
hold for imported rows (their own instants, running totals exact, as-of exact) under a
re-run, and 20 redelivered birthday runs award once.

Twenty imports of one file, and twenty birthday runs, at once are raced on the embedded
store (tests/unit/imports/test_import_races.py); the transfers' ring
(tests/integration/transfers) races appends of a partition on the emulator, whose
batches are all or nothing like the service's (tests/emulators/cosmosdb-server.js)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from shared.app.customers import CustomerProfile
from shared.occasions.service import OccasionSettings
from shared.platform import Platform
from tests.unit.imports.conftest import ndjson, run_import

pytestmark = pytest.mark.cosmos

N = 20


def _rows(count: int) -> list[dict]:
    return [{"orderId": f"z{n}", "customerId": f"c{1 + n % 3}", "amount": "2.00", "currency": "EUR",
             "timestamp": f"2025-0{1 + n % 9}-01T00:00:00Z", "points": n} for n in range(count)]


def _check_running_totals(platform: Platform) -> None:
    for n in (1, 2, 3):
        entries = platform.ledger.entries("acme", f"c{n}", newest_first=False, limit=500)
        balance = 0
        for seq, entry in enumerate(entries, start=1):
            balance += entry["signedAmount"]
            assert entry["seq"] == seq and entry["runningBalance"] == balance and entry["imported"] is True


def test_imported_rows_keep_the_invariants_on_cosmos(cosmos_platform) -> None:
    rows = _rows(30)
    first = run_import(cosmos_platform, "acme", ndjson(rows), kind="orders")
    again = run_import(cosmos_platform, "acme", ndjson(rows), kind="orders")
    assert first["rowsDone"] == again["rowsDone"] == 30
    _check_running_totals(cosmos_platform)
    assert sum(cosmos_platform.ledger.head("acme", f"c{n}").balance for n in (1, 2, 3)) == sum(range(30))
    as_of = cosmos_platform.ledger.head_as_of("acme", "c1", datetime(2025, 1, 15, tzinfo=timezone.utc))
    assert as_of.balance == sum(n for n in range(30) if n % 3 == 0 and n % 9 == 0)


def test_twenty_redelivered_birthday_runs_on_cosmos(cosmos_platform, clock) -> None:
    cosmos_platform.occasions.save_settings("acme", OccasionSettings(birthdayPoints=10))
    cosmos_platform.customers.register("acme", CustomerProfile(customerId="b1", joinDate="2024-01-01",
                                                               birthDate="1990-12-24"))
    clock.advance(datetime(2026, 12, 24, 12, tzinfo=timezone.utc) - clock.now())
    for _ in range(N):  # redelivered one after another (racing ones: on the embedded store)
        cosmos_platform.occasions.run_tenant("acme")
    assert cosmos_platform.ledger.head("acme", "b1").balance == 10
    assert cosmos_platform.ledger.head("acme", "b1").seq == 1
