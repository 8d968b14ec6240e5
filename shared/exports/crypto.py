"""The encrypted export file format, ``ACRXENC1`` (version 1): chunked AES-256-GCM.

Kept to read NDJSON files written before NDJSON exports moved to Azure Storage
client-side encryption v2 (``shared.blobs.cse``, as Parquet files); no run writes it now.

Each file has its own random 256-bit data key (DEK), wrapped by the tenant's KEK
through the key-provider port. Layout::

    magic      8 bytes   b"ACRXENC1"
    hlen       4 bytes   big-endian length of the header
    header     hlen bytes UTF-8 JSON, keys sorted:
                 v=1, alg="A256GCM-STREAM", chunkSize (plaintext bytes per chunk),
                 tenantId, subject, runId,
                 kek {keyId, keyVersion, alg}, wrappedKey (base64),
                 noncePrefix (base64 of 8 random bytes)
    chunk 0 .. chunk n-1

Chunk ``i`` is ``AES-256-GCM(DEK, nonce, plaintext_i, aad)`` (ciphertext and
16-byte tag) with

* ``nonce = noncePrefix (8 bytes) || i (4 bytes, big-endian)``: unique per chunk
  (the key is never used for another file);
* ``aad = SHA-256(magic || hlen || header) || i (8 bytes, big-endian) || last``,
  ``last`` one byte, 1 for the final chunk and 0 otherwise.

Every chunk but the last holds exactly ``chunkSize`` plaintext bytes; the last
holds 0..chunkSize (an empty file is one empty last chunk). So:

* reordering or dropping chunks breaks the counter in the AAD/nonce;
* truncation at a chunk boundary leaves a final chunk sealed with ``last=0``,
  which fails when opened as the last one; truncation elsewhere fails its tag;
* the header (tenant, subject, run, wrapped key) is bound into every chunk, and
  the reader checks tenant, subject and run against what it expects (the
  manifest): a file moved to another tenant, subject or run does not open.

Memory is bounded by one chunk on both sides. The plaintext of an export file is
gzip-compressed newline-delimited JSON.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.errors import AccrueError
from shared.keys.port import KeyProvider, WrappedKey

MAGIC = b"ACRXENC1"
ALG = "A256GCM-STREAM"
DEFAULT_CHUNK = 64 * 1024
TAG = 16
MAX_HEADER = 64 * 1024


class ExportDecryptError(AccrueError):
    """The file is not an intact export of the expected tenant, subject and run."""

    code = "export-decrypt-failed"
    status = 422


@dataclass
class SealStats:
    """Filled in as the stream is consumed."""

    header: dict[str, Any]
    plaintext_bytes: int = 0
    ciphertext_bytes: int = 0
    plaintext_sha256: str = ""
    ciphertext_sha256: str = ""


def _aad(header_digest: bytes, index: int, last: bool) -> bytes:
    return header_digest + struct.pack(">QB", index, 1 if last else 0)


def _nonce(prefix: bytes, index: int) -> bytes:
    if index >= 2**32:
        raise ValueError("export file too large: more than 2^32 chunks")
    return prefix + struct.pack(">I", index)


def encrypt_stream(keys: KeyProvider, tenant_id: str, subject: str, run_id: str, plaintext: Iterable[bytes],
                   chunk_size: int = DEFAULT_CHUNK) -> tuple[Iterator[bytes], SealStats]:
    """The encrypted file as a stream of bytes, and its stats (complete once the stream is consumed)."""
    keys.ensure_tenant_key(tenant_id)
    dek = AESGCM.generate_key(bit_length=256)
    wrapped = keys.wrap(tenant_id, dek)
    prefix = os.urandom(8)
    header = {
        "v": 1, "alg": ALG, "chunkSize": chunk_size, "tenantId": tenant_id, "subject": subject, "runId": run_id,
        "kek": {"keyId": wrapped.key_id, "keyVersion": wrapped.key_version, "alg": wrapped.algorithm},
        "wrappedKey": base64.b64encode(wrapped.ciphertext).decode("ascii"),
        "noncePrefix": base64.b64encode(prefix).decode("ascii"),
    }
    header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    preamble = MAGIC + struct.pack(">I", len(header_bytes)) + header_bytes
    stats = SealStats(header)

    def generate() -> Iterator[bytes]:
        aes = AESGCM(dek)
        digest = hashlib.sha256(preamble).digest()
        plain_hash, cipher_hash = hashlib.sha256(), hashlib.sha256()
        cipher_hash.update(preamble)
        stats.ciphertext_bytes = len(preamble)
        yield preamble
        buffer = bytearray()
        index = 0

        def seal(block: bytes, last: bool) -> bytes:
            nonlocal index
            sealed = aes.encrypt(_nonce(prefix, index), block, _aad(digest, index, last))
            index += 1
            cipher_hash.update(sealed)
            stats.ciphertext_bytes += len(sealed)
            return sealed

        for piece in plaintext:
            if not piece:
                continue
            plain_hash.update(piece)
            stats.plaintext_bytes += len(piece)
            buffer += piece
            # Seal a full chunk only once more bytes follow it: then it is not the last.
            while len(buffer) > chunk_size:
                block = bytes(buffer[:chunk_size])
                del buffer[:chunk_size]
                yield seal(block, last=False)
        yield seal(bytes(buffer), last=True)
        stats.plaintext_sha256 = plain_hash.hexdigest()
        stats.ciphertext_sha256 = cipher_hash.hexdigest()

    return generate(), stats


def read_header(stream: Iterator[bytes]) -> tuple[dict[str, Any], bytes, bytearray]:
    """Header dict, the preamble bytes, and what was read past it."""
    buffer = bytearray()

    def fill(size: int, what: str) -> None:
        while len(buffer) < size:
            try:
                buffer.extend(next(stream))
            except StopIteration:
                raise ExportDecryptError(f"export file truncated inside its {what}") from None

    fill(12, "preamble")
    if bytes(buffer[:8]) != MAGIC:
        raise ExportDecryptError("not an Accrue export file (bad magic)")
    (length,) = struct.unpack(">I", bytes(buffer[8:12]))
    if length > MAX_HEADER:
        raise ExportDecryptError("export header too large")
    fill(12 + length, "header")
    preamble = bytes(buffer[:12 + length])
    try:
        header = json.loads(preamble[12:])
    except ValueError:
        raise ExportDecryptError("export header is not JSON") from None
    if not isinstance(header, dict) or header.get("v") != 1 or header.get("alg") != ALG:
        raise ExportDecryptError("unsupported export format")
    return header, preamble, buffer[12 + length:]


def decrypt_stream(keys: KeyProvider, chunks: Iterable[bytes], *, tenant_id: str, subject: str | None = None,
                   run_id: str | None = None) -> Iterator[bytes]:
    """The plaintext of an export file, chunk by chunk; raises ``ExportDecryptError``
    on any tampering, truncation, reordering, or a file of another tenant/subject/run."""
    stream = iter(chunks)
    header, preamble, buffer = read_header(stream)
    expected = {"tenantId": tenant_id, "subject": subject, "runId": run_id}
    for key, value in expected.items():
        if value is not None and header.get(key) != value:
            raise ExportDecryptError(f"the file belongs to {key} {header.get(key)!r}, not {value!r}")
    kek = header["kek"]
    try:
        dek = keys.unwrap(WrappedKey(header["tenantId"], kek["keyId"], kek["keyVersion"], kek["alg"],
                                     base64.b64decode(header["wrappedKey"])))
    except AccrueError as exc:
        raise ExportDecryptError(f"the file's data key does not unwrap: {exc.message}") from None
    aes = AESGCM(dek)
    digest = hashlib.sha256(preamble).digest()
    prefix = base64.b64decode(header["noncePrefix"])
    sealed_size = int(header["chunkSize"]) + TAG
    index = 0

    def open_chunk(block: bytes, last: bool) -> bytes:
        try:
            return aes.decrypt(_nonce(prefix, index), block, _aad(digest, index, last))
        except InvalidTag:
            raise ExportDecryptError(f"chunk {index} does not authenticate: the file was altered, reordered "
                                     "or truncated") from None

    for piece in stream:
        buffer += piece
        while len(buffer) > sealed_size:
            block = bytes(buffer[:sealed_size])
            del buffer[:sealed_size]
            yield open_chunk(block, last=False)
            index += 1
    if len(buffer) < TAG:
        raise ExportDecryptError("export file truncated: its last chunk is missing")
    yield open_chunk(bytes(buffer), last=True)
