"""A micro-batch reads only the customers whose ledger changed since its window began
(``ExportService._changed_customers_since``, from the store's change log), and exports
the same rows as reading every customer: each ledger entry exactly once across the feed.

Before, a micro-batch walked every customer's whole ledger through its time window, so its
cost grew with the tenant's history instead of with what changed (docs/exports.md)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from shared.exports import service as service_module
from shared.exports.service import CHANGE_MARGIN, ExportService
from shared.store.layout import LEDGER
from tests.conftest import add_customer, auth, drain, order_body
from tests.unit.exports.test_parquet_exports import _ledger_entries, _table

CUSTOMERS = [f"k{n:02d}" for n in range(24)]


def _order(client, tenant, platform, customer: str, order_id: str) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/v1/orders", json=order_body(customer, order_id), headers=auth(tenant.merchant))
    assert response.status_code == 202, response.text
    drain(platform)


def _rows(platform, manifest) -> list[str]:  # type: ignore[no-untyped-def]
    rows: list[str] = []
    for entry in manifest["files"]:
        if entry["subject"] == "transactions":
            rows += _table(platform.exports, entry).column("rowKey").to_pylist()
    return rows


class _LedgerReads:
    """Which ledger partitions the export reads (scan_json, scan_lines and query), by wrapping the store's methods."""

    def __init__(self, monkeypatch, store) -> None:  # type: ignore[no-untyped-def]
        self.pks: set[str] = set()
        query = type(store).query

        def scanning(scan):  # type: ignore[no-untyped-def]
            def scan_(this, container, pk_from, pk_to, *args):  # type: ignore[no-untyped-def]
                if container == LEDGER:
                    self.pks.add(pk_from if pk_from == pk_to else f"{pk_from}..{pk_to}")
                return scan(this, container, pk_from, pk_to, *args)
            return scan_

        def query_(this, container, q):  # type: ignore[no-untyped-def]
            if container == LEDGER and q.pk is not None:
                self.pks.add(q.pk)
            return query(this, container, q)

        monkeypatch.setattr(type(store), "scan_json", scanning(type(store).scan_json))
        monkeypatch.setattr(type(store), "scan_lines", scanning(type(store).scan_lines))
        monkeypatch.setattr(type(store), "query", query_)


class _WithoutChangeLog:
    """The SQLite store with only the port's methods, as the Cosmos DB adapter offers them: no
    change log (``latest_lsn``, ``changed_partitions``) and no raw JSON or line scans."""

    HIDDEN = ("latest_lsn", "changed_partitions", "scan_json", "scan_lines")

    def __init__(self, store) -> None:  # type: ignore[no-untyped-def]
        self._store = store

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        assert name not in self.HIDDEN, name
        return getattr(self._store, name)


def _history_then_two_orders(platform, tenant, client, clock) -> None:  # type: ignore[no-untyped-def]
    for customer in CUSTOMERS:
        add_customer(platform, "acme", customer)
        _order(client, tenant, platform, customer, f"first-{customer}")
    clock.advance(timedelta(minutes=1))
    platform.exports.microbatch("acme")  # the history: every customer
    for minute in range(3):  # runs whose marks become old enough
        clock.advance(timedelta(minutes=3))
        platform.exports.microbatch("acme")
    clock.advance(timedelta(minutes=1))
    _order(client, tenant, platform, "k03", "late-1")
    _order(client, tenant, platform, "k17", "late-2")
    clock.advance(timedelta(minutes=1))


@pytest.mark.parametrize("fmt", ["parquet", "ndjson"])
def test_without_a_change_log_a_micro_batch_reads_only_the_customers_with_rows_in_its_window(
        platform, tenant, client, clock, monkeypatch, fmt) -> None:  # type: ignore
    """Cosmos DB keeps no change log: the customers come from one cross-partition query of the
    window, not from a query per customer of the tenant every few minutes."""
    monkeypatch.setattr(platform.exports, "_store", _WithoutChangeLog(platform.store))
    platform.exports.save_settings("acme", format=fmt)
    _history_then_two_orders(platform, tenant, client, clock)
    reads = _LedgerReads(monkeypatch, platform.store)
    manifest = platform.exports.microbatch("acme")
    assert reads.pks == {"acme:k03", "acme:k17"}, reads.pks
    assert sum(f["rows"] for f in manifest["files"] if f["subject"] == "transactions") == 2
    assert sum(f["rows"] for f in manifest["files"] if f["subject"] == "orders") == 2
    if fmt == "parquet":
        assert sorted(r.split("|")[0] for r in _rows(platform, manifest)) == ["k03", "k17"]


