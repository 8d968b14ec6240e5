"""Exports onto Blob Storage (Azurite): a run, a blob failure midway (no watermark
moves, the next run succeeds), and the files decrypt from what Azure serves."""

from __future__ import annotations

import gzip
import hashlib
import json
import uuid
from datetime import timedelta

import pytest

from shared.blobs.azure import AzureBlobSink
from shared.blobs.port import BlobUnavailable
from shared.exports.service import ExportService
from tests.conftest import auth, drain, order_body


@pytest.fixture
def ndjson_exports(monkeypatch):  # type: ignore[no-untyped-def]
    """The NDJSON option (these tests read its files); Parquet on Azurite: the test at the end."""
    from shared.exports import service

    monkeypatch.setattr(service, "DEFAULT_FORMAT", "ndjson")


class FlakySink:
    """The Azure sink, failing the first put of the orders file half way through its stream."""

    def __init__(self, inner: AzureBlobSink) -> None:
        self.inner = inner
        self.fail = True

    def put(self, path, chunks, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.fail and ("/orders." in path or "subject=orders/" in path):
            self.fail = False

            def broken():  # type: ignore[no-untyped-def]
                for chunk in chunks:
                    yield chunk
                    raise BlobUnavailable("injected: connection reset mid-upload")

            return self.inner.put(path, broken(), *args, **kwargs)
        return self.inner.put(path, chunks, *args, **kwargs)

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)


def sdk_download(connection_string: str, container: str, path: str, keys, tenant_id: str) -> bytes:  # type: ignore
    """A blob as Microsoft's SDK decrypts it (``require_encryption`` and a key resolver): no Accrue reader."""
    from azure.storage.blob import BlobServiceClient

    from shared.exports.keys import resolver

    blob = BlobServiceClient.from_connection_string(connection_string).get_blob_client(container, path)
    blob.require_encryption = True
    blob.key_resolver_function = resolver(keys, tenant_id)
    return blob.download_blob().readall()  # type: ignore[no-any-return]


@pytest.mark.usefixtures("ndjson_exports")
def test_export_to_azurite_survives_a_failure_midway(platform, tenant, client, clock,
                                                     azurite_connection_string) -> None:
    container = "exports-" + uuid.uuid4().hex[:10]
    sink = FlakySink(AzureBlobSink(container, connection_string=azurite_connection_string, create_container=True,
                                   block_bytes=64 * 1024))
    service = ExportService(platform.store, clock, platform.key_provider, sink, chunk_size=4096)
    for number in range(30):
        client.post("/v1/orders", json=order_body("c1", f"o{number}"), headers=auth(tenant.merchant))
    drain(platform)
    clock.advance(timedelta(minutes=5))
    with pytest.raises(BlobUnavailable):
        service.run("acme")
    assert platform.store.read("exports", "acme", "state")["watermarks"] == {}
    manifest = service.run("acme")
    assert sink.inner.exists(f"acme/incremental/{manifest['runId']}/manifest.json")
    entry = next(f for f in manifest["files"] if f["subject"] == "transactions")
    plain = b"".join(service.file_plaintext("acme", manifest, entry))
    assert len(gzip.decompress(plain).splitlines()) == 30 == entry["rows"]
    # NDJSON is under the same standard encryption as Parquet: the SDK decrypts every file.
    for f in manifest["files"]:
        assert f["encryption"] == "azure-storage-cse-v2"
        sdk = sdk_download(azurite_connection_string, container, f["path"], service.export_keys, "acme")
        assert hashlib.sha256(sdk).hexdigest() == f["plaintextSha256"]
        assert len(gzip.decompress(sdk).splitlines()) == f["rows"]
    stored = json.loads(sink.inner.read(f"acme/incremental/{manifest['runId']}/manifest.json"))
    assert stored["runId"] == manifest["runId"]
    assert platform.store.read("exports", "acme", "state")["watermarks"]["transactions"] == manifest["to"]
    sink.inner.close()


@pytest.mark.usefixtures("ndjson_exports")
def test_erasure_rewrites_an_export_on_azurite(platform, tenant, client, clock, azurite_connection_string) -> None:
    """The scrub over Blob Storage: manifests found by listing (with metadata), the file and
    the manifest overwritten, and what Azure then serves holds nothing of the customer."""
    from datetime import date

    from shared.app.customers import CustomerProfile

    container = "exports-" + uuid.uuid4().hex[:10]
    sink = AzureBlobSink(container, connection_string=azurite_connection_string, create_container=True)
    service = ExportService(platform.store, clock, platform.key_provider, sink, vault=platform.vault,
                            audit=platform.audit, chunk_size=4096)
    service.save_settings("acme", [])
    for number, name in enumerate(["Zelda Quuxbright", "Olga Vantrimble"]):
        platform.customers.register("acme", CustomerProfile(customerId=f"p{number}", joinDate=date(2026, 1, 1),
                                                            name=name))
    clock.advance(timedelta(minutes=5))
    manifest = service.run("acme")
    listed = {i.path: i.metadata for i in sink.list("acme/")}
    assert listed[f"acme/incremental/{manifest['runId']}/manifest.json"] == {"personaldata": "true"}
    platform.vault.erase("acme", "p0", None, "ticket 12")
    assert service.scrub("acme", {"p0"}) == {"p0": [f"acme/incremental/{manifest['runId']}/customers.ndjson.gz"]}
    stored = json.loads(sink.read(f"acme/incremental/{manifest['runId']}/manifest.json"))
    entry = next(f for f in stored["files"] if f["subject"] == "customers")
    plain = gzip.decompress(b"".join(service.file_plaintext("acme", stored, entry)))
    assert b"Zelda" not in plain and b"Olga Vantrimble" in plain
    assert gzip.decompress(sdk_download(azurite_connection_string, container, entry["path"], service.export_keys,
                                        "acme")) == plain  # the rewrite too, by Microsoft's SDK
    assert service.scrub("acme", {"p0"}) == {}  # done: nothing more to rewrite
    sink.close()


