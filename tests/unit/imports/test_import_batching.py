"""Invariant: how an import's rows are grouped into store transactions changes nothing
that is written. The same file imported a chunk of many rows at a time and a row at a
time leaves the same ledger: the same entries with the same running totals, the same
hash chain (every ``prevHash`` and ``hash``), the same order records and markers.

What differs between two runs by nature is kept the same here: the instant (one manual
clock) and the transaction ids (the process's id generator restarted for each run:
they are hashed into the entries)."""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from shared.imports import service
from shared.ledger import service as ledger_service
from shared.platform import build_platform
from shared.settings import Settings
from tests.conftest import add_customer, make_tenant
from tests.unit.imports.conftest import finish, ledger_docs, ndjson, start_import

_runs = itertools.count(1)

# Each row its own order id: a key repeated inside one chunk is refused by the store and
# re-planned, which draws other transaction ids than a row at a time (same content, other
# hashes); repeated keys are the re-run tests' subject (test_import_crash.py).
order = st.builds(
    lambda customer, points, day: {"customerId": customer, "amount": "2.50",
                                      "currency": "EUR", "timestamp": f"2025-0{1 + day % 9}-1{day % 10}T08:00:00Z",
                                      "points": points},
    st.sampled_from(["c1", "c2", "c3", "nobody"]), st.integers(0, 500), st.integers(0, 50))


def _import(tmp: Path, clock, rows: list[dict], chunk: int, monkeypatch) -> list[dict]:
    monkeypatch.setattr(service, "ROWS_PER_CHUNK", chunk)
    monkeypatch.setattr(ledger_service, "new_transaction_id", ledger_service._TransactionIds())
    monkeypatch.setattr(ledger_service.new_transaction_id, "_prefix", "0" * 16)
    platform = build_platform(Settings.from_env({"ACCRUE_DATA_DIR": str(tmp), "ACCRUE_SQLITE_SYNCHRONOUS": "NORMAL"}),
                              clock=clock)
    try:
        make_tenant(platform, "acme")
        for customer in ("c1", "c2", "c3"):
            add_customer(platform, "acme", customer)
        start_import(platform, "acme", ndjson(rows), kind="orders")
        finish(platform)
        docs = ledger_docs(platform, "acme")
    finally:
        platform.close()
    return docs


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(order, min_size=1, max_size=40), chunk=st.integers(2, 50))
def test_one_transaction_per_chunk_equals_one_per_row(tmp_path, clock, monkeypatch, rows, chunk) -> None:
    run = next(_runs)
    rows = [dict(row, orderId=f"o{n}") for n, row in enumerate(rows)]
    with monkeypatch.context() as patch:
        by_chunk = _import(tmp_path / f"chunk-{run}", clock, rows, chunk, patch)
    with monkeypatch.context() as patch:
        by_row = _import(tmp_path / f"row-{run}", clock, rows, 1, patch)
    assert by_chunk == by_row
    entries = [d for d in by_chunk if d["docType"] == "entry"]
    assert all(e["imported"] and e["hash"] and e["prevHash"] for e in entries)
