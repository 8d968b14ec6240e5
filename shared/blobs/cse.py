"""Azure Storage client-side encryption, version 2.0, as ``azure-storage-blob`` writes it.

Why this format: a warehouse decrypts an export with Microsoft's own SDK (Python,
.NET, Java: ``require_encryption=True`` and a key resolver) and no Accrue code, so
files must be exactly what the SDK writes. On Azure the SDK itself encrypts
(``shared.blobs.azure``); this module writes the same bytes for the local folder
adapter and reads them back for ``accrue export decrypt``. A test holds both sides
to the SDK: same content key -> the same bytes and the same ``encryptiondata``
metadata JSON, and a file written here is decrypted by the SDK from Azurite.

The format (``azure.storage.blob._encryption``, protocol ``2.0``):

* a fresh 256-bit content-encryption key (CEK) per blob;
* the plaintext cut in regions of 4 MiB (the last may be shorter; an empty blob
  has no region); region ``i`` is ``nonce || AES-256-GCM(CEK, nonce, region) || tag``
  with ``nonce = i`` as 12 bytes big-endian and no associated data;
* the CEK, prefixed with ``b"2.0\\0\\0\\0\\0\\0"``, wrapped by a key-encryption key
  (KEK: ``wrap_key``, ``get_kid``, ``get_key_wrap_algorithm``, ``unwrap_key``);
* blob metadata ``encryptiondata``: the JSON below (key order as the SDK's
  ``OrderedDict``, ``json.dumps`` default separators).

What the format does not protect, and what covers it: a file cut exactly at a region
boundary still decrypts (v2.0 has no "last region" flag) and metadata is not bound to
the bytes. Export manifests carry each file's ciphertext and plaintext SHA-256 and row
count, which readers (``accrue export decrypt``, the loaders in docs/exports.md) check.

Memory is bounded by one region (4 MiB) on both sides.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.errors import AccrueError

METADATA_KEY = "encryptiondata"
PROTOCOL = "2.0"
ALGORITHM = "AES_GCM_256"
REGION = 4 * 1024 * 1024
NONCE = 12
TAG = 16
VERSION_PREFIX = PROTOCOL.encode().ljust(8, b"\0")


class KeyEncryptionKey(Protocol):
    """The SDK's key-encryption-key interface (``azure.storage.blob._encryption.KeyEncryptionKey``)."""

    def wrap_key(self, key: bytes) -> bytes: ...

    def unwrap_key(self, key: bytes, algorithm: str) -> bytes: ...

    def get_kid(self) -> str: ...

    def get_key_wrap_algorithm(self) -> str: ...


KeyResolver = Callable[[str], KeyEncryptionKey]


class ClientDecryptError(AccrueError):
    """The blob is not intact client-side-encrypted data under a key we can resolve."""

    code = "client-decrypt-failed"
    status = 422


@functools.cache
def _library() -> str:
    """What the SDK writes as KeyWrappingMetadata: its own version, so local files match
    byte for byte. Read from the SDK's ``_version.py`` without importing the SDK: importing
    ``azure.storage.blob`` costs ~0.4 s of CPU, which a process exporting to the local
    folder otherwise pays for one string (a test holds this to the SDK's ``VERSION``)."""
    spec = importlib.util.find_spec("azure.storage.blob")
    assert spec is not None and spec.origin, "azure-storage-blob is a dependency"
    found = re.search(r'^VERSION = "([^"]+)"$', Path(spec.origin).with_name("_version.py").read_text(), re.M)
    assert found, "the SDK's _version.py names its VERSION"
    return "Python " + found.group(1)


def metadata_json(kek: KeyEncryptionKey, cek: bytes) -> str:
    """The ``encryptiondata`` metadata value for ``cek`` wrapped by ``kek``."""
    assert len(cek) == 32
    wrapped = kek.wrap_key(VERSION_PREFIX + cek)
    import base64  # noqa: PLC0415

    data: OrderedDict[str, Any] = OrderedDict()
    data["WrappedContentKey"] = OrderedDict(
        [("KeyId", kek.get_kid()), ("EncryptedKey", base64.b64encode(wrapped).decode("utf-8")),
         ("Algorithm", kek.get_key_wrap_algorithm())])
    data["EncryptionAgent"] = OrderedDict([("Protocol", PROTOCOL), ("EncryptionAlgorithm", ALGORITHM)])
    data["EncryptedRegionInfo"] = OrderedDict([("DataLength", REGION), ("NonceLength", NONCE)])
    data["KeyWrappingMetadata"] = OrderedDict({"EncryptionLibrary": _library()})
    data["EncryptionMode"] = "FullBlob"
    return json.dumps(data)