def test_the_sdk_decrypts_a_locally_written_export_file_from_azurite(tmp_path, azurite_connection_string) -> None:
    """The local folder's client-side-encrypted bytes and encryptiondata, uploaded as they are,
    are decrypted by azure-storage-blob's own download path with a key resolver: the local
    format is the SDK's. And the Azure adapter's encrypted put reads back the same way."""
    import os

    from azure.storage.blob import BlobServiceClient

    from shared.blobs import cse
    from shared.blobs.local import LocalBlobSink
    from shared.exports.keys import ExportKek, resolver
    from shared.keys.local import LocalKeyring

    keyring = LocalKeyring(tmp_path / "export-keyring.json")
    local = LocalBlobSink(tmp_path / "blobs")
    data = os.urandom(cse.REGION * 2 + 1234)
    local.put("acme/subject=orders/date=2026-12-04/r.parquet", [data], kek=ExportKek(keyring, "acme"))
    [info] = local.list("acme/")
    container = "cse-" + uuid.uuid4().hex[:10]
    service = BlobServiceClient.from_connection_string(azurite_connection_string)
    service.create_container(container)
    raw = service.get_blob_client(container, info.path)
    raw.upload_blob(local.read(info.path), metadata={cse.METADATA_KEY: info.metadata[cse.METADATA_KEY]})
    reader = service.get_blob_client(container, info.path)
    reader.require_encryption = True
    reader.key_resolver_function = resolver(keyring, "acme")
    assert reader.download_blob().readall() == data

    sink = AzureBlobSink(container, connection_string=azurite_connection_string)
    sink.put("acme/direct.parquet", [data[:5000], data[5000:]], kek=ExportKek(keyring, "acme"))
    assert b"".join(sink.open("acme/direct.parquet", resolver(keyring, "acme"))) == data
    assert sink.read("acme/direct.parquet") != data  # stored encrypted


def test_parquet_export_on_azurite_survives_a_failure_and_is_scrubbed_on_erasure(
        platform, tenant, client, clock, azurite_connection_string) -> None:
    """Parquet through the SDK's own client-side encryption on Blob Storage: a put dying midway
    moves no watermark, the redo exports every entry once, and an erasure rewrites the
    customers file so what Azure then serves holds nothing of the customer."""
    from datetime import date

    import pyarrow as pa
    import pyarrow.parquet as pq

    from shared.app.customers import CustomerProfile
    from shared.exports.keys import resolver

    container = "exports-" + uuid.uuid4().hex[:10]
    sink = FlakySink(AzureBlobSink(container, connection_string=azurite_connection_string, create_container=True))
    service = ExportService(platform.store, clock, platform.key_provider, sink, vault=platform.vault,
                            audit=platform.audit)
    service.save_settings("acme", [])
    platform.customers.register("acme", CustomerProfile(customerId="p0", joinDate=date(2026, 1, 1),
                                                        name="Zelda Quuxbright"))
    for number in range(10):
        client.post("/v1/orders", json=order_body("c1", f"o{number}"), headers=auth(tenant.merchant))
    drain(platform)
    clock.advance(timedelta(minutes=5))
    with pytest.raises(BlobUnavailable):
        service.run("acme")
    assert platform.store.read("exports", "acme", "state")["watermarks"] == {}
    manifest = service.run("acme")
    keys = resolver(service.export_keys, "acme")

    def table(entry):  # type: ignore[no-untyped-def]
        return pq.read_table(pa.BufferReader(b"".join(sink.inner.open(entry["path"], keys))))

    [transactions] = [f for f in manifest["files"] if f["subject"] == "transactions"]
    assert table(transactions).num_rows == 10 == transactions["rows"]
    platform.vault.erase("acme", "p0", None, "ticket 12")
    [customers] = [f for f in manifest["files"] if f["subject"] == "customers"]
    assert service.scrub("acme", {"p0"}) == {"p0": [customers["path"]]}
    rows = {r["customerId"]: r for r in table(customers).to_pylist()}
    assert rows["p0"]["name"] is None and rows["p0"]["erased"] is True
    assert b"Zelda" not in sink.inner.read(customers["path"])
    sink.inner.close()
