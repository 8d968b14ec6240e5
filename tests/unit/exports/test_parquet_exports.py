"""Parquet exports (the default format) as a warehouse sees them: decrypted with the
decrypt command, loaded into DuckDB (Hive partitions) and pandas (exact decimals); every
ledger entry exactly once across micro-batches, a crash mid micro-batch, the nightly
compaction and a backfill; empty subjects as valid files; erasure in every stage."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.blobs.local import LocalBlobSink
from shared.blobs.port import BlobUnavailable
from shared.exports.__main__ import main as export_cli
from shared.exports.columns import COLUMNS, COLUMNS_VERSION
from shared.exports.keys import resolver
from shared.exports.service import SUBJECTS, ExportService
from shared.store.layout import LEDGER
from shared.store.port import Filter, Query
from tests.conftest import add_customer, auth, drain, order_body


def _orders(client, tenant, platform, ids, customer="c1", amount=None):  # type: ignore[no-untyped-def]
    for order_id in ids:
        body = order_body(customer, order_id)
        if amount is not None:
            body["amount"] = amount
        response = client.post("/v1/orders", json=body, headers=auth(tenant.merchant))
        assert response.status_code == 202, response.text
    drain(platform)


def _table(service, entry) -> pa.Table:  # type: ignore[no-untyped-def]
    data = b"".join(service.sink.open(entry["path"], resolver(service.export_keys, "acme")))
    return pq.read_table(pa.BufferReader(data))


def _ledger_entries(platform) -> set[str]:  # type: ignore[no-untyped-def]
    docs = platform.store.query(LEDGER, Query(pk=None, filters=(Filter("docType", "=", "entry"),), limit=10_000))
    return {f"{d['customerId']}|{d['id']}" for d in docs if d["pk"].startswith("acme:")}


def _decrypt_all(platform, manifests, out, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    root = platform.settings.data_dir / "blobs" / "exports"
    monkeypatch.setenv("ACCRUE_DATA_DIR", str(platform.settings.data_dir))
    for manifest in manifests:
        kind_dir = {"incremental": "incremental", "backfill": "backfill", "compaction": "compacted"}[manifest["kind"]]
        run_dir = manifest["runId"] if kind_dir != "compacted" else manifest["runId"].removeprefix("compact-")
        path = root / "acme" / kind_dir / run_dir / "manifest.json"
        assert export_cli(["decrypt", "--manifest", str(path), "--out", str(out)]) == 0


def test_parquet_is_typed_partitioned_and_loads_into_duckdb_and_pandas(platform, tenant, client, clock, tmp_path,
                                                                        monkeypatch) -> None:  # type: ignore
    _orders(client, tenant, platform, ["o1", "o2"], amount="12.34")
    clock.advance(timedelta(minutes=5))
    manifest = platform.exports.run("acme")
    assert {f["format"] for f in manifest["files"]} == {"parquet"}
    assert {f["encryption"] for f in manifest["files"]} == {"azure-storage-cse-v2"}
    assert all("/subject=" in f["path"] and "/date=" in f["path"] for f in manifest["files"])
    # Every subject's schema, with its version, travels in the manifest.
    assert set(manifest["schemas"]) == set(SUBJECTS)
    assert all(s["version"] == COLUMNS_VERSION for s in manifest["schemas"].values())
    # Empty subjects are valid Parquet with their schema and no rows.
    [erasures] = [f for f in manifest["files"] if f["subject"] == "erasures"]
    empty = _table(platform.exports, erasures)
    assert empty.num_rows == 0 and empty.column_names == [c[0] for c in COLUMNS["erasures"]]
    out = tmp_path / "plain"
    _decrypt_all(platform, [manifest], out, monkeypatch)
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT orderId, amount, typeof(amount), date, subject FROM read_parquet('{out}/subject=orders/*/*.parquet', "
        "hive_partitioning = true) ORDER BY orderId").fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [("o1", Decimal("12.340"), "DECIMAL(18,3)"),
                                                  ("o2", Decimal("12.340"), "DECIMAL(18,3)")]
    assert rows[0][4] == "orders" and str(rows[0][3]) == clock.now().strftime("%Y-%m-%d")
    typed = con.execute(f"SELECT typeof(createdAt) FROM read_parquet('{out}/subject=transactions/*/*.parquet') "
                        "LIMIT 1").fetchone()
    assert typed == ("TIMESTAMP WITH TIME ZONE",)
    # pandas via pyarrow: amounts stay exact decimals, never floats.
    frame = pq.read_table(out / "subject=orders").to_pandas()
    assert list(frame.sort_values("orderId")["amount"]) == [Decimal("12.340"), Decimal("12.340")]
    assert frame["currencyScale"].tolist() == [2, 2]


class FailingSink(LocalBlobSink):
    def __init__(self, root, fail_on: str) -> None:  # type: ignore[no-untyped-def]
        super().__init__(root)
        self.fail_on = fail_on

    def put(self, path, chunks, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.fail_on and self.fail_on in path:
            self.fail_on = ""
            raise BlobUnavailable("injected: blob store down mid micro-batch")
        return super().put(path, chunks, *args, **kwargs)


def test_every_entry_exactly_once_across_micro_batches_a_crash_compaction_and_a_backfill(
        platform, tenant, client, clock, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sink = FailingSink(tmp_path / "blobs", fail_on="")
    service = ExportService(platform.store, clock, platform.key_provider, sink, vault=platform.vault,
                            export_keys=platform.exports.export_keys)
    day = clock.now().strftime("%Y-%m-%d")
    manifests = []
    for batch in range(4):
        _orders(client, tenant, platform, [f"o{batch}-{i}" for i in range(3)], customer=f"c{batch % 3 + 1}")
        clock.advance(timedelta(minutes=5))
        if batch == 2:
            sink.fail_on = "subject=orders"  # dies after its transactions file, before the manifest
            with pytest.raises(BlobUnavailable):
                service.microbatch("acme")
            _orders(client, tenant, platform, ["late"])  # committed after the crashed batch's window
            clock.advance(timedelta(minutes=5))
        manifest = service.microbatch("acme")
        assert manifest is not None
        manifests.append(manifest)
        if batch == 2:
            manifests.append(service.microbatch("acme"))  # the rows after the redone window
    ledger = _ledger_entries(platform)
    con = duckdb.connect()

    def load(tables: list[pa.Table]) -> list[str]:
        con.register("t", pa.concat_tables(tables))
        return [r[0] for r in con.execute("SELECT customerId || '|' || entryId FROM t").fetchall()]

    micro = [_table(service, f) for m in manifests for f in m["files"] if f["subject"] == "transactions"]
    assert sorted(load(micro)) == sorted(ledger)  # no entry missing, none twice
    # The nightly run: past midnight, the day's micro-batches become one file per subject.
    clock.advance(timedelta(days=1))
    assert service.compact("acme", day) is None  # the feed has not passed the day's end yet
    service.run("acme")
    compacted = service.compact("acme", day)
    assert compacted is not None and service.compact("acme", day) == compacted  # once
    [transactions] = [f for f in compacted["files"] if f["subject"] == "transactions"]
    assert sorted(load([_table(service, transactions)])) == sorted(ledger)
    assert len([f for f in compacted["files"] if f["subject"] == "orders"]) == 1
    # A backfill of the same window repeats rows under their own key and version: a merge on
    # (rowKey, max rowVersion) over everything ever written still holds each entry once.
    backfill = service.backfill("acme", clock.now() - timedelta(days=2), clock.now(), ["transactions"])
    every = micro + [_table(service, transactions)] + [_table(service, f) for f in backfill["files"]]
    con.register("every", pa.concat_tables(every))
    merged = con.execute("SELECT rowKey FROM every QUALIFY row_number() OVER (PARTITION BY rowKey "
                         "ORDER BY rowVersion DESC) = 1").fetchall()
    assert sorted(r[0] for r in merged) == sorted(ledger)


def test_erasure_reaches_micro_batches_compacted_days_and_backfills(platform, tenant, clock) -> None:  # type: ignore
    platform.exports.save_settings("acme", [])  # exports every personal field
    day = clock.now().strftime("%Y-%m-%d")
    add_customer(platform, "acme", "p1", email="ann@example.com", name="Ann")
    clock.advance(timedelta(minutes=5))
    micro = platform.exports.microbatch("acme")
    clock.advance(timedelta(days=1))
    platform.exports.run("acme")
    compacted = platform.exports.compact("acme", day)
    backfill = platform.exports.backfill("acme", clock.now() - timedelta(days=2), clock.now(), ["customers"])
    stages = [micro, compacted, backfill]

    def ann_rows(manifest):  # type: ignore[no-untyped-def]
        path = f"acme/{'compacted/' + day if manifest['kind'] == 'compaction' else manifest['kind'] + '/' + manifest['runId']}"
        fresh = json.loads(platform.exports.sink.read(path + "/manifest.json"))
        rows = []
        for entry in fresh["files"]:
            if entry["subject"] == "customers":
                rows += [r for r in _table(platform.exports, entry).to_pylist() if r["customerId"] == "p1"]
        return rows

    assert all(r["email"] == "ann@example.com" for m in stages for r in ann_rows(m))
    assert all(ann_rows(m) for m in stages)
    platform.erasures.erase("acme", "p1", None, reason="customer asked")
    for manifest in stages:
        for row in ann_rows(manifest):
            assert row["email"] is None and row["name"] is None and row["erased"] is True


def test_the_micro_batch_job_honours_each_tenants_period(platform, tenant, client, clock) -> None:  # type: ignore
    from shared.errors import ValidationFailed
    from shared.jobs import BY_NAME, handlers, run_job, work_items

    assert platform.exports.settings("acme")["microBatchMinutes"] == 5
    with pytest.raises(ValidationFailed):
        platform.exports.save_settings("acme", micro_batch_minutes=0)
    with pytest.raises(ValidationFailed):
        platform.exports.save_settings("acme", format="csv")
    handle = handlers(platform)["export-microbatch"]
    assert platform.exports.microbatch_due("acme")
    step = handle({"tenantId": "acme"}, None)
    assert step.done and step.result["runId"]
    _orders(client, tenant, platform, ["m1"])
    clock.advance(timedelta(minutes=2))
    assert not platform.exports.microbatch_due("acme")
    assert handle({"tenantId": "acme"}, None).result == {"skipped": True}
    clock.advance(timedelta(minutes=3))
    step = handle({"tenantId": "acme"}, None)
    assert step.done and step.result["rows"]["transactions"] == 1  # m1, within the period plus 30 s
    platform.exports.save_settings("acme", micro_batch_minutes=1)
    clock.advance(timedelta(minutes=1))
    assert platform.exports.microbatch_due("acme")
    # The timer job enqueues the fan-out; the work-items job runs the tenants' items.
    run_job(BY_NAME["export-microbatch"], platform)
    report = work_items(platform).run(max_items=50, budget_seconds=30)
    assert report.claimed >= 2 and not report.failed


def test_twenty_micro_batches_and_compactions_at_once_export_each_entry_once(platform, tenant, client,
                                                                              clock) -> None:  # type: ignore
    from concurrent.futures import ThreadPoolExecutor

    from shared.errors import Conflict

    day = clock.now().strftime("%Y-%m-%d")
    _orders(client, tenant, platform, [f"r{i}" for i in range(5)])
    clock.advance(timedelta(minutes=5))

    def micro(_):  # type: ignore[no-untyped-def]
        try:
            return platform.exports.microbatch("acme")
        except Conflict:
            return None  # another runner holds the tenant's pending run

    with ThreadPoolExecutor(20) as pool:
        results = [m for m in pool.map(micro, range(20)) if m is not None]
    state = platform.store.read("exports", "acme", "state")
    assert state["pending"] is None
    manifests = {m["runId"]: m for m in results}
    tables = [_table(platform.exports, f) for m in manifests.values() for f in m["files"]
              if f["subject"] == "transactions"]
    assert sorted(pa.concat_tables(tables).column("entryId").to_pylist()) == sorted(
        e.split("|")[1] for e in _ledger_entries(platform))
    clock.advance(timedelta(days=1))
    platform.exports.run("acme")
    def compact(_):  # type: ignore[no-untyped-def]
        try:
            return platform.exports.compact("acme", day)
        except Conflict:
            return "busy"  # another compactor holds the tenant's mark

    with ThreadPoolExecutor(20) as pool:
        compactions = list(pool.map(compact, range(20)))
    done = [c for c in compactions if c != "busy"]
    assert done and all(c["runId"] == f"compact-{day}" for c in done)
    assert platform.exports.compact("acme", day)["runId"] == f"compact-{day}"  # the mark was released
    published = json.loads(platform.exports.sink.read(f"acme/compacted/{day}/manifest.json"))
    [entry] = [f for f in published["files"] if f["subject"] == "transactions"]
    data = b"".join(platform.exports.sink.open(entry["path"], resolver(platform.exports.export_keys, "acme")))
    import hashlib

    assert hashlib.sha256(data).hexdigest() == entry["plaintextSha256"]  # whichever compactor wrote last
    assert pq.read_table(pa.BufferReader(data)).num_rows == len(_ledger_entries(platform))


def test_the_format_and_period_are_tenant_settings_over_http(platform, tenant, client) -> None:  # type: ignore
    url, admin = "/v1/exports/settings", auth(tenant.admin)
    assert client.get(url, headers=admin).json()["format"] == "parquet"
    for bad in ({"format": "csv"}, {"microBatchMinutes": 0}, {"microBatchMinutes": 1441}):
        response = client.put(url, headers=admin, json={"excludedPersonalFields": [], **bad})
        assert response.status_code == 422 and response.headers["content-type"].startswith("application/problem")
    assert platform.exports.settings("acme")["excludedPersonalFields"] != []  # nothing changed
    response = client.put(url, headers=admin, json={"excludedPersonalFields": [], "format": "ndjson",
                                                     "microBatchMinutes": 3})
    assert response.status_code == 200
    assert (response.json()["format"], response.json()["microBatchMinutes"]) == ("ndjson", 3)
    kept = client.put(url, headers=admin, json={"excludedPersonalFields": []}).json()
    assert (kept["format"], kept["microBatchMinutes"]) == ("ndjson", 3)  # absent: unchanged
