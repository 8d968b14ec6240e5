"""Imported ledger rows reach the warehouse feed: each in the window of its ``recordedAt``
(when the import wrote it), once, whatever its own ``createdAt``.

Before, the feed selected every ledger row by ``createdAt``: an imported row dated years
back fell in a window exported long before it existed, so a warehouse fed by the
micro-batches never saw a tenant's imported history (docs/imports.md told it to run a
backfill). The class of test: a feed of micro-batches with imports among live orders, on
the change log's path and on the path of a store without one (Cosmos DB), every entry
and every order record in exactly one file."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from shared.clock import iso
from shared.exports.service import ExportService, rows_per_subject
from shared.store.layout import LEDGER
from shared.store.port import Filter, Query
from tests.conftest import add_customer
from tests.unit.exports.test_microbatch_changes import CUSTOMERS, _order, _rows, _WithoutChangeLog
from tests.unit.exports.test_parquet_exports import _ledger_entries, _table
from tests.unit.imports.conftest import ndjson, run_import


def _historical(n: str, customer: str, timestamp: str, points: int = 5) -> dict:
    return {"orderId": f"h{n}", "customerId": customer, "amount": "12.50", "currency": "EUR",
            "timestamp": timestamp, "points": points}


def _order_ids(platform, manifest) -> list[str]:  # type: ignore[no-untyped-def]
    ids: list[str] = []
    for entry in manifest["files"]:
        if entry["subject"] == "orders":
            ids += _table(platform.exports, entry).column("orderId").to_pylist()
    return ids


def _records(platform) -> list[str]:  # type: ignore[no-untyped-def]
    docs = platform.store.query(LEDGER, Query(pk=None, filters=(Filter("docType", "=", "order"),), limit=10_000))
    return sorted(d["orderId"] for d in docs if d["pk"].startswith("acme:"))


@pytest.mark.parametrize("fmt", ["parquet", "ndjson"])
@pytest.mark.parametrize("change_log", [True, False])
def test_history_imported_after_the_feed_started_is_in_the_next_micro_batch_once(
        platform, tenant, client, clock, monkeypatch, fmt, change_log) -> None:  # type: ignore
    if not change_log:
        monkeypatch.setattr(platform.exports, "_store", _WithoutChangeLog(platform.store))
    platform.exports.save_settings("acme", format=fmt)
    _order(client, tenant, platform, "c1", "live-1")
    clock.advance(timedelta(minutes=1))
    platform.exports.microbatch("acme")
    for _ in range(3):  # marks old enough for the change log's narrowing
        clock.advance(timedelta(minutes=3))
        platform.exports.microbatch("acme")
    status = run_import(platform, "acme", ndjson([_historical("1", "c2", "2024-03-01T10:00:00Z"),
                                                  _historical("2", "c2", "2024-03-05T10:00:00Z", points=7),
                                                  _historical("3", "c3", "2025-01-09T10:00:00Z")]), kind="orders")
    assert status["rowsDone"] == 3
    clock.advance(timedelta(minutes=1))
    manifest = platform.exports.microbatch("acme")
    counts = rows_per_subject(manifest)
    assert counts.get("transactions") == 3 and counts.get("orders") == 3, counts
    assert counts.get("ruleevaluations") == 3, counts
    if fmt == "parquet":
        keys = _rows(platform, manifest)
        assert sorted(k.split("|")[0] for k in keys) == ["c2", "c2", "c3"]
        # Partitioned by the row's own date: the warehouse's table is by when it happened.
        dates = sorted({f["date"] for f in manifest["files"] if f["subject"] == "transactions" and f["rows"]})
        assert dates == ["2024-03-01", "2024-03-05", "2025-01-09"], dates
        assert sorted(_order_ids(platform, manifest)) == ["h1", "h2", "h3"]
    clock.advance(timedelta(minutes=5))
    again = rows_per_subject(platform.exports.microbatch("acme"))
    assert not again.get("transactions") and not again.get("orders"), again


def test_a_backfill_exports_again_what_the_feed_carried_in_its_window(platform, tenant, clock) -> None:  # type: ignore
    """One rule for every run: a backfill of the import's day holds the imported rows, a
    backfill of the days they are dated does not (the feed never carried them there)."""
    platform.exports.save_settings("acme", format="parquet")
    imported_on = clock.now()
    run_import(platform, "acme", ndjson([_historical("1", "c1", "2024-03-01T10:00:00Z")]), kind="orders")
    day = imported_on.replace(hour=0, minute=0, second=0, microsecond=0)
    clock.advance(timedelta(days=2))
    on_import_day = platform.exports.backfill("acme", day, day + timedelta(days=1), ["transactions", "orders"])
    assert rows_per_subject(on_import_day) == {"transactions": 1, "orders": 1}
    dated = clock.now().replace(year=2024, month=3, day=1, hour=0, minute=0, second=0, microsecond=0)
    on_its_date = platform.exports.backfill("acme", dated, dated + timedelta(days=1), ["transactions", "orders"])
    assert not rows_per_subject(on_its_date).get("transactions"), rows_per_subject(on_its_date)


def test_rows_an_import_writes_while_a_run_reads_its_window_wait_for_the_next_window(
        platform, tenant, client, clock) -> None:  # type: ignore
    """A run fixes its window, then an import writes rows dated inside that window before the
    run reads it: those rows were recorded after the window, so the next run has them, and
    only the next."""
    platform.exports.save_settings("acme", format="parquet")
    _order(client, tenant, platform, "c1", "live-1")
    clock.advance(timedelta(minutes=1))
    platform.exports.microbatch("acme")
    clock.advance(timedelta(minutes=4))
    assert platform.exports.run_slice("acme", max_files=0) is None  # the window is fixed, nothing read
    window_end = platform.exports._state("acme")["pending"]["to"]  # noqa: SLF001
    stamped = iso(clock.now() - timedelta(minutes=3))
    assert stamped <= window_end
    run_import(platform, "acme", ndjson([_historical("1", "c2", stamped)]), kind="orders")
    first = platform.exports.run_slice("acme", max_files=None)
    assert not rows_per_subject(first).get("transactions"), rows_per_subject(first)
    clock.advance(timedelta(minutes=5))
    second = platform.exports.microbatch("acme")
    assert rows_per_subject(second).get("transactions") == 1 and _order_ids(platform, second) == ["h1"]


@pytest.mark.parametrize("change_log", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_a_feed_with_imports_among_live_orders_exports_every_row_once(platform, tenant, client, clock, monkeypatch,
                                                                    seed, change_log) -> None:  # type: ignore
    """Live orders and imports (rows dated years back, or a moment ago: inside the window
    being exported) at random moments, micro-batches on the timer's schedule: every ledger
    entry and every order record in exactly one file."""
    from shared.jobs import handlers

    if not change_log:
        monkeypatch.setattr(platform.exports, "_store", _WithoutChangeLog(platform.store))
    platform.exports.save_settings("acme", format="parquet")
    handle = handlers(platform)["export-microbatch"]
    chance = random.Random(seed)
    for customer in CUSTOMERS:
        add_customer(platform, "acme", customer)
    exported: list[str] = []
    orders: list[str] = []
    imported = 0

    def collect(manifest) -> None:  # type: ignore[no-untyped-def]
        exported.extend(_rows(platform, manifest))
        orders.extend(_order_ids(platform, manifest))

    for tick in range(30):
        for n in range(chance.randrange(0, 3)):
            clock.advance(timedelta(seconds=chance.randrange(1, 15)))
            _order(client, tenant, platform, chance.choice(CUSTOMERS), f"o{tick}-{n}")
        if chance.random() < 0.3:
            rows = []
            for n in range(chance.randrange(1, 4)):
                back = chance.choice([timedelta(days=700), timedelta(days=3), timedelta(seconds=20),
                                      timedelta(seconds=50), timedelta(0)])
                rows.append(_historical(f"{tick}-{n}", chance.choice(CUSTOMERS), iso(clock.now() - back)))
            assert run_import(platform, "acme", ndjson(rows), kind="orders")["rowsDone"] == len(rows)
            imported += len(rows)
        clock.advance(timedelta(seconds=60) - timedelta(seconds=clock.now().second))
        step = handle({"tenantId": "acme"}, None)
        assert step.done
        if not step.result.get("skipped"):
            collect(platform.exports._read_manifest(  # noqa: SLF001
                "acme", step.result["runId"], f"acme/incremental/{step.result['runId']}"))
    clock.advance(timedelta(minutes=10))
    collect(platform.exports.microbatch("acme"))
    assert imported, "the seed imported something"
    assert sorted(exported) == sorted(_ledger_entries(platform)), "every entry exactly once"
    assert sorted(orders) == _records(platform), "every order record exactly once"


def test_a_window_without_imports_asks_nothing_of_the_imported_rows(platform, tenant, client, clock,
                                                                   monkeypatch) -> None:  # type: ignore
    """The search by recordedAt runs only when an import ran in the window: a feed of live
    orders pays one look at the tenant's imports per file, not a second pass of the ledger."""
    run_import(platform, "acme", ndjson([_historical("1", "c1", "2024-03-01T10:00:00Z")]), kind="orders")
    clock.advance(timedelta(minutes=10))
    platform.exports.microbatch("acme")
    clock.advance(timedelta(minutes=10))
    _order(client, tenant, platform, "c1", "live-1")
    clock.advance(timedelta(minutes=1))
    searched: list[tuple] = []
    original = ExportService._per_customer_rows

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        searched.append((args[1], kwargs.get("imports")))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ExportService, "_per_customer_rows", spy)
    platform.exports.save_settings("acme", format="ndjson")
    platform.exports.microbatch("acme")
    assert searched and all(imports is False for _, imports in searched), searched


