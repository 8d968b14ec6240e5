"""Exports: the encrypted format (tamper, truncation, reorder, swap), incremental runs
with watermarks, crash and redo, backfill, PII exclusion, the decrypt CLI."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import timedelta

import pytest

from shared.blobs.local import LocalBlobSink
from shared.blobs.port import BlobUnavailable
from shared.exports.__main__ import main as export_cli
from shared.exports.crypto import ExportDecryptError, decrypt_stream, encrypt_stream
from shared.exports.service import SUBJECTS, ExportService
from shared.store.port import Query
from tests.conftest import add_customer, auth, drain, order_body


@pytest.fixture(autouse=True)
def _ndjson_format(monkeypatch):  # type: ignore[no-untyped-def]
    """These tests hold the NDJSON format (the ``format: ndjson`` option) to its contract;
    Parquet, the default, is tested in test_parquet_exports.py."""
    from shared.exports import service

    monkeypatch.setattr(service, "DEFAULT_FORMAT", "ndjson")


def _seal(platform, data: bytes, chunk=1024, tenant="acme", subject="transactions", run="r1"):  # type: ignore
    stream, stats = encrypt_stream(platform.key_provider, tenant, subject, run,
                                   [data[i:i + 700] for i in range(0, len(data), 700)], chunk)
    blob = b"".join(stream)
    return blob, stats


def _open(platform, blob: bytes, **expect) -> bytes:  # type: ignore[no-untyped-def]
    expect.setdefault("tenant_id", "acme")
    return b"".join(decrypt_stream(platform.key_provider, [blob[i:i + 333] for i in range(0, len(blob), 333)],
                                   **expect))


@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 4096, 10_000])
def test_round_trip_any_size(platform, size) -> None:  # type: ignore[no-untyped-def]
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    blob, stats = _seal(platform, data)
    assert _open(platform, blob, subject="transactions", run_id="r1") == data
    assert stats.plaintext_bytes == size and stats.ciphertext_bytes == len(blob)


def test_tampering_truncation_reordering_and_swaps_are_detected(platform) -> None:  # type: ignore
    data = b"x" * 5000
    blob, _ = _seal(platform, data)
    header_len = 12 + int.from_bytes(blob[8:12], "big")
    chunks = [blob[header_len + i:header_len + i + 1040] for i in range(0, len(blob) - header_len, 1040)]
    flipped = bytearray(blob)
    flipped[-5] ^= 1
    bad = {
        "flipped bit": bytes(flipped),
        "truncated at a chunk boundary": blob[:header_len + 1040 * 4],
        "truncated mid-chunk": blob[:-7],
        "reordered": blob[:header_len] + chunks[1] + chunks[0] + b"".join(chunks[2:]),
        "dropped chunk": blob[:header_len] + b"".join(chunks[1:]),
        "header edited": blob.replace(b'"runId":"r1"', b'"runId":"r2"'),
    }
    for name, damaged in bad.items():
        with pytest.raises(ExportDecryptError):
            _open(platform, damaged)
        print("detected:", name)
    with pytest.raises(ExportDecryptError):
        _open(platform, blob, subject="orders")  # swapped subject
    with pytest.raises(ExportDecryptError):
        _open(platform, blob, run_id="r2")  # swapped run
    with pytest.raises(ExportDecryptError):
        _open(platform, blob, tenant_id="globex")  # swapped tenant


def _rows(platform, manifest, subject):  # type: ignore[no-untyped-def]
    entry = next(f for f in manifest["files"] if f["subject"] == subject)
    plain = b"".join(platform.exports.file_plaintext(manifest["tenantId"], manifest, entry))
    return [json.loads(line) for line in gzip.decompress(plain).splitlines()]


def _orders(client, tenant, platform, ids, customer="c1"):  # type: ignore[no-untyped-def]
    for order_id in ids:
        assert client.post("/v1/orders", json=order_body(customer, order_id), headers=auth(tenant.merchant)).status_code == 202
    drain(platform)


def test_incremental_runs_export_each_change_once(platform, tenant, client, clock) -> None:  # type: ignore
    _orders(client, tenant, platform, ["o1", "o2"])
    clock.advance(timedelta(minutes=5))
    first = platform.exports.run("acme")
    assert {f["subject"] for f in first["files"]} == set(SUBJECTS)
    rows = _rows(platform, first, "transactions")
    assert len(rows) == 2 and {r["points"] for r in rows} == {100}
    assert len(_rows(platform, first, "orders")) == 2
    assert len(_rows(platform, first, "customers")) == 3
    assert all("trace" in r for r in _rows(platform, first, "ruleevaluations"))
    for f in first["files"]:
        # Azure client-side encryption v2 under the tenant's export key, as Parquet files are.
        assert f["encryption"] == "azure-storage-cse-v2" and f["format"] == "ndjson+gzip"
        assert f["kek"]["kid"].startswith("local:acme/")  # the export keyring's kid, not the personal-data key
        blob = platform.exports.sink.read(f["path"])
        plain = b"".join(platform.exports.file_plaintext("acme", first, f))
        assert hashlib.sha256(plain).hexdigest() == f["plaintextSha256"] and len(plain) == f["plaintextBytes"]
        assert blob != plain and plain.startswith(b"\x1f\x8b")  # stored encrypted, gzip inside
    _orders(client, tenant, platform, ["o3"])
    clock.advance(timedelta(minutes=5))
    second = platform.exports.run("acme")
    assert [r["referenceOrderId"] for r in _rows(platform, second, "transactions")] == ["o3"]
    assert _rows(platform, second, "customers") == []
    assert [r["runId"] for r in platform.exports.runs("acme")] == [second["runId"], first["runId"]]


class FailingSink(LocalBlobSink):
    def __init__(self, root, fail_on: str) -> None:  # type: ignore[no-untyped-def]
        super().__init__(root)
        self.fail_on = fail_on

    def put(self, path, chunks, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.fail_on and self.fail_on in path:
            for _ in chunks:  # fail midway through the stream
                break
            raise BlobUnavailable("injected: blob store down")
        return super().put(path, chunks, *args, **kwargs)


def test_a_run_that_dies_midway_is_redone_not_skipped_or_doubled(platform, tenant, client, clock, tmp_path,
                                                                  caplog) -> None:  # type: ignore
    sink = FailingSink(tmp_path / "blobs", fail_on="orders")
    service = ExportService(platform.store, clock, platform.key_provider, sink, vault=platform.vault)
    _orders(client, tenant, platform, ["o1"])
    clock.advance(timedelta(minutes=5))
    with pytest.raises(BlobUnavailable):
        service.run("acme")
    assert "no watermark moved" in caplog.text
    state = platform.store.read("exports", "acme", "state")
    assert state["watermarks"] == {} and state["pending"] is not None
    _orders(client, tenant, platform, ["o2"])  # arrives after the failed run's bounds
    sink.fail_on = ""
    clock.advance(timedelta(minutes=5))
    redo = service.run("acme")
    assert redo["runId"] == state["pending"]["runId"]
    assert [r["referenceOrderId"] for r in _rows_from(service, platform, redo, "transactions")] == ["o1"]
    after = service.run("acme")
    assert [r["referenceOrderId"] for r in _rows_from(service, platform, after, "transactions")] == ["o2"]


@pytest.mark.parametrize("dies_in", ["_record_run", "final state"])
def test_a_run_that_dies_at_its_end_is_listed_once_after_its_retry(platform, tenant, client, clock, monkeypatch,
                                                                   dies_in) -> None:  # type: ignore
    """The run's files and manifest are written; the process dies while writing the run's record
    or the state that ends the run. The next run finishes it: it is listed once, with its rows
    exported once (the state used to be written first, and a crash before the record lost the
    run from the list for good)."""
    from tests.conftest import Died, crashing

    _orders(client, tenant, platform, ["o1"])
    clock.advance(timedelta(minutes=5))
    service = platform.exports
    real_record, real_save = service._record_run, service._save_state

    def save(state):  # type: ignore[no-untyped-def]
        if state.get("pending") is None:
            raise Died("while ending the run")
        return real_save(state)
    if dies_in == "_record_run":
        monkeypatch.setattr(service, "_record_run", crashing("while recording the run", Died))
    else:
        monkeypatch.setattr(service, "_save_state", save)
    with pytest.raises(Died):
        service.run("acme")
    monkeypatch.setattr(service, "_record_run", real_record)
    monkeypatch.setattr(service, "_save_state", real_save)
    first = service.run("acme")
    assert [r["referenceOrderId"] for r in _rows(platform, first, "transactions")] == ["o1"]
    listed = [r["runId"] for r in service.runs("acme")]
    assert listed.count(first["runId"]) == 1, listed
    again = service.run("acme")
    assert again["runId"] != first["runId"] and _rows(platform, again, "transactions") == []


def _rows_from(service, platform, manifest, subject):  # type: ignore[no-untyped-def]
    entry = next(f for f in manifest["files"] if f["subject"] == subject)
    plain = b"".join(service.file_plaintext("acme", manifest, entry))
    return [json.loads(line) for line in gzip.decompress(plain).splitlines()]


def test_backfill_has_its_own_prefix_and_moves_no_watermark(platform, tenant, client, clock) -> None:  # type: ignore
    _orders(client, tenant, platform, ["o1"])
    start = clock.now() - timedelta(days=1)
    clock.advance(timedelta(minutes=5))
    response = client.post("/v1/exports/backfills", headers=auth(tenant.admin),
                           json={"from": start.isoformat(), "to": clock.now().isoformat(),
                                 "subjects": ["transactions"]})
    assert response.status_code == 201, response.text
    manifest = response.json()
    assert manifest["files"][0]["path"].startswith("acme/backfill/") and manifest["files"][0]["rows"] == 1
    assert platform.store.read("exports", "acme", "state") is None
    assert client.post("/v1/exports/backfills", headers=auth(tenant.merchant), json={}).status_code == 403


@pytest.mark.parametrize(("window", "fields"), [
    ({"from": "0001-01-01T00:00:00Z", "to": "2000-01-01T00:00:00Z"}, ["from"]),
    ({"from": "2000-01-01T00:00:00Z", "to": "9999-12-31T23:59:59-05:00"}, ["to"]),
    ({"from": "0001-01-01T00:00:00+05:00", "to": "9999-12-31T23:59:59-05:00"}, ["from", "to"]),
    # Issue 12: epoch seconds and naive times are refused, not read as UTC.
    ({"from": 1700000000, "to": "2026-01-01T00:00:00Z"}, ["from"]),
    ({"from": "2020-01-01T00:00:00Z", "to": "1700000000"}, ["to"]),
    ({"from": "2020-01-01T00:00:00", "to": "2026-01-01T00:00:00Z"}, ["from"]),
])
def test_a_backfill_at_the_ends_of_the_calendar_is_a_client_error_naming_the_field(
        platform, tenant, client, window, fields) -> None:  # type: ignore[no-untyped-def]
    # Found by the API fuzz: the window's edges (start - 1 µs, in UTC) overflowed into a 500.
    response = client.post("/v1/exports/backfills", headers=auth(tenant.admin), json=window)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [p["field"] for p in response.json()["errors"]] == fields
    assert platform.store.query("exports", Query(pk="acme", limit=10)) == []


def test_a_backfill_over_the_widest_window_reads_what_is_kept_not_every_day_of_it(platform, tenant, client, clock,
                                                                               monkeypatch) -> None:  # type: ignore
    """Found by an outside review: a backfill to the year 9000 queried each of its 2.5 million
    days of webhook attempts (86 s on an empty tenant). Every subject's reads are now bounded
    by what can exist (no row after today, none kept beyond the longest retention)."""
    from shared.store.layout import MAX_TTL_DAYS

    _orders(client, tenant, platform, ["o1"])
    clock.advance(timedelta(minutes=5))
    calls = {"n": 0}
    query = type(platform.store).query

    def counted(this, container, q):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return query(this, container, q)

    monkeypatch.setattr(type(platform.store), "query", counted)

    def backfill(start: str, end: str) -> tuple[int, dict]:
        calls["n"] = 0
        response = client.post("/v1/exports/backfills", headers=auth(tenant.admin), json={"from": start, "to": end})
        assert response.status_code == 201, response.text
        return calls["n"], response.json()

    day = timedelta(days=1)
    narrow, near = backfill((clock.now() - day).isoformat(), (clock.now() + day).isoformat())
    wide, widest = backfill("1970-01-01T00:00:00Z", "9000-01-01T00:00:00Z")
    assert wide <= narrow + MAX_TTL_DAYS + 10, (wide, narrow)
    rows = lambda m: {f["subject"]: f["rows"] for f in m["files"]}  # noqa: E731
    assert rows(widest) == rows(near) and rows(near)["transactions"] == 1


@pytest.mark.parametrize("start", ["1700000000", "2026-01-01", "2026-01-01 00:00:00+00:00", "2026-01-01T00:00:00"])
def test_the_backfill_command_takes_only_rfc3339_instants_with_an_offset(platform, tenant, start,
                                                                         capsys) -> None:  # type: ignore
    with pytest.raises(SystemExit) as exited:
        export_cli(["backfill", "--tenant", "acme", "--from", start, "--to", "2026-02-01T00:00:00Z"])
    assert exited.value.code == 2 and "RFC 3339" in capsys.readouterr().err


def test_personal_fields_are_excluded_by_default(platform, tenant, clock) -> None:  # type: ignore[no-untyped-def]
    add_customer(platform, "acme", "p1", email="ann@example.com", name="Ann")
    clock.advance(timedelta(minutes=5))
    manifest = platform.exports.run("acme")
    row = next(r for r in _rows(platform, manifest, "customers") if r["customerId"] == "p1")
    assert "email" not in row and "name" not in row and "personal" not in row
    platform.exports.save_settings("acme", [f for f in platform.exports.settings("acme")["excludedPersonalFields"]
                                            if f != "email"])
    add_customer(platform, "acme", "p2", email="bob@example.com", name="Bob")
    clock.advance(timedelta(minutes=5))
    manifest = platform.exports.run("acme")
    [row] = _rows(platform, manifest, "customers")
    assert row["email"] == "bob@example.com" and "name" not in row


def test_changed_profiles_are_exported_again_and_an_erasure_reaches_the_warehouse(platform, tenant,
                                                                                    clock) -> None:  # type: ignore
    platform.exports.save_settings("acme", [])  # this tenant exports every personal field
    add_customer(platform, "acme", "p1", email="ann@example.com", name="Ann")
    clock.advance(timedelta(minutes=5))
    first = platform.exports.run("acme")
    assert next(r for r in _rows(platform, first, "customers") if r["customerId"] == "p1")["name"] == "Ann"
    clock.advance(timedelta(minutes=1))
    platform.vault.erase("acme", "p1", None, reason="customer asked")
    platform.customers.add_tags("acme", "c2", ("vip",))
    clock.advance(timedelta(minutes=5))
    second = platform.exports.run("acme")
    rows = {r["customerId"]: r for r in _rows(platform, second, "customers")}
    assert set(rows) == {"p1", "c2"}  # only the changed profiles, each once
    assert rows["p1"]["erased"] is True and "name" not in rows["p1"] and "email" not in rows["p1"]
    assert rows["c2"]["tags"] == ["vip"]
    clock.advance(timedelta(minutes=5))
    assert _rows(platform, platform.exports.run("acme"), "customers") == []


def test_profiles_written_before_updated_at_existed_are_still_exported(platform, tenant, clock) -> None:
    from shared.store.layout import CUSTOMERS, customer_pk

    legacy = dict(platform.store.read(CUSTOMERS, customer_pk("acme", "c1"), "c1"))
    legacy = {k: v for k, v in legacy.items() if not k.startswith("_") and k != "updatedAt"}
    platform.store.upsert(CUSTOMERS, legacy)  # as the profile was stored by the first releases
    clock.advance(timedelta(minutes=5))
    rows = _rows(platform, platform.exports.run("acme"), "customers")
    assert sorted(r["customerId"] for r in rows) == ["c1", "c2", "c3"]  # each once, the legacy one included
    clock.advance(timedelta(minutes=5))
    assert _rows(platform, platform.exports.run("acme"), "customers") == []


def test_decrypt_cli_verifies_against_the_manifest(platform, tenant, client, clock, tmp_path, monkeypatch,
                                                   capsys) -> None:  # type: ignore[no-untyped-def]
    _orders(client, tenant, platform, ["o1"])
    clock.advance(timedelta(minutes=5))
    manifest = platform.exports.run("acme")
    root = platform.settings.data_dir / "blobs" / "exports"
    monkeypatch.setenv("ACCRUE_DATA_DIR", str(platform.settings.data_dir))
    out = tmp_path / "out"
    code = export_cli(["decrypt", "--manifest", str(root / "acme/incremental" / manifest["runId"] / "manifest.json"),
                       "--out", str(out)])
    assert code == 0
    lines = gzip.decompress((out / "transactions.ndjson.gz").read_bytes()).splitlines()
    assert len(lines) == 1


def test_rows_match_their_export_schemas(platform, tenant, client, clock, receiver=None) -> None:  # type: ignore
    from shared.schemas import REGISTRY

    _orders(client, tenant, platform, ["o1"])
    clock.advance(timedelta(minutes=5))
    manifest = platform.exports.run("acme")
    for subject in SUBJECTS:
        for row in _rows(platform, manifest, subject):
            REGISTRY.validate(row, f"export.{subject}", 1)


def _as_legacy_file(platform, manifest, subject):  # type: ignore[no-untyped-def]
    """Turn one file of a run into what runs wrote before NDJSON used client-side encryption:
    ``ACRXENC1`` under the tenant's key at ``<subject>.ndjson.gz.enc``, its manifest entry as
    that code wrote it (ciphertext SHA-256, wrapped key, ``A256GCM-STREAM``)."""
    service = platform.exports
    entry = next(f for f in manifest["files"] if f["subject"] == subject)
    plain = b"".join(service.file_plaintext(manifest["tenantId"], manifest, entry))
    stream, stats = encrypt_stream(platform.key_provider, manifest["tenantId"], subject, manifest["runId"], [plain])
    path, rows = entry["path"] + ".enc", entry["rows"]
    service.sink.put(path, b"".join(stream), overwrite=True)
    entry.clear()
    entry.update({"subject": subject, "path": path, "part": 1, "complete": True, "rows": rows,
                  "plaintextBytes": stats.plaintext_bytes, "ciphertextBytes": stats.ciphertext_bytes,
                  "plaintextSha256": stats.plaintext_sha256, "ciphertextSha256": stats.ciphertext_sha256,
                  "kek": stats.header["kek"], "wrappedKey": stats.header["wrappedKey"], "format": "ndjson+gzip",
                  "encryption": stats.header["alg"], "schema": f"export.{subject}.v1",
                  "personalFields": ["email", "name"] if subject == "customers" else []})
    manifest_path = f"acme/incremental/{manifest['runId']}/manifest.json"
    service.sink.put(manifest_path, json.dumps(manifest, indent=2, sort_keys=True).encode(), "application/json",
                     {"personaldata": "true"}, overwrite=True)
    return entry, plain


def test_ndjson_files_written_before_client_side_encryption_still_decrypt_and_are_scrubbed(
        platform, tenant, client, clock, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Files of earlier runs (ACRXENC1) keep opening: by the service, by ``accrue export
    decrypt`` beside new files, and an erasure rewrites them under client-side encryption."""
    platform.exports.save_settings("acme", [])
    add_customer(platform, "acme", "p1", email="ann@example.com", name="Ann Quuxbright")
    _orders(client, tenant, platform, ["o1"])
    clock.advance(timedelta(minutes=5))
    manifest = platform.exports.run("acme")
    old_tx, tx_plain = _as_legacy_file(platform, manifest, "transactions")
    old_cu, _ = _as_legacy_file(platform, manifest, "customers")
    assert b"".join(platform.exports.file_plaintext("acme", manifest, old_tx)) == tx_plain
    # The CLI decrypts the old files and the new ones of the same manifest.
    root = platform.settings.data_dir / "blobs" / "exports"
    monkeypatch.setenv("ACCRUE_DATA_DIR", str(platform.settings.data_dir))
    out = tmp_path / "out"
    assert export_cli(["decrypt", "--manifest", str(root / "acme/incremental" / manifest["runId"] / "manifest.json"),
                       "--out", str(out)]) == 0
    assert (out / "transactions.ndjson.gz").read_bytes() == tx_plain
    assert len(gzip.decompress((out / "orders.ndjson.gz").read_bytes()).splitlines()) == 1  # a CSE file
    # An erasure rewrites the old customers file: under client-side encryption, without Ann.
    platform.vault.erase("acme", "p1", None, reason="customer asked")
    assert platform.exports.scrub("acme", {"p1"}) == {"p1": [old_cu["path"]]}
    stored = json.loads(platform.exports.sink.read(f"acme/incremental/{manifest['runId']}/manifest.json"))
    entry = next(f for f in stored["files"] if f["subject"] == "customers")
    assert entry["encryption"] == "azure-storage-cse-v2" and "wrappedKey" not in entry
    rows = [json.loads(line) for line in
            gzip.decompress(b"".join(platform.exports.file_plaintext("acme", stored, entry))).splitlines()]
    p1 = next(r for r in rows if r["customerId"] == "p1")
    assert p1["erased"] is True and "name" not in p1
    assert platform.exports.scrub("acme", {"p1"}) == {}


def test_a_backfill_that_fails_midway_leaves_no_file_behind(platform, tenant, client, clock, tmp_path) -> None:  # type: ignore
    """An outside review: a backfill that died after its customers file left that file under a
    run no manifest lists; a retry is a new run, and the erasure finds files through manifests,
    so an erased customer's personal data stayed in it for good."""
    sink = FailingSink(tmp_path / "blobs", fail_on="transactions")
    service = ExportService(platform.store, clock, platform.key_provider, sink, vault=platform.vault)
    service.save_settings("acme", [])
    add_customer(platform, "acme", "p1", email="ann@example.com", name="Ann")
    clock.advance(timedelta(minutes=5))
    with pytest.raises(BlobUnavailable):
        service.backfill("acme", clock.now() - timedelta(days=1), clock.now())
    assert [info.path for info in sink.list("acme/backfill/")] == []
    assert service.runs("acme") == []
    sink.fail_on = ""
    again = service.backfill("acme", clock.now() - timedelta(days=1), clock.now())
    listed = {entry["path"] for entry in again["files"]} | {f"acme/backfill/{again['runId']}/manifest.json"}
    assert {info.path for info in sink.list("acme/backfill/")} == listed