def test_without_a_change_log_a_window_too_large_reads_every_customer(platform, tenant, client, clock,
                                                                      monkeypatch) -> None:  # type: ignore
    monkeypatch.setattr(platform.exports, "_store", _WithoutChangeLog(platform.store))
    monkeypatch.setattr(service_module, "WINDOW_SCAN_LIMIT", 3)
    _history_then_two_orders(platform, tenant, client, clock)
    for n in range(3):
        _order(client, tenant, platform, "k05", f"more-{n}")
    clock.advance(timedelta(minutes=1))
    reads = _LedgerReads(monkeypatch, platform.store)
    manifest = platform.exports.microbatch("acme")
    assert sum(f["rows"] for f in manifest["files"] if f["subject"] == "transactions") == 5
    assert {f"acme:{c}" for c in ["c1", "c2", "c3", *CUSTOMERS]} <= reads.pks, reads.pks


@pytest.mark.parametrize("fmt", ["parquet", "ndjson"])
def test_a_micro_batch_reads_only_the_customers_that_changed(platform, tenant, client, clock, monkeypatch,
                                                            fmt) -> None:  # type: ignore
    platform.exports.save_settings("acme", format=fmt)
    _history_then_two_orders(platform, tenant, client, clock)
    reads = _LedgerReads(monkeypatch, platform.store)
    manifest = platform.exports.microbatch("acme")
    assert reads.pks == {"acme:k03", "acme:k17"}, reads.pks
    if fmt == "parquet":
        assert sorted(r.split("|")[0] for r in _rows(platform, manifest)) == ["k03", "k17"]
    assert sum(f["rows"] for f in manifest["files"] if f["subject"] == "transactions") == 2


def test_without_a_mark_old_enough_a_run_reads_every_customer(platform, tenant, client, clock,
                                                              monkeypatch) -> None:  # type: ignore
    for customer in CUSTOMERS[:5]:
        add_customer(platform, "acme", customer)
        _order(client, tenant, platform, customer, f"first-{customer}")
    clock.advance(timedelta(minutes=1))
    platform.exports.microbatch("acme")
    _order(client, tenant, platform, "k01", "late")
    clock.advance(CHANGE_MARGIN / 2)  # the only mark is younger than the window's start minus the margin
    reads = _LedgerReads(monkeypatch, platform.store)
    manifest = platform.exports.microbatch("acme")
    assert sum(f["rows"] for f in manifest["files"] if f["subject"] == "transactions") == 1
    everyone = {f"acme:{c}" for c in ["c1", "c2", "c3", *CUSTOMERS[:5]]}  # the tenant fixture's three too
    assert everyone <= reads.pks and "acme:c1..acme:k04" in reads.pks, reads.pks


@pytest.mark.parametrize("change_log", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_a_feed_of_micro_batches_exports_every_entry_once(platform, tenant, client, clock, monkeypatch, seed,
                                                          change_log) -> None:  # type: ignore
    """Orders at random moments and customers, micro-batches on the timer's schedule (some
    reading every customer, most only the changed ones, found from the change log or, as on
    Cosmos DB, by the window's query): every entry in exactly one file."""
    from shared.jobs import handlers

    if not change_log:
        monkeypatch.setattr(platform.exports, "_store", _WithoutChangeLog(platform.store))

    handle = handlers(platform)["export-microbatch"]
    chance = random.Random(seed)
    for customer in CUSTOMERS:
        add_customer(platform, "acme", customer)
    exported: list[str] = []
    narrowed = 0
    original = ExportService._changed_customers_since

    def counted(self, *args):  # type: ignore[no-untyped-def]
        nonlocal narrowed
        found = original(self, *args)
        narrowed += found is not None
        return found

    ExportService._changed_customers_since = counted  # type: ignore[method-assign]
    try:
        for tick in range(40):
            for n in range(chance.randrange(0, 4)):
                clock.advance(timedelta(seconds=chance.randrange(1, 15)))
                _order(client, tenant, platform, chance.choice(CUSTOMERS), f"o{tick}-{n}")
            clock.advance(timedelta(seconds=60) - timedelta(seconds=clock.now().second))
            step = handle({"tenantId": "acme"}, None)
            assert step.done
            if not step.result.get("skipped"):
                manifest = platform.exports._read_manifest(  # noqa: SLF001
                    "acme", step.result["runId"], f"acme/incremental/{step.result['runId']}")
                exported += _rows(platform, manifest)
        clock.advance(timedelta(minutes=10))
        exported += _rows(platform, platform.exports.microbatch("acme"))
    finally:
        ExportService._changed_customers_since = original  # type: ignore[method-assign]
    assert narrowed, "some runs read only the changed customers"
    assert sorted(exported) == sorted(_ledger_entries(platform)), "every entry exactly once"