def test_transactions_say_which_rows_are_imported_and_when_they_were_written(platform, tenant, client,
                                                                             clock) -> None:  # type: ignore
    """Schema version 3: ``imported`` and ``recordedAt`` (and ``runningReserved``), the same on
    the columnar read (live rows) and the row path (a window with an import)."""
    platform.exports.save_settings("acme", format="parquet")
    _order(client, tenant, platform, "c1", "live-1")
    clock.advance(timedelta(minutes=1))
    live = platform.exports.microbatch("acme")
    imported_at = clock.now()
    run_import(platform, "acme", ndjson([_historical("1", "c2", "2024-03-01T10:00:00Z")]), kind="orders")
    clock.advance(timedelta(minutes=1))
    history = platform.exports.microbatch("acme")

    def rows(manifest) -> list[dict]:  # type: ignore[no-untyped-def]
        return [row for f in manifest["files"] if f["subject"] == "transactions"
                for row in _table(platform.exports, f).to_pylist()]

    [earned] = rows(live)
    assert earned["imported"] is False and earned["recordedAt"] is None and earned["runningReserved"] == 0
    [old] = rows(history)
    assert old["imported"] is True and old["createdAt"].year == 2024
    assert old["recordedAt"] == imported_at and old["rowVersion"] == int(old["createdAt"].timestamp() * 1e6)


