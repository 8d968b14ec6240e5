"""Field encryption of customers' personal data, and the bounded data-key cache.

Each customer has one data key (DEK): 32 random bytes, stored only wrapped by the
tenant's KEK (``KeyProvider``), under a random ``dekId``. Each personal field is
sealed on its own with AES-256-GCM into a text envelope::

    acr1.A256GCM.<dekId>.<kekVersion>.<base64url(nonce[12] || ciphertext || tag[16])>

``acr1`` is the envelope version, ``A256GCM`` the algorithm, ``dekId`` the data
key, ``kekVersion`` the KEK version that wrapped it when the field was sealed.
The associated data binds the header to where the value belongs::

    acr1.A256GCM.<dekId>.<kekVersion>|<tenantId>|<customerId>|<field>

so a ciphertext moved to another customer or field, or a header edited, fails
the GCM tag check (``CiphertextInvalid``), as does a truncated or forged one.
A value sealed with another customer's data key fails before decryption
(``WrongDataKey``): the header names a ``dekId`` that is not this customer's.
Values are JSON, so dates and addresses round-trip.

Unwrapped DEKs are cached (``DekCache``): bounded LRU, short TTL, evicted on
erasure. The cache never prints its keys (``repr`` hides them), and nothing in
this package logs a key or a plaintext.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
import time
from collections import OrderedDict
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.errors import AccrueError

ENVELOPE_VERSION = "acr1"
ALGORITHM = "A256GCM"
NONCE_BYTES = 12
TAG_BYTES = 16
DEK_BYTES = 32


class CiphertextInvalid(AccrueError):
    """Forged, truncated, moved to another customer/field, or not an envelope at all."""

    code = "ciphertext-invalid"
    status = 422


class WrongDataKey(CiphertextInvalid):
    code = "wrong-data-key"


def new_dek() -> bytes:
    return os.urandom(DEK_BYTES)


def new_dek_id() -> str:
    return binascii.hexlify(os.urandom(12)).decode()


def _header(dek_id: str, kek_version: str) -> str:
    return f"{ENVELOPE_VERSION}.{ALGORITHM}.{dek_id}.{kek_version}"


def _aad(header: str, tenant_id: str, customer_id: str, field: str) -> bytes:
    return f"{header}|{tenant_id}|{customer_id}|{field}".encode()


def seal(dek: bytes, dek_id: str, kek_version: str, tenant_id: str, customer_id: str, field: str,
         value: Any) -> str:
    header = _header(dek_id, kek_version)
    nonce = os.urandom(NONCE_BYTES)
    plaintext = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    sealed = AESGCM(dek).encrypt(nonce, plaintext, _aad(header, tenant_id, customer_id, field))
    return f"{header}.{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"


def parse_header(envelope: Any) -> tuple[str, str, str, bytes]:
    """(header, dekId, kekVersion, payload) of an envelope, or ``CiphertextInvalid``."""
    if not isinstance(envelope, str) or len(envelope) > 100_000:
        raise CiphertextInvalid("the value is not an encrypted field")
    parts = envelope.split(".")
    if len(parts) != 5:
        raise CiphertextInvalid("the encrypted field is truncated or malformed (expected 5 parts)")
    version, algorithm, dek_id, kek_version, body = parts
    if version != ENVELOPE_VERSION:
        raise CiphertextInvalid(f"unknown envelope version {version[:10]!r}; this build reads {ENVELOPE_VERSION}")
    if algorithm != ALGORITHM:
        raise CiphertextInvalid(f"unknown algorithm {algorithm[:20]!r}; expected {ALGORITHM}")
    if not dek_id or not kek_version:
        raise CiphertextInvalid("the encrypted field names no data key")
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise CiphertextInvalid("the encrypted field's payload is not base64url") from None
    if len(payload) < NONCE_BYTES + TAG_BYTES:
        raise CiphertextInvalid("the encrypted field is truncated")
    return _header(dek_id, kek_version), dek_id, kek_version, payload


def open_sealed(dek: bytes, dek_id: str, tenant_id: str, customer_id: str, field: str, envelope: Any) -> Any:
    header, envelope_dek_id, _, payload = parse_header(envelope)
    if envelope_dek_id != dek_id:
        raise WrongDataKey(f"the field {field!r} was sealed with another data key than customer "
                           f"{customer_id!r}'s")
    try:
        plaintext = AESGCM(dek).decrypt(payload[:NONCE_BYTES], payload[NONCE_BYTES:],
                                        _aad(header, tenant_id, customer_id, field))
    except InvalidTag:
        raise CiphertextInvalid(f"the field {field!r} does not authenticate: forged, truncated, or moved "
                                "from another customer or field") from None
    return json.loads(plaintext)


class DekCache:
    """Unwrapped data keys, in memory only: at most ``size`` keys, each for ``ttl`` seconds."""

    def __init__(self, size: int = 1024, ttl: float = 120.0) -> None:
        self._size = size
        self._ttl = ttl
        self._lock = threading.Lock()
        self._keys: OrderedDict[tuple[str, str], tuple[float, str, bytes]] = OrderedDict()

    def __repr__(self) -> str:  # never show a key
        return f"DekCache(size={self._size}, ttl={self._ttl}, entries={len(self._keys)})"

    def get(self, tenant_id: str, customer_id: str, dek_id: str) -> bytes | None:
        now = time.monotonic()
        with self._lock:
            hit = self._keys.get((tenant_id, customer_id))
            if hit is None:
                return None
            if now - hit[0] >= self._ttl or hit[1] != dek_id:
                del self._keys[(tenant_id, customer_id)]
                return None
            self._keys.move_to_end((tenant_id, customer_id))
            return hit[2]

    def put(self, tenant_id: str, customer_id: str, dek_id: str, dek: bytes) -> None:
        with self._lock:
            self._keys[(tenant_id, customer_id)] = (time.monotonic(), dek_id, dek)
            self._keys.move_to_end((tenant_id, customer_id))
            while len(self._keys) > self._size:
                self._keys.popitem(last=False)

    def evict(self, tenant_id: str, customer_id: str) -> None:
        with self._lock:
            self._keys.pop((tenant_id, customer_id), None)

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()

    def __len__(self) -> int:
        return len(self._keys)
