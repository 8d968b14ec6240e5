"""The columnar read of ``transactions`` (raw JSON pages from the store into Arrow columns)
writes the same Parquet rows as the row path, whatever the pages hold: entries across
dates, pages split inside a customer, parts of customers, a ledger partition of an id
that is not a customer (skipped, as the row path skips it), a document whose field has
another stored type (its page converted row by row), and another tenant's entries."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.exports import columnar as columnar_module
from shared.exports import service as service_module
from shared.exports.keys import resolver
from shared.store.layout import LEDGER, LEDGER_LINE
from shared.store.port import scan_lines
from shared.store.sqlite import column_of, tables_of
from tests.conftest import add_customer, auth, drain, order_body


def _entry(tenant: str, customer: str, seq: int, at: str, **extra):  # type: ignore[no-untyped-def]
    return {"id": f"e-{seq:012d}", "pk": f"{tenant}:{customer}", "docType": "entry", "tenantId": tenant,
            "customerId": customer, "seq": seq, "transactionId": f"tx-{customer}-{seq}", "entryType": "EARN",
            "signedAmount": 5 * seq, "runningBalance": 5 * seq, "runningPending": 0, "runningLifetimeEarned": 5 * seq,
            "ordersCredited": seq, "referenceOrderId": f"o-{customer}-{seq}", "referenceEntryId": None,
            "settlesEntryId": None, "ruleSetId": "rs", "ruleSetVersion": 3, "arm": None, "status": "COMMITTED",
            "createdAt": at, **extra}


def _transactions(platform, manifest) -> list[dict]:  # type: ignore[no-untyped-def]
    service = platform.exports
    tables = [pq.read_table(pa.BufferReader(b"".join(service.sink.open(f["path"], resolver(service.export_keys,
                                                                                             "acme")))))
              for f in manifest["files"] if f["subject"] == "transactions"]
    rows = pa.concat_tables(tables).to_pylist()
    files = sorted((f["date"], f["rows"]) for f in manifest["files"] if f["subject"] == "transactions")
    return sorted(rows, key=lambda r: r["rowKey"]), files  # type: ignore[return-value]


@pytest.mark.parametrize("page,part", [(3, 2), (16_384, 5000)])
def test_the_columnar_read_writes_what_the_row_path_writes(platform, tenant, client, clock, monkeypatch, page,
                                                           part) -> None:  # type: ignore[no-untyped-def]
    for order_id in ("o1", "o2"):  # real entries, written by the platform
        assert client.post("/v1/orders", json=order_body("c1", order_id),
                           headers=auth(tenant.merchant)).status_code == 202
    drain(platform)
    add_customer(platform, "acme", "c4")
    day = datetime(2026, 3, 1, 23, 59, 58, tzinfo=timezone.utc)
    for seq in range(1, 8):  # across midnight: two date partitions, and pages cut inside the customer
        at = (day + timedelta(seconds=seq)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        platform.store.create(LEDGER, _entry("acme", "c4", seq, at))
    # Another stored type (a version as text): that entry's page goes the row path's way.
    platform.store.create(LEDGER, _entry("acme", "c3", 1, "2026-03-01T10:00:00.000000Z", ruleSetVersion="7b"))
    # A partition in the key range whose id is not a customer of the tenant, another tenant's entry.
    platform.store.create(LEDGER, _entry("acme", "c35", 1, "2026-03-01T10:00:00.000000Z"))
    platform.store.create(LEDGER, _entry("acmf", "c2", 1, "2026-03-01T10:00:00.000000Z"))
    # Entries written before the store kept lines (c4's first three): read from their JSON.
    platform.store.merge_recent(LEDGER)
    db = sqlite3.connect(platform.store.path)
    db.execute(f"UPDATE {tables_of(LEDGER)[0]} SET {LEDGER_LINE.column} = NULL"
               f" WHERE pk = 'acme:c4' AND {column_of('seq')} <= 3")
    db.commit()
    db.close()
    platform.exports.part_customers = part
    monkeypatch.setattr(service_module, "SCAN_PAGE", page)
    start, end = datetime(2020, 1, 1, tzinfo=timezone.utc), clock.now() + timedelta(days=1)
    parsed: list[bool] = []
    real = columnar_module.parse_entries
    monkeypatch.setattr(columnar_module, "parse_entries", lambda ndjson: parsed.append(
        (table := real(ndjson)) is not None) or table)
    lined: list[int] = []
    real_lines = columnar_module.parse_lines
    monkeypatch.setattr(columnar_module, "parse_lines", lambda lines: lined.append(
        (table := real_lines(lines)).num_rows) or table)
    columnar = _transactions(platform, platform.exports.backfill("acme", start, end, ["transactions"]))
    # Pages of lines, of JSON read columnar, and the odd one row by row.
    assert False in parsed and (True in parsed or page > 100) and (lined or page > 100)
    monkeypatch.setattr(service_module, "COLUMNAR_SUBJECT", "none")  # the row path
    rows = _transactions(platform, platform.exports.backfill("acme", start, end, ["transactions"]))
    assert columnar == rows
    exported = {r["rowKey"] for r in columnar[0]}
    assert len(exported) == 2 + 7 + 1 and "c35|e-000000000001" not in exported
    c3 = next(r for r in columnar[0] if r["rowKey"] == "c3|e-000000000001")
    assert c3["ruleSetVersion"] == "7b" and c3["points"] == 5
    assert {d for d, _ in columnar[1]} >= {"2026-03-01", "2026-03-02"}


@pytest.mark.parametrize("columnar", [True, False])
def test_an_entry_whose_instant_does_not_convert_fails_the_export_as_the_row_path_says(
        platform, tenant, clock, monkeypatch, columnar) -> None:  # type: ignore[no-untyped-def]
    # The entry has its line (a string where a string is declared): its page is read as lines,
    # the instant does not convert, and the page goes the row path's way, which names the problem.
    add_customer(platform, "acme", "c7")
    platform.store.create(LEDGER, _entry("acme", "c7", 1, "2026-03-01T10:00:00.000000Z"))
    platform.store.create(LEDGER, _entry("acme", "c7", 2, "2026-02-30T10:00:00.000000Z"))
    assert scan_lines(platform.store, LEDGER, "acme:c7", "acme:c7", (), "seq", None, 10).lines is not None
    if not columnar:
        monkeypatch.setattr(service_module, "COLUMNAR_SUBJECT", "none")
    start, end = datetime(2020, 1, 1, tzinfo=timezone.utc), clock.now() + timedelta(days=1)
    with pytest.raises(ValueError, match="day is out of range"):
        platform.exports.backfill("acme", start, end, ["transactions"])