def test_a_day_compacted_from_files_of_two_schema_versions_holds_every_row(platform, tenant, client, clock,
                                                                          monkeypatch) -> None:  # type: ignore
    """A micro-batch written before the columns were added (version 2) and one after, on the
    same day: the compacted file has every row, the new columns null where they were unknown."""
    from shared.exports import columns

    platform.exports.save_settings("acme", format="parquet")
    day = clock.now().strftime("%Y-%m-%d")
    added = ("runningReserved", "imported", "recordedAt")
    with monkeypatch.context() as before:
        before.setitem(columns.COLUMNS, "transactions",
                       tuple(c for c in columns.COLUMNS["transactions"] if c[0] not in added))
        _order(client, tenant, platform, "c1", "o-before")
        clock.advance(timedelta(minutes=5))
        old = platform.exports.microbatch("acme")
    [old_file] = [f for f in old["files"] if f["subject"] == "transactions"]
    assert not set(added) & set(_table(platform.exports, old_file).column_names)
    _order(client, tenant, platform, "c2", "o-after")
    clock.advance(timedelta(minutes=5))
    platform.exports.microbatch("acme")
    clock.advance(timedelta(days=1))
    platform.exports.run("acme")
    compacted = platform.exports.compact("acme", day)
    [transactions] = [f for f in compacted["files"] if f["subject"] == "transactions"]
    rows = {r["customerId"]: r for r in _table(platform.exports, transactions).to_pylist()}
    assert set(rows) == {"c1", "c2"}
    assert rows["c1"]["imported"] is None and rows["c1"]["runningReserved"] is None
    assert rows["c2"]["imported"] is False and rows["c2"]["runningReserved"] == 0
