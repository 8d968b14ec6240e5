"""Reconciliation: a clean ledger reports nothing; a store corrupted behind the
ledger's back (rows written straight through the SQLite connection) is reported
precisely: the customer, the field, expected and found values, the first entry."""

from __future__ import annotations

import json
import sqlite3

import pytest

from shared.app.reconcile import reconcile
from shared.local.__main__ import main as local_main
from shared.store.layout import BY_NAME, LEDGER, customer_pk
from shared.store.sqlite import column_of, field_value, tables_of
from tests.conftest import auth, drain, order_body


@pytest.fixture
def ledger_with_history(client, platform, tenant):
    for number, customer in enumerate(["c1", "c1", "c2", "c1"]):
        client.post("/v1/orders", json=order_body(customer, f"o{number}"), headers=auth(tenant.merchant))
    drain(platform)
    return platform


def _sql(platform):
    """A connection to edit rows behind the store: the ledger's recent rows merged first, so every
    entry is in its main table (``_table``), the one a test can write (``c_ledger`` is a view)."""
    platform.store.merge_recent()
    return sqlite3.connect(platform.store.path, isolation_level=None)


def _table(container: str) -> str:
    return tables_of(container)[0]


def _insert_behind(db, container: str, doc: dict) -> None:
    """A row written straight into the container's table, its field columns (the spec's indexed and
    filtered fields) filled as the store fills them."""
    fields = BY_NAME[container].extracted
    columns = ", ".join(("pk", "id", "etag", "ts", "lsn", "body", *(column_of(f) for f in fields)))
    db.execute(f"INSERT INTO {_table(container)} ({columns}) VALUES ({', '.join('?' * (6 + len(fields)))})",
               (doc["pk"], doc["id"], "x", 0, None, json.dumps(doc), *(field_value(doc, f) for f in fields)))


def _refresh_columns(db, container: str) -> None:
    """After a body was edited in SQL: its field columns read again from the JSON, as json_extract reads it."""
    fields = BY_NAME[container].extracted
    if fields:
        db.execute(f"UPDATE {_table(container)} SET "
                   + ", ".join(f"{column_of(f)} = json_extract(body, '$.{f}')" for f in fields))


def _entry(platform, customer: str, seq: int) -> dict:
    return platform.ledger.record("acme", customer, f"e-{seq:012d}")


def test_a_clean_ledger_has_no_drift(ledger_with_history) -> None:
    report = reconcile(ledger_with_history.store)
    assert report.ok and report.customers == 2 and report.entries == 4 and report.stale == 0
    assert report.summary().startswith("reconciled 2 customers, 4 entries: 0 drift(s)")


def test_a_bad_entry_written_behind_the_ledger_is_reported(ledger_with_history) -> None:
    platform = ledger_with_history
    newest = _entry(platform, "c1", 3)
    bad = {k: v for k, v in newest.items() if not k.startswith("_")}
    # seq 4: +50 points, but its running balance claims +500.
    bad.update(id="e-000000000004", seq=4, signedAmount=50, runningBalance=newest["runningBalance"] + 500,
               runningLifetimeEarned=newest["runningLifetimeEarned"] + 50, referenceOrderId="forged")
    db = _sql(platform)
    _insert_behind(db, LEDGER, bad)
    db.close()
    report = reconcile(platform.store, "acme")
    kinds = {d.kind: d for d in report.drifts}
    # The read model is merely behind: stale, not drift. The forged entry does not link into the
    # hash chain (it copied seq 3's hash), which reconciliation reports too.
    assert set(kinds) == {"running-balance", "chain-prev-hash", "chain-hash"}
    assert kinds["chain-hash"].seq == 4
    drift = kinds["running-balance"]
    assert (drift.customer_id, drift.entry_id, drift.seq) == ("c1", "e-000000000004", 4)
    assert (drift.expected, drift.found) == (newest["runningBalance"] + 50, newest["runningBalance"] + 500)
    assert report.stale == 1


def test_an_altered_amount_is_reported_at_the_first_diverging_entry(ledger_with_history) -> None:
    platform = ledger_with_history
    db = _sql(platform)
    db.execute(f"UPDATE {_table(LEDGER)} SET body = json_set(body, '$.signedAmount', 7) WHERE pk = ? "
               "AND id = 'e-000000000002'", (customer_pk("acme", "c1"),))
    _refresh_columns(db, LEDGER)
    db.close()
    report = reconcile(platform.store)
    balance = next(d for d in report.drifts if d.kind == "running-balance")
    assert (balance.customer_id, balance.entry_id, balance.expected, balance.found) == ("c1", "e-000000000002",
                                                                                       107, 200)
    assert balance.entries_diverging == 2  # seq 2 and seq 3 both disagree; reported once, at the first
    lifetime = next(d for d in report.drifts if d.kind == "running-lifetimeEarned")
    assert lifetime.entry_id == "e-000000000002"
    read_model = {d.kind: d for d in report.drifts if d.kind.startswith("read-model")}
    assert read_model["read-model-available"].expected == 207 and read_model["read-model-available"].found == 300
    assert all(d.customer_id == "c1" for d in report.drifts)


