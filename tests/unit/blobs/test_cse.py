"""Client-side encryption v2 (shared/blobs/cse.py) is the SDK's format: the same content
key gives the same bytes and the same ``encryptiondata`` as ``azure-storage-blob``'s own
encryption, the SDK's decryption opens what we write, and tampering is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from azure.storage.blob import _encryption as sdk

from shared.blobs import cse
from shared.blobs.local import LocalBlobSink
from shared.exports.keys import ExportKek, resolver
from shared.keys.local import LocalKeyring


@pytest.fixture
def keyring(tmp_path):  # type: ignore[no-untyped-def]
    return LocalKeyring(tmp_path / "export-keyring.json")


@pytest.mark.parametrize("size", [0, 1, cse.REGION - 1, cse.REGION, cse.REGION + 1, 2 * cse.REGION + 17])
def test_same_bytes_and_metadata_as_the_sdk(keyring, monkeypatch, size) -> None:  # type: ignore
    data = os.urandom(size)
    cek = os.urandom(32)
    monkeypatch.setattr(sdk.os, "urandom", lambda n: cek if n == 32 else os.urandom(n))

    class Fixed(ExportKek):
        # The SDK and we wrap once each; AES key wrap is deterministic, so one kek serves both.
        pass

    theirs_meta, theirs = sdk.encrypt_blob(data, Fixed(keyring, "acme"), "2.0")
    ours_meta, ours = cse.encrypt([data[i:i + 100_000] for i in range(0, size, 100_000)],
                                  Fixed(keyring, "acme"), cek)
    assert b"".join(ours) == theirs
    assert ours_meta == theirs_meta


def test_the_sdk_decrypts_what_the_local_adapter_writes(keyring, tmp_path) -> None:  # type: ignore
    sink = LocalBlobSink(tmp_path / "blobs")
    data = os.urandom(cse.REGION + 5000)
    sink.put("acme/f.parquet", [data], kek=ExportKek(keyring, "acme"))
    stored = sink.read("acme/f.parquet")
    [info] = sink.list("acme/")
    metadata = info.metadata[cse.METADATA_KEY]
    # The SDK's own download-side decryption, with a key resolver as a warehouse would give it.
    plain = sdk.decrypt_blob(True, None, resolver(keyring, "acme"), stored, 0, len(data),
                             {"x-ms-meta-encryptiondata": metadata,
                              "content-range": f"bytes 0-{len(stored) - 1}/{len(stored)}"},
                             nonce_validator=sdk._GCMRegionNonceValidator())
    assert plain == data
    assert b"".join(sink.open("acme/f.parquet", resolver(keyring, "acme"))) == data


def test_tampering_a_region_or_the_wrong_key_is_refused(keyring, tmp_path) -> None:  # type: ignore
    sink = LocalBlobSink(tmp_path / "blobs")
    sink.put("acme/f", [b"x" * 5000], kek=ExportKek(keyring, "acme"))
    metadata = sink.list("acme/")[0].metadata[cse.METADATA_KEY]
    stored = bytearray(sink.read("acme/f"))
    stored[-1] ^= 1
    with pytest.raises(cse.ClientDecryptError):
        b"".join(cse.decrypt([bytes(stored)], metadata, resolver(keyring, "acme")))
    with pytest.raises(cse.ClientDecryptError):  # another tenant's export key
        b"".join(cse.decrypt([sink.read("acme/f")], metadata, resolver(keyring, "globex")))


def test_rotation_keeps_files_already_written(keyring, tmp_path) -> None:  # type: ignore
    sink = LocalBlobSink(tmp_path / "blobs")
    sink.put("acme/old", b"before", kek=ExportKek(keyring, "acme"))
    keyring.rotate("acme")
    sink.put("acme/new", b"after", kek=ExportKek(keyring, "acme"))
    kids = {i.path: i.metadata[cse.METADATA_KEY] for i in sink.list("acme/")}
    assert '"KeyId": "local:acme/v1"' in kids["acme/old"] and '"KeyId": "local:acme/v2"' in kids["acme/new"]
    assert b"".join(sink.open("acme/old", resolver(keyring, "acme"))) == b"before"
    assert b"".join(sink.open("acme/new", resolver(keyring, "acme"))) == b"after"


def test_the_library_version_is_the_sdks_without_importing_the_sdk(tmp_path) -> None:  # type: ignore
    from azure.storage.blob._version import VERSION

    assert cse._library() == "Python " + VERSION
    # A process writing encrypted files to the local folder never imports the SDK (~0.4 s of CPU).
    script = ("import sys; from shared.blobs import cse; from shared.exports.keys import ExportKek;"
              "from shared.keys.local import LocalKeyring;"
              f"meta, body = cse.encrypt([b'x'], ExportKek(LocalKeyring({str(tmp_path / 'k.json')!r}), 'acme'));"
              "assert b''.join(body) and 'Python ' in meta;"
              "print(sorted(m for m in sys.modules if m.startswith('azure.storage.blob')))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.strip() == "[]", out.stdout
