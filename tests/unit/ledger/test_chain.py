"""The ledger's hash chain: every append seals its entries; ``verify`` catches an entry
edited, deleted, inserted or a partition re-chained behind the ledger's back (rows
changed straight through the SQLite connection), the last two through the tenant
digest in the audit log; unhashed (pre-chain) entries migrate to a genesis record."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta

import pytest

from shared.app.corrections import AdjustmentRequest
from shared.ledger.chain import GENESIS_ID, anchor, entry_hash, merkle_root
from shared.local.__main__ import main as local_main
from shared.store.layout import BY_NAME, LEDGER, customer_pk
from shared.store.sqlite import column_of, field_value
from tests.conftest import auth

PK = customer_pk("acme", "c1")


def _adjust(platform, customer: str, points: int, key: str) -> None:
    platform.corrections.adjust("acme", customer, AdjustmentRequest(
        points=points, reasonCode="goodwill", reason="test", idempotencyKey=key), "k1")


@pytest.fixture
def history(platform, tenant):
    for n, points in enumerate([100, 50, -30, 20, 5]):
        _adjust(platform, "c1", points, f"a{n}")
    _adjust(platform, "c2", 70, "b0")
    return platform


def _entry_id(seq: int) -> str:
    return f"e-{seq:012d}"


def _rows(platform):
    return sqlite3.connect(platform.store.path, isolation_level=None)


def _read(platform, seq: int) -> dict:
    return {k: v for k, v in platform.ledger.record("acme", "c1", _entry_id(seq)).items() if not k.startswith("_")}


def _write(platform, doc: dict) -> None:
    """Replace a ledger row's body behind the store's back (its field columns follow)."""
    fields = BY_NAME[LEDGER].extracted
    table = platform.store.merged_table(LEDGER)  # the ledger's recent rows merged: one table to edit
    db = _rows(platform)
    db.execute(f"UPDATE {table} SET body=?{''.join(f', {column_of(f)}=?' for f in fields)}"
               " WHERE pk=? AND id=?", (json.dumps(doc), *(field_value(doc, f) for f in fields), doc["pk"], doc["id"]))
    db.close()


def _delete(platform, seq: int) -> None:
    table = platform.store.merged_table(LEDGER)
    db = _rows(platform)
    db.execute(f"DELETE FROM {table} WHERE pk=? AND id=?", (PK, _entry_id(seq)))
    db.close()


def _kinds(chain) -> set[str]:
    return {p.kind for p in chain.problems}


def test_every_entry_links_to_the_previous_one(history) -> None:
    entries = history.ledger.entries("acme", "c1", newest_first=False)
    assert entries[0]["prevHash"] == anchor(PK, 0)
    for before, after in zip(entries, entries[1:]):
        assert after["prevHash"] == before["hash"]
    for entry in entries:
        assert entry["hash"] == entry_hash(entry, entry["prevHash"])
    assert history.ledger.head("acme", "c1").hash == entries[-1]["hash"]
    chain = history.chains.verify_customer("acme", "c1")
    assert chain.ok and chain.entries == 5 and chain.head_seq == 5
    report = history.chains.verify_tenant("acme")
    assert report.ok and report.customers == 2 and report.entries == 6


def test_an_edited_entry_is_caught(history) -> None:
    doc = _read(history, 3)
    _write(history, dict(doc, signedAmount=-3))
    chain = history.chains.verify_customer("acme", "c1")
    assert [(p.kind, p.seq) for p in chain.problems] == [("chain-hash", 3)]


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(history) -> None:
    doc = _read(history, 2)
    forged = dict(doc, signedAmount=500)
    forged["hash"] = entry_hash(forged, forged["prevHash"])
    _write(history, forged)
    chain = history.chains.verify_customer("acme", "c1")
    assert [(p.kind, p.seq) for p in chain.problems] == [("chain-prev-hash", 3)]


def test_a_deleted_entry_is_caught(history) -> None:
    _delete(history, 2)
    kinds = _kinds(history.chains.verify_customer("acme", "c1"))
    assert kinds == {"chain-gap", "chain-prev-hash"}


def test_a_rechained_partition_and_a_dropped_head_are_caught_by_the_digest(history, clock) -> None:
    written = history.chains.write_digest("acme")
    assert written["written"] == 1 and written["customers"] == 2
    assert history.chains.write_digest("acme")["written"] == 0  # once per tenant and day
    record = history.chains.latest_digest("acme")
    assert record["action"] == "ledger.digest" and record["after"]["root"] == written["root"]
    assert history.audit.verify("acme")["ok"]
    assert history.chains.verify_tenant("acme").ok

    # Rewrite c1 from seq 2 on: every entry re-hashed, so the chain alone is consistent.
    prev = _read(history, 1)["hash"]
    for seq in range(2, 6):
        doc = _read(history, seq)
        doc = dict(doc, signedAmount=doc["signedAmount"] * 2, prevHash=prev)
        doc["hash"] = entry_hash(doc, prev)
        _write(history, doc)
        prev = doc["hash"]
    assert history.chains.verify_customer("acme", "c1").ok
    report = history.chains.verify_tenant("acme")
    assert not report.ok and not report.broken
    assert [(p.kind, p.seq) for p in report.digest_problems] == [("digest-head-changed", 5)]

    _delete(history, 5)  # and the newest entry dropped
    report = history.chains.verify_tenant("acme")
    assert [(p.kind, p.seq) for p in report.digest_problems] == [("digest-head-missing", 5)]


def test_a_swapped_digest_blob_is_caught(history) -> None:
    written = history.chains.write_digest("acme")
    sink = history.audit._sink()
    path = written["prefix"] + "000000.json"
    body = json.loads(sink.read(path))
    body["heads"][0][2] = "0" * 64
    sink.put(path, json.dumps(body).encode(), overwrite=True)
    report = history.chains.verify_tenant("acme")
    assert [p.kind for p in report.digest_problems] == ["digest-root"]


def test_the_digest_covers_entries_appended_later(history, clock) -> None:
    history.chains.write_digest("acme")
    _adjust(history, "c1", 9, "later")
    assert history.chains.verify_tenant("acme").ok  # a head that moved on is fine; the recorded one is there
    clock.advance(timedelta(days=1))
    assert history.chains.write_digest("acme")["written"] == 1


def test_unhashed_entries_migrate_to_a_genesis_record(history) -> None:
    for seq in range(1, 6):  # entries written before the chain existed
        doc = _read(history, seq)
        doc.pop("hash"), doc.pop("prevHash")
        _write(history, doc)
    chain = history.chains.verify_customer("acme", "c1")
    assert _kinds(chain) == {"chain-genesis"}
    assert history.chains.migrate_tenant("acme") == 1
    genesis = history.ledger.record("acme", "c1", GENESIS_ID)
    assert genesis["throughSeq"] == 5 and genesis["anchor"] == anchor(PK, 5)
    assert history.chains.migrate_tenant("acme") == 1  # idempotent: the record is found
    history.ledger._forget_head(PK)
    _adjust(history, "c1", 1, "after-migration")
    assert history.ledger.record("acme", "c1", _entry_id(6))["prevHash"] == anchor(PK, 5)
    assert history.chains.verify_customer("acme", "c1").ok
    # A legacy entry altered after the migration no longer matches its genesis record.
    _write(history, dict(_read(history, 2), signedAmount=51))
    assert _kinds(history.chains.verify_customer("acme", "c1")) == {"chain-genesis"}


def test_merkle_root_is_order_sensitive_and_total() -> None:
    leaves = [f"{n:064x}" for n in range(5)]
    assert merkle_root(leaves) != merkle_root(list(reversed(leaves)))
    assert merkle_root(leaves[:4]) != merkle_root(leaves)
    assert len(merkle_root([])) == 64 and merkle_root(leaves[:1]) == leaves[0]


def test_verify_over_the_api(history, client, tenant) -> None:
    body = client.get("/v1/ledger/verify", headers=auth(tenant.admin)).json()
    assert body["ok"] is True and body["customers"] == 2 and body["entries"] == 6
    one = client.get("/v1/ledger/verify?customerId=c1", headers=auth(tenant.admin)).json()
    assert one["ok"] is True and one["entries"] == 5
    assert client.get("/v1/ledger/verify?customerId=nobody", headers=auth(tenant.admin)).status_code == 404
    assert client.get("/v1/ledger/verify", headers=auth(tenant.merchant)).status_code == 403
    _write(history, dict(_read(history, 3), signedAmount=-3))
    broken = client.get("/v1/ledger/verify", headers=auth(tenant.admin)).json()
    assert broken["ok"] is False
    assert broken["broken"][0]["customerId"] == "c1"
    assert broken["broken"][0]["problems"] == [{"kind": "chain-hash", "seq": 3, "detail": broken["broken"][0][
        "problems"][0]["detail"]}]


def test_verify_on_the_command_line(history, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ACCRUE_DATA_DIR", str(history.settings.data_dir))
    assert local_main(["ledger", "verify", "--tenant", "acme"]) == 0
    assert local_main(["ledger", "digest", "--tenant", "acme"]) == 0
    _write(history, dict(_read(history, 3), signedAmount=-3))
    assert local_main(["ledger", "verify", "--tenant", "acme", "--customer", "c1"]) == 1
    assert '"chain-hash"' in capsys.readouterr().out