def test_read_model_pending_and_reserved_are_checked(ledger_with_history) -> None:
    platform = ledger_with_history
    db = _sql(platform)
    db.execute("UPDATE c_balances SET body = json_set(body, '$.pending', 40, '$.reserved', 9) "
               "WHERE pk = ?", (customer_pk("acme", "c2"),))  # balances extract no field: no column to refresh
    db.close()
    report = reconcile(platform.store)
    assert {(d.customer_id, d.kind, d.expected, d.found) for d in report.drifts} == {
        ("c2", "read-model-pending", 0, 40), ("c2", "read-model-reserved", 0, 9)}


def test_settlements_and_gaps(ledger_with_history) -> None:
    platform = ledger_with_history
    newest = _entry(platform, "c2", 1)
    forged = {k: v for k, v in newest.items() if not k.startswith("_")}
    forged.update(id="e-000000000003", seq=3, entryType="VOID", signedAmount=0, settlesEntryId="e-000000000099")
    db = _sql(platform)
    _insert_behind(db, LEDGER, forged)
    db.close()
    kinds = {d.kind: d for d in reconcile(platform.store).drifts}
    assert (kinds["sequence-gap"].expected, kinds["sequence-gap"].found) == (2, 3)
    assert kinds["settles-unknown-entry"].found == "e-000000000099"


def test_an_idempotency_key_applied_by_two_transactions_is_drift(ledger_with_history) -> None:
    """A replay that wrote entries again (a second transaction under one key) adds up on its own
    terms, running totals and all: only the key says the request was counted twice."""
    platform = ledger_with_history
    first = _entry(platform, "c2", 1)
    again = {k: v for k, v in first.items() if not k.startswith("_")}
    again.update(id="e-000000000002", seq=2, transactionId="tx-replayed", signedAmount=0)
    db = _sql(platform)
    _insert_behind(db, LEDGER, again)
    db.close()
    kinds = {d.kind: d for d in reconcile(platform.store).drifts}
    twice = kinds["key-applied-twice"]
    assert (twice.customer_id, twice.seq, twice.expected, twice.found) == (
        "c2", 2, first["transactionId"], "tx-replayed")
    assert "sequence-gap" not in kinds and not any(k.startswith("running-") for k in kinds)


def test_the_command_line_prints_a_summary(ledger_with_history, monkeypatch, capsys) -> None:
    platform = ledger_with_history
    db = _sql(platform)
    db.execute(f"UPDATE {_table(LEDGER)} SET body = json_set(body, '$.runningPending', 5) WHERE pk = ? "
               "AND id = 'e-000000000001'", (customer_pk("acme", "c2"),))
    _refresh_columns(db, LEDGER)
    db.close()
    monkeypatch.setenv("ACCRUE_DATA_DIR", str(platform.settings.data_dir))
    assert local_main(["reconcile", "--tenant", "acme"]) == 1
    out = capsys.readouterr().out
    assert "reconciled 2 customers, 4 entries: 2 drift(s)" in out  # the field, and the entry's hash
    assert "acme/c2: chain-hash: expected an intact chain" in out
    assert "acme/c2: running-pending: expected 0, found 5 at e-000000000001 (seq 1)" in out
    assert local_main(["reconcile", "--tenant", "globex"]) == 0


def test_over_the_api_for_the_callers_tenant_only(ledger_with_history, client, tenant, other_tenant) -> None:
    body = client.get("/v1/reconciliation", headers=auth(tenant.admin)).json()
    assert body["ok"] is True and body["customers"] == 2
    assert client.get("/v1/reconciliation", headers=auth(other_tenant.admin)).json()["customers"] == 0
    assert client.get("/v1/reconciliation", headers=auth(tenant.merchant)).status_code == 403


@pytest.mark.parametrize("per_slice", [1, 2, 3, 500])
def test_slices_from_a_cursor_give_the_same_report_as_one_pass(ledger_with_history, per_slice) -> None:  # type: ignore
    # The nightly work item's path (shared.jobs): bounded slices, the partial report in the cursor,
    # and a cursor round-tripped through JSON as the store keeps it. Drift included: an altered
    # amount, and a read model whose ledger partition has no entries at all.
    import json as _json

    from shared.app.reconcile import reconcile_slice, report_of
    from shared.store.layout import BALANCES

    platform = ledger_with_history
    db = _sql(platform)
    db.execute(f"UPDATE {_table(LEDGER)} SET body = json_set(body, '$.signedAmount', 7) WHERE pk = ? "
               "AND id = 'e-000000000002'", (customer_pk("acme", "c1"),))
    _refresh_columns(db, LEDGER)
    db.close()
    platform.store.upsert(BALANCES, {"id": "balance", "pk": customer_pk("acme", "ghost"), "docType": "balance",
                                     "tenantId": "acme", "available": 5, "lastSeq": 1})
    expected = reconcile(platform.store, "acme")
    cursor, done, slices = None, False, 0
    while not done:
        cursor, done = reconcile_slice(platform.store, "acme", cursor, max_partitions=per_slice)
        cursor = _json.loads(_json.dumps(cursor))
        slices += 1
    assert report_of(cursor).view() == expected.view()
    assert expected.customers == 3 and any(d.customer_id == "ghost" for d in expected.drifts)
    assert slices >= 3 // per_slice
