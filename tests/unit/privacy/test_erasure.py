"""Erasure that erases (issue 12): no copy of the customer left in any store of the
embedded platform, exports rewritten and announced, the erasure log replayed after
a restore, the data folder owner only. The byte scan is ``tests/erasure_scan.py``."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sqlite3
import stat
from datetime import date, timedelta
from pathlib import Path

import pytest

from shared.app.customers import CustomerProfile
from shared.exports.crypto import encrypt_stream
from shared.keys.local import LocalKeyring
from shared.local.__main__ import main as accrue
from shared.privacy.erasure import LOG_PREFIX, WORK_PK
from shared.privacy.personal import PERSONAL_FIELDS
from shared.schemas import REGISTRY
from shared.settings import Settings
from shared.store.layout import CUSTOMERS, PII_KEYS, SYSTEM, WEBHOOK_MESSAGES, customer_pk
from shared.webhooks.ssrf import TestAllowance
from tests.conftest import auth, drain, order_body
from tests.erasure_scan import ErasureScan, Needles, forms_of, needles_of

# Distinctive values (short or common ones would match unrelated bytes), every personal field.
ZELDA = {"customerId": "z1", "joinDate": "2026-03-01", "email": "Zelda.Quuxbright@Example.org",
         "name": "Zelda Quuxbright", "phone": "+33 6 98 76 54 32", "birthDate": "1987-06-05",
         "postalAddress": {"lines": ["7 Impasse Wxyzabc", "Batiment Qorvex"], "city": "Qorvillette",
                           "postalCode": "QZ7-9XJ", "region": "Haute Zorbanie", "country": "FR"}}
OTHER = dict(ZELDA, customerId="o1", email="olga.vantrimble@example.org", name="Olga Vantrimble",
             phone="+44 20 7946 0321", birthDate="1975-01-31",
             postalAddress={"lines": ["9 Ymirlane"], "city": "Brackenholt", "postalCode": "BK9 4LL",
                            "country": "GB"})


def register(client, tenant, body=ZELDA):  # type: ignore[no-untyped-def]
    response = client.post("/v1/customers", json=body, headers=auth(tenant.merchant))
    assert response.status_code == 201, response.text
    return response


def needles(platform, body=ZELDA) -> Needles:  # type: ignore[no-untyped-def]
    pk = customer_pk("acme", body["customerId"])
    return needles_of(body, platform.store.read(CUSTOMERS, pk, body["customerId"]),
                      platform.store.read(PII_KEYS, pk, "dek"))


def erase(client, tenant, customer_id: str = "z1"):  # type: ignore[no-untyped-def]
    response = client.post(f"/v1/customers/{customer_id}/erasure", json={"reason": "ticket 12"},
                           headers=auth(tenant.admin))
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def ndjson_exports(monkeypatch):  # type: ignore[no-untyped-def]
    """The NDJSON format option (these tests read its files); Parquet erasure: tests/unit/exports."""
    from shared.exports import service

    monkeypatch.setattr(service, "DEFAULT_FORMAT", "ndjson")


def export_rows(platform, manifest, subject):  # type: ignore[no-untyped-def]
    entry = next(f for f in manifest["files"] if f["subject"] == subject)
    plain = b"".join(platform.exports.file_plaintext("acme", manifest, entry))
    return [json.loads(line) for line in gzip.decompress(plain).splitlines()]


# --- the scan helper itself: it finds each form, or a clean result proves nothing ---------------

@pytest.mark.parametrize("form", sorted(forms_of("Zelda Quuxbright")))
def test_the_scan_finds_a_text_value_in_each_form(tmp_path, form) -> None:
    planted = forms_of("Zelda Quuxbright")[form]
    (tmp_path / "a.bin").write_bytes(os.urandom(100) + planted + os.urandom(100))
    needles = Needles({"name": "Zelda Quuxbright"})
    assert any(f.startswith(f"name as {form} in a.bin") for f in ErasureScan(tmp_path).findings(needles))


@pytest.mark.parametrize("offset", [0, 1, 2])
def test_the_scan_finds_a_value_inside_longer_base64_at_every_alignment(tmp_path, offset) -> None:
    import base64

    key = os.urandom(40)
    (tmp_path / "doc.json").write_text(json.dumps({"k": base64.b64encode(os.urandom(offset) + key + b"tail").decode()}))
    assert ErasureScan(tmp_path).findings(Needles({"wrapped DEK": key}))


def test_the_scan_reads_the_plaintext_of_export_files_with_the_folders_keyring(tmp_path) -> None:
    keys = LocalKeyring.in_folder(tmp_path)
    stream, _ = encrypt_stream(keys, "acme", "customers", "r1", [gzip.compress(b'{"name":"Zelda Quuxbright"}\n')])
    (tmp_path / "f.enc").write_bytes(b"".join(stream))
    found = ErasureScan(tmp_path, keys).findings(Needles({"name": "Zelda Quuxbright"}))
    assert "name as utf-8 in f.enc (decrypted)" in found
    assert not any(f.endswith("in f.enc") for f in found)  # the ciphertext itself shows nothing


# --- the class: after erasure, nothing in any store ------------------------------------------------

def test_after_erasure_and_a_clean_stop_no_store_holds_the_customer_or_its_key(
        client, platform, tenant, clock, caplog) -> None:
    """The review's case: another process keeps the SQLite file open (the local platform's
    worker processes), so a clean stop does not checkpoint; an export made before the
    erasure holds every personal field."""
    caplog.set_level("DEBUG")
    other_process = sqlite3.connect(platform.store.path)
    other_process.execute("SELECT COUNT(*) FROM c_customers").fetchone()
    try:
        platform.exports.save_settings("acme", [])  # the worst case: every personal field exported
        register(client, tenant)
        register(client, tenant, OTHER)
        client.post("/v1/orders", json=order_body("z1", "o1"), headers=auth(tenant.merchant))
        drain(platform)
        clock.advance(timedelta(minutes=5))
        before = platform.exports.run("acme")
        wanted = needles(platform)
        scan = ErasureScan(platform.settings.data_dir, platform.key_provider)
        seen = scan.findings(wanted)
        # The scan can fail: before the erasure it finds the key in the store and each field in the export.
        assert any(f.startswith("wrapped DEK") and " in accrue.db" in f for f in seen), seen
        for name in ("email[0]", "name[0]", "phone[0]", "birthDate[0]", "postalAddress[0]", "postalAddress[2]"):
            assert any(f.startswith(f"{name} as utf-8 in ") and "(decrypted)" in f for f in seen), name
        profile = client.get("/v1/customers/z1", headers=auth(tenant.admin)).json()
        erase(client, tenant)
        drain(platform)
        platform.close()  # the clean stop, with the other process still attached
        texts = {"log records": "\n".join(r.getMessage() for r in caplog.records),
                 "profile before erasure (API)": json.dumps({k: v for k, v in profile.items()
                                                             if k != "personalData"})}
        scan.assert_clean(wanted, texts)
        # The other customer's data is still there: the rewrite removed only the erased one.
        assert any(f.startswith("name[0] as utf-8") for f in scan.findings(needles_of(OTHER)))
        assert before["files"]
    finally:
        other_process.close()


@pytest.mark.parametrize("field", [f for f in PERSONAL_FIELDS if f in ZELDA])
def test_each_personal_field_alone_is_gone_after_erasure(client, platform, tenant, clock, field) -> None:
    body = {"customerId": "z1", "joinDate": "2026-03-01", field: ZELDA[field]}
    platform.exports.save_settings("acme", [])
    register(client, tenant, body)
    clock.advance(timedelta(minutes=5))
    platform.exports.run("acme")
    wanted = needles(platform, body)
    scan = ErasureScan(platform.settings.data_dir, platform.key_provider)
    assert scan.findings(wanted)
    erase(client, tenant)
    scan.assert_clean(wanted)


# --- exports: rewritten, audited, announced --------------------------------------------------------

@pytest.mark.usefixtures("ndjson_exports")
def test_erasure_rewrites_earlier_exports_keeps_them_verifiable_and_audits_the_files(
        client, platform, tenant, clock, tmp_path, monkeypatch) -> None:
    platform.exports.save_settings("acme", [])
    register(client, tenant)
    register(client, tenant, OTHER)
    clock.advance(timedelta(minutes=5))
    incremental = platform.exports.run("acme")
    backfill = platform.exports.backfill("acme", clock.now() - timedelta(days=1), clock.now(), ["customers"])
    assert {r["customerId"]: r.get("name") for r in export_rows(platform, incremental, "customers")}["z1"] \
        == "Zelda Quuxbright"
    erase(client, tenant)
    for run in (incremental, backfill):
        manifest_path = next(f["path"] for f in run["files"]).rsplit("/", 1)[0] + "/manifest.json"
        manifest = json.loads(platform.exports.sink.read(manifest_path))
        rows = {r["customerId"]: r for r in export_rows(platform, manifest, "customers")}
        assert rows["z1"]["erased"] is True and not set(PERSONAL_FIELDS) & set(rows["z1"])
        assert rows["o1"]["name"] == "Olga Vantrimble" and rows["o1"]["erased"] is False
        entry = next(f for f in manifest["files"] if f["subject"] == "customers")
        assert entry["rewrittenAt"] and entry["rows"] == len(rows) == 5
        # The warehouse's decrypt command still verifies the rewritten file against the manifest.
        monkeypatch.setenv("ACCRUE_DATA_DIR", str(platform.settings.data_dir))
        out = tmp_path / run["runId"]
        assert accrue(["export", "decrypt", "--manifest",
                       str(platform.settings.data_dir / "blobs/exports" / manifest_path), "--out", str(out)]) == 0
    audit = [r for r in platform.audit.records("acme", limit=1000) if r["action"] == "customer.exports-rewritten"]
    assert len(audit) == 1 and audit[0]["target"] == "customer:z1"
    assert sorted(audit[0]["after"]["files"]) == sorted(
        f["path"] for run in (incremental, backfill) for f in run["files"] if f["subject"] == "customers")
    assert "Zelda" not in json.dumps(audit)


def test_tenants_that_export_no_personal_field_pay_nothing_at_erasure(client, platform, tenant, clock) -> None:
    register(client, tenant)
    clock.advance(timedelta(minutes=5))
    manifest = platform.exports.run("acme")  # the default settings: no personal field exported
    assert all(f["personalFields"] == [] for f in manifest["files"])
    listed = [i for i in platform.exports.sink.list("acme/") if i.path.endswith("manifest.json")]
    assert [i.metadata for i in listed] == [{"personaldata": "false"}]  # skipped unread by an erasure
    path = next(f["path"] for f in manifest["files"] if f["subject"] == "customers")
    before = platform.exports.sink.read(path)
    erase(client, tenant)
    assert platform.exports.sink.read(path) == before


@pytest.mark.usefixtures("ndjson_exports")
def test_the_next_export_lists_the_erasure_and_the_erased_profile(client, platform, tenant, clock) -> None:
    register(client, tenant)
    clock.advance(timedelta(minutes=5))
    platform.exports.run("acme")
    erased = erase(client, tenant)
    clock.advance(timedelta(minutes=5))
    manifest = platform.exports.run("acme")
    rows = export_rows(platform, manifest, "erasures")
    assert rows == [{"tenantId": "acme", "customerId": "z1", "erasedAt": erased["erasedAt"]}]
    for row in rows:
        REGISTRY.validate(row, "export.erasures", 1)
    assert [r["erased"] for r in export_rows(platform, manifest, "customers") if r["customerId"] == "z1"] == [True]
    clock.advance(timedelta(minutes=5))
    assert export_rows(platform, platform.exports.run("acme"), "erasures") == []  # once


def test_erasure_publishes_customer_erased_with_no_personal_data(client, platform, tenant) -> None:
    platform.webhooks.allowance = TestAllowance(frozenset({"127.0.0.1"}))  # registration only: nothing is sent
    platform.webhooks.register("acme", "http://127.0.0.1:9/hook", ["customer.erased"])
    register(client, tenant)
    erased = erase(client, tenant)
    erase(client, tenant)  # asked twice: one event
    messages = [m for m in platform.store.query(WEBHOOK_MESSAGES, _all("acme")) if m["eventType"] == "customer.erased"]
    assert len(messages) == 1
    body = json.loads(messages[0]["body"])
    REGISTRY.validate(body, "webhook.customer.erased", 1)
    assert body["data"] == {"customerId": "z1", "erasedAt": erased["erasedAt"]}


def _all(tenant_id):  # type: ignore[no-untyped-def]
    """Every webhook message of a tenant: they sit in many partitions (shared/store/layout.message_pk)."""
    from shared.store.port import Filter, Query

    return Query(pk=None, filters=(Filter("tenantId", "=", tenant_id),), limit=1000)


# --- the erasure log, and a restore of the database ------------------------------------------------

def test_a_restore_is_made_whole_by_replaying_the_erasure_log(client, platform, tenant, clock, monkeypatch) -> None:
    platform.exports.save_settings("acme", [])
    register(client, tenant)
    clock.advance(timedelta(minutes=5))
    platform.exports.run("acme")
    wanted = needles(platform)
    data_dir = platform.settings.data_dir
    backup = data_dir.parent / "backup.db"
    with sqlite3.connect(platform.store.path) as source, sqlite3.connect(backup) as target:
        source.backup(target)  # the backup point, before the erasure
    backup_point = clock.now()
    clock.advance(timedelta(hours=1))
    erase(client, tenant)
    log = platform.erasures.log_sink.list(LOG_PREFIX)
    assert len(log) == 1 and json.loads(platform.erasures.log_sink.read(log[0].path)) == {
        "format": "accrue-erasure", "version": 1, "tenantId": "acme", "customerId": "z1",
        "erasedAt": platform.customers.get("acme", "z1")["erasedAt"]}
    platform.close()
    # The restore: the database goes back to the backup point; Blob Storage (the log, exports) does not.
    for side in ("", "-wal", "-shm"):
        Path(str(data_dir / "accrue.db") + side).unlink(missing_ok=True)
    shutil.copy(backup, data_dir / "accrue.db")
    monkeypatch.setenv("ACCRUE_DATA_DIR", str(data_dir))
    from shared.platform import build_platform

    restored = build_platform(Settings.from_env())
    try:
        assert restored.vault.open(restored.customers.get("acme", "z1"))["name"] == "Zelda Quuxbright"
    finally:
        restored.close()
    assert accrue(["erasures", "replay", "--since", backup_point.isoformat()]) == 0
    again = build_platform(Settings.from_env())
    try:
        assert again.customers.get("acme", "z1")["erasedAt"]
        assert again.store.read(PII_KEYS, customer_pk("acme", "z1"), "dek") is None
        assert again.store.read(SYSTEM, WORK_PK, "acme:z1")["status"] == "done"
    finally:
        again.close()
    backup.unlink()
    ErasureScan(data_dir, LocalKeyring.in_folder(data_dir)).assert_clean(wanted)


def test_replay_refuses_a_bad_instant_and_only_replays_since_it(platform, tenant, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ACCRUE_DATA_DIR", str(platform.settings.data_dir))
    assert accrue(["erasures", "replay", "--since", "yesterday"]) == 2
    platform.customers.register("acme", CustomerProfile(customerId="z1", joinDate=date(2026, 1, 1),
                                                        email="z@example.org"))
    platform.erasures.erase("acme", "z1", None, "t")
    later = platform.clock.now() + timedelta(seconds=1)
    assert list(platform.erasures.log_records(later)) == []
    assert [r["customerId"] for r in platform.erasures.log_records(platform.clock.now())] == ["z1"]
    capsys.readouterr()
    assert accrue(["erasures", "list", "--since", platform.clock.now().isoformat()]) == 0
    assert '"customerId": "z1"' in capsys.readouterr().out


# --- failures: the job completes what the request could not -------------------------------------

def test_an_erasure_whose_export_rewrite_failed_is_completed_by_the_erasures_job(
        client, platform, tenant, clock) -> None:
    from shared.jobs import JOBS

    platform.exports.save_settings("acme", [])
    register(client, tenant)
    clock.advance(timedelta(minutes=5))
    platform.exports.run("acme")
    wanted = needles(platform)
    tmp = platform.settings.data_dir / "blobs/exports/.tmp"
    shutil.rmtree(tmp)
    tmp.write_text("in the way")  # the blob folder cannot write: the rewrite fails
    erase(client, tenant)  # the key is gone at once; the request does not fail
    assert platform.store.read(SYSTEM, WORK_PK, "acme:z1")["status"] == "pending"
    scan = ErasureScan(platform.settings.data_dir, platform.key_provider)
    assert any("(decrypted)" in f for f in scan.findings(wanted))
    tmp.unlink()
    tmp.mkdir(mode=0o700)
    next(j for j in JOBS if j.name == "erasures").run(platform)
    assert platform.store.read(SYSTEM, WORK_PK, "acme:z1")["status"] == "done"
    scan.assert_clean(wanted)


@pytest.mark.usefixtures("ndjson_exports")
def test_an_export_racing_the_erasure_leaves_no_personal_data(client, platform, tenant, clock) -> None:
    """The export process's data-key cache outlives the key: a run that read the profile
    before the erasure must not publish it after (its own check after the manifest)."""
    platform.exports.save_settings("acme", [])
    register(client, tenant)
    clock.advance(timedelta(minutes=5))
    wanted = needles(platform)
    original = platform.exports._customer_rows

    def erase_mid_run(tenant_id, lower, upper, exported):  # type: ignore[no-untyped-def]
        rows = list(original(tenant_id, lower, upper, exported))  # opened with the key still there
        platform.erasures.erase("acme", "z1", None, "ticket 12")
        yield from rows

    platform.exports._customer_rows = erase_mid_run
    manifest = platform.exports.run("acme")
    row = next(r for r in export_rows(platform, manifest, "customers") if r["customerId"] == "z1")
    assert row["erased"] is True and "name" not in row
    rewritten = [r for r in platform.audit.records("acme", limit=1000) if r["action"] == "customer.exports-rewritten"]
    assert [r["target"] for r in rewritten] == ["customer:z1"]
    ErasureScan(platform.settings.data_dir, platform.key_provider).assert_clean(wanted)


# --- the data folder is owner only ------------------------------------------------------------------

@pytest.fixture
def usual_umask():  # type: ignore[no-untyped-def]
    previous = os.umask(0o022)  # a usual umask: the modes must not depend on it
    yield
    os.umask(previous)


def test_every_folder_and_file_of_the_data_folder_is_owner_only(client, platform, tenant, clock, usual_umask) -> None:
    platform.exports.save_settings("acme", [])
    register(client, tenant)
    client.post("/v1/orders", json=order_body("z1", "o1"), headers=auth(tenant.merchant))
    drain(platform)
    clock.advance(timedelta(minutes=5))
    platform.exports.run("acme")
    erase(client, tenant)
    platform.audit.archive_all()
    data_dir = platform.settings.data_dir
    names = {p.name for p in data_dir.rglob("*")}
    assert {"accrue.db", "accrue.db-wal", "accrue.db-shm", "queue.db", "queue.db-wal", "keyring.json"} <= names
    wide = [f"{p.relative_to(data_dir)} {stat.S_IMODE(p.stat().st_mode):o}" for p in [data_dir, *data_dir.rglob("*")]
            if stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert not wide, wide


def test_files_made_before_this_version_are_narrowed_on_open(tmp_path, usual_umask) -> None:
    from shared.store.layout import CONTAINERS
    from shared.store.sqlite import SqliteDocumentStore

    path = tmp_path / "d" / "accrue.db"
    store = SqliteDocumentStore(path, CONTAINERS)
    store.close()
    for f in path.parent.iterdir():
        f.chmod(0o644)
    path.parent.chmod(0o755)
    store = SqliteDocumentStore(path, CONTAINERS)
    store.close()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in path.parent.iterdir())


# --- concurrency: erasures racing each other ----------------------------------------------------------

def test_concurrent_erasures_of_one_and_of_many_customers_erase_each_once(client, platform, tenant, clock) -> None:
    from tests.conftest import run_in_threads

    platform.webhooks.allowance = TestAllowance(frozenset({"127.0.0.1"}))  # registration only: nothing is sent
    platform.webhooks.register("acme", "http://127.0.0.1:9/hook", ["customer.erased"])
    platform.exports.save_settings("acme", [])
    register(client, tenant)
    others = [dict(OTHER, customerId=f"m{n}", email=f"m{n}.vantrimble@example.org") for n in range(3)]
    for body in others:
        register(client, tenant, body)
    clock.advance(timedelta(minutes=5))
    platform.exports.run("acme")
    wanted = needles(platform)
    errors: list[BaseException] = []

    def erase_one(customer_id: str) -> None:
        try:
            platform.erasures.erase("acme", customer_id, None, "ticket 12")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    run_in_threads(erase_one, [("z1",)] * 4 + [(b["customerId"],) for b in others], timeout=60)
    assert not errors, errors
    ids = ["z1"] + [b["customerId"] for b in others]
    audited = [r["target"] for r in platform.audit.records("acme", limit=1000) if r["action"] == "customer.erased"]
    assert sorted(audited) == sorted(f"customer:{c}" for c in ids)  # once each, however many asked
    announced = [json.loads(m["body"])["data"]["customerId"] for m in platform.store.query(WEBHOOK_MESSAGES, _all("acme"))
                 if m["eventType"] == "customer.erased"]
    assert sorted(announced) == sorted(ids)
    assert all(platform.store.read(SYSTEM, WORK_PK, f"acme:{c}")["status"] == "done" for c in ids)
    scan = ErasureScan(platform.settings.data_dir, platform.key_provider)
    scan.assert_clean(wanted)
    for body in others:
        scan.assert_clean(needles_of(body))


def test_two_erasures_that_read_the_profile_at_once_both_succeed_and_audit_once(platform, tenant) -> None:
    """The race made certain: both erasures read the profile before either writes."""
    import threading

    from tests.conftest import run_in_threads

    platform.customers.register("acme", CustomerProfile(customerId="z1", joinDate=date(2026, 1, 1),
                                                        email="zelda@example.org"))
    barrier, waited = threading.Barrier(2, timeout=10), threading.local()
    real_store = platform.vault._store

    class TogetherOnFirstRead:
        def __getattr__(self, name):  # type: ignore[no-untyped-def]
            return getattr(real_store, name)

        def read(self, container, pk, doc_id):  # type: ignore[no-untyped-def]
            doc = real_store.read(container, pk, doc_id)
            if container == CUSTOMERS and not getattr(waited, "done", False):
                waited.done = True
                barrier.wait()
            return doc

    platform.vault._store = TogetherOnFirstRead()
    results, errors = [], []

    def erase_one() -> None:
        try:
            results.append(platform.vault.erase("acme", "z1", None, "ticket 12"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    run_in_threads(erase_one, [()] * 2, timeout=30)
    assert not errors, errors
    assert sorted(r["alreadyErased"] for r in results) == [False, True]
    assert len({r["erasedAt"] for r in results}) == 1
    assert [r["action"] for r in platform.audit.records("acme", limit=1000)].count("customer.erased") == 1


def test_an_erasure_when_the_blob_store_is_down_destroys_the_key_and_the_job_writes_the_log(
        client, platform, tenant) -> None:
    from shared.jobs import JOBS

    register(client, tenant)
    audit_tmp = platform.settings.data_dir / "blobs/audit/.tmp"
    platform.erasures.log_sink  # built before the fault: the folder exists
    shutil.rmtree(audit_tmp)
    audit_tmp.write_text("in the way")  # the erasure log cannot be written
    erase(client, tenant)
    assert platform.store.read(PII_KEYS, customer_pk("acme", "z1"), "dek") is None
    assert platform.erasures.log_sink.list(LOG_PREFIX) == []
    assert platform.store.read(SYSTEM, WORK_PK, "acme:z1")["status"] == "pending"
    audit_tmp.unlink()
    audit_tmp.mkdir(mode=0o700)
    next(j for j in JOBS if j.name == "erasures").run(platform)
    assert [r["customerId"] for r in platform.erasures.log_records(platform.clock.now() - timedelta(days=1))] == ["z1"]
    assert platform.store.read(SYSTEM, WORK_PK, "acme:z1")["status"] == "done"


def test_personal_data_that_came_in_by_every_door_is_gone_after_the_erasure(platform, tenant, clock) -> None:
    """Zelda arrives in a customers import file, is exported by a micro-batch with every
    personal field, then the tenant stops exporting them and the day is compacted; the
    erasure must leave no form of her data in any file of the data folder (the import's
    file, the micro-batch, the compacted day, the store). Each door was a leak once."""
    from tests.unit.imports.conftest import finish, ndjson, start_import

    platform.exports.save_settings("acme", [])  # every personal field exported
    day = clock.now().strftime("%Y-%m-%d")
    import_id = start_import(platform, "acme", ndjson([ZELDA, OTHER]), kind="customers", format="ndjson")
    source = platform.imports._doc("acme", import_id)["path"]
    scan = ErasureScan(platform.settings.data_dir, platform.key_provider)
    assert any(f.startswith("email[0]") and "imports" in f for f in scan.findings(needles_of(ZELDA))), \
        "the scan reads the uploaded file"
    finish(platform)
    assert platform.imports.status("acme", import_id)["rowsDone"] == 2 and not platform.imports.sink.exists(source)
    clock.advance(timedelta(minutes=5))
    platform.exports.microbatch("acme")
    platform.exports.save_settings("acme", list(PERSONAL_FIELDS))
    clock.advance(timedelta(days=1))
    platform.exports.run("acme")
    platform.exports.compact("acme", day)
    wanted = needles(platform)
    assert any("(decrypted)" in f and "compacted" in f for f in scan.findings(wanted)), "the day holds her fields"
    platform.erasures.erase("acme", "z1", None, "ticket 12")
    platform.close()
    scan.assert_clean(wanted)
    assert any(f.startswith("name[0] as utf-8") for f in scan.findings(needles_of(OTHER)))
