"""The audit log: chained, append-only, verified, archived; wired to administrative acts."""

from __future__ import annotations

import json
import sqlite3

import pytest

from shared.audit.log import GENESIS, Actor, record_hash
from shared.errors import ImmutableDocument
from shared.store.layout import AUDIT, BY_NAME
from shared.store.sqlite import column_of, field_value, table_of
from tests.conftest import auth, run_in_threads

ADMIN = Actor("k1", "tenant-admin")


def test_records_chain_by_hash_and_verify(platform) -> None:
    first = platform.audit.record("acme", "ruleset.activated", ADMIN, target="ruleset:r1",
                                  before={"version": 1}, after={"version": 2}, reason="spring promo")
    second = platform.audit.record("acme", "apikey.revoked", ADMIN, target="apikey:x")
    assert first["seq"] == 1 and first["prevHash"] == GENESIS and second["prevHash"] == first["hash"]
    assert first["actor"] == {"keyId": "k1", "role": "tenant-admin"} and first["hash"] == record_hash(first)
    assert platform.audit.verify("acme") == {"ok": True, "tenantId": "acme", "records": 2, "head": second["hash"]}


def test_store_refuses_edits_and_deletes(platform) -> None:
    record = platform.audit.record("acme", "x.y", ADMIN)
    with pytest.raises(ImmutableDocument):
        platform.store.upsert(AUDIT, dict(record, action="nothing.happened"))
    with pytest.raises(ImmutableDocument):
        platform.store.delete(AUDIT, "acme", record["id"])


def _tamper(platform, seq: int, change) -> None:
    db = sqlite3.connect(platform.store.path)
    row = db.execute("SELECT body FROM docs WHERE container='audit' AND pk='acme' AND id=?",
                     (str(seq).zfill(12),)).fetchone()
    body = change(json.loads(row[0]))
    fields = BY_NAME[AUDIT].extracted  # the field columns (seq) follow the edited body
    db.execute(f"UPDATE {table_of(AUDIT)} SET body=?{''.join(f', {column_of(f)}=?' for f in fields)}"
               " WHERE pk='acme' AND id=?",
               (json.dumps(body), *(field_value(body, f) for f in fields), str(seq).zfill(12)))
    db.commit()
    db.close()


@pytest.mark.parametrize("change, problem", [
    (lambda b: dict(b, reason="nothing to see"), "altered"),
    (lambda b: dict(b, prevHash="1" * 64, hash=record_hash(dict(b, prevHash="1" * 64))), "prevHash"),
    (lambda b: dict(b, seq=7), "missing or renumbered"),
])
def test_a_tampered_record_is_reported_as_the_first_broken_link(platform, change, problem) -> None:
    for n in range(4):
        platform.audit.record("acme", "adjustment.created", ADMIN, after={"points": n})
    _tamper(platform, 2, change)
    report = platform.audit.verify("acme")
    assert not report["ok"] and report["brokenAt"] == 2 and problem in report["problem"]


def test_concurrent_writers_never_fork_the_chain(platform) -> None:
    def write() -> None:
        for _ in range(10):
            platform.audit.record("acme", "x.y", ADMIN)

    run_in_threads(write, [()] * 4)
    report = platform.audit.verify("acme")
    assert report["ok"] and report["records"] == 40


def test_archive_writes_write_once_blobs_and_resumes(platform, tmp_path) -> None:
    for n in range(3):
        platform.audit.record("acme", "x.y", ADMIN, after={"n": n})
    paths = platform.audit.archive("acme")
    assert paths == ["acme/000000000001-000000000003.jsonl"]
    folder = tmp_path / "data" / "blobs" / "audit"
    lines = (folder / paths[0]).read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3]
    platform.audit.record("acme", "x.y", ADMIN)
    assert platform.audit.archive("acme") == ["acme/000000000004-000000000004.jsonl"]
    assert platform.audit.archive("acme") == []


def test_administrative_acts_over_the_api_are_audited(client, platform, tenant) -> None:
    created = client.post("/v1/api-keys", json={"role": "analyst", "label": "bi"}, headers=auth(tenant.admin)).json()
    client.delete(f"/v1/api-keys/{created['keyId']}", headers=auth(tenant.admin))
    client.patch("/v1/tenant", json={"pointsPerUnit": "20"}, headers=auth(tenant.admin))
    client.post("/v1/customers/c1/adjustments", headers=auth(tenant.admin),
                json={"points": 5, "reasonCode": "goodwill", "reason": "late parcel", "idempotencyKey": "a1"})
    records = client.get("/v1/audit", headers=auth(tenant.admin)).json()["items"]
    assert [r["action"] for r in records] == ["apikey.created", "apikey.revoked", "tenant.settings.changed",
                                              "adjustment.created"]
    assert records[2]["before"] == {"pointsPerUnit": "10"} and records[2]["after"] == {"pointsPerUnit": "20"}
    assert records[3]["reason"] == "late parcel" and records[0]["actor"]["role"] == "tenant-admin"
    assert client.get("/v1/audit/verify", headers=auth(tenant.admin)).json()["ok"]
    for key in (tenant.merchant, tenant.analyst):
        assert client.get("/v1/audit", headers=auth(key)).status_code == 403


def test_tenant_creation_is_audited_in_the_new_tenants_chain(client, platform, ceremony) -> None:
    root = ceremony.operators[0].api_key
    ceremony.create_tenant({"tenantId": "newco", "name": "New Co"})
    actions = [r["action"] for r in platform.audit.records("newco")]
    # The request and both approvals; keys first, then the tenant and its admin key; the
    # tenant's records close the provisioning, and the executed act closes the request.
    assert actions == ["approval.requested", "approval.approved", "approval.approved", "apikey.created",
                       "tenant.kek.created", "tenant.created", "tenant.create.executed"]
    assert client.get("/v1/platform/audit/newco/verify", headers=auth(root)).json()["ok"]


@pytest.mark.parametrize("cursor", ["9223372036854775808", "100000000000000000000000", "-1", "eyJ2IjoxfQ.x"])
def test_a_cursor_not_given_out_is_a_400_not_a_store_overflow(client, tenant, cursor) -> None:
    response = client.get("/v1/audit", params={"cursor": cursor}, headers=auth(tenant.admin))
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "query.cursor"


def test_the_nightly_job_archives_new_records_once(platform, tenant, tmp_path) -> None:
    from shared.jobs import JOBS

    job = next(j for j in JOBS if j.name == "audit-archive")
    platform.audit.record("acme", "test.act", None, target="x")
    first = job.run(platform)
    assert first["acme"], "the tenant's records were not archived"
    archived = list((tmp_path / "data" / "blobs" / "audit" / "acme").rglob("*.jsonl"))
    lines = [json.loads(line) for f in archived for line in f.read_text().splitlines()]
    assert [r["seq"] for r in lines] == list(range(1, len(lines) + 1))
    assert lines[-1]["action"] == "test.act"
    assert job.run(platform).get("acme") == []  # nothing new: nothing written twice