def encrypt(chunks: Iterable[bytes], kek: KeyEncryptionKey, cek: bytes | None = None) -> tuple[str, Iterator[bytes]]:
    """(metadata JSON, encrypted bytes as a stream) for ``chunks``; ``cek`` only for tests."""
    cek = cek if cek is not None else os.urandom(32)
    metadata = metadata_json(kek, cek)
    return metadata, _seal_regions(chunks, cek)


def _seal_regions(chunks: Iterable[bytes], cek: bytes) -> Iterator[bytes]:
    aes = AESGCM(cek)
    buffer = bytearray()
    index = 0
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= REGION:
            region = bytes(buffer[:REGION])
            del buffer[:REGION]
            nonce = index.to_bytes(NONCE, "big")
            yield nonce + aes.encrypt(nonce, region, None)
            index += 1
    if buffer:
        nonce = index.to_bytes(NONCE, "big")
        yield nonce + aes.encrypt(nonce, bytes(buffer), None)


def parse_metadata(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
        agent = data["EncryptionAgent"]
        region = data["EncryptedRegionInfo"]
        wrapped = data["WrappedContentKey"]
        ok = (agent["Protocol"] == PROTOCOL and agent["EncryptionAlgorithm"] == ALGORITHM
              and region["NonceLength"] == NONCE and int(region["DataLength"]) > 0
              and isinstance(wrapped["KeyId"], str) and isinstance(wrapped["EncryptedKey"], str))
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise ClientDecryptError("the blob's encryptiondata is not Azure client-side encryption v2.0")
    return data  # type: ignore[no-any-return]


def unwrap_cek(metadata: dict[str, Any], resolver: KeyResolver) -> bytes:
    import base64  # noqa: PLC0415

    wrapped = metadata["WrappedContentKey"]
    kek = resolver(wrapped["KeyId"])
    if kek is None or kek.get_kid() != wrapped["KeyId"]:
        raise ClientDecryptError(f"no key-encryption key {wrapped['KeyId']!r}")
    try:
        plain = kek.unwrap_key(base64.b64decode(wrapped["EncryptedKey"]), wrapped["Algorithm"])
    except AccrueError as exc:
        raise ClientDecryptError(f"the blob's content key does not unwrap: {exc.message}") from None
    if plain[:len(VERSION_PREFIX)] != VERSION_PREFIX or len(plain) != len(VERSION_PREFIX) + 32:
        raise ClientDecryptError("the blob's wrapped key is not a v2.0 content key")
    return plain[len(VERSION_PREFIX):]


def decrypt(chunks: Iterable[bytes], metadata: str, resolver: KeyResolver) -> Iterator[bytes]:
    """The plaintext of an encrypted blob, region by region (ClientDecryptError on tampering)."""
    data = parse_metadata(metadata)
    cek = unwrap_cek(data, resolver)
    aes = AESGCM(cek)
    sealed = NONCE + int(data["EncryptedRegionInfo"]["DataLength"]) + TAG
    buffer = bytearray()
    index = 0

    def open_region(block: bytes) -> bytes:
        nonce = index.to_bytes(NONCE, "big")
        if len(block) < NONCE + TAG or block[:NONCE] != nonce:
            raise ClientDecryptError(f"region {index} is out of place or truncated")
        try:
            return aes.decrypt(nonce, block[NONCE:], None)
        except InvalidTag:
            raise ClientDecryptError(f"region {index} does not authenticate: the blob was altered") from None

    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= sealed:
            block = bytes(buffer[:sealed])
            del buffer[:sealed]
            yield open_region(block)
            index += 1
    if buffer:
        yield open_region(bytes(buffer))
