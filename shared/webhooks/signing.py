"""Standard Webhooks signatures and the sealing of endpoint secrets.

A secret is ``whsec_`` + base64 of 32 random bytes. A delivery's signature is
``v1,<base64 of HMAC-SHA256(secret bytes, "<webhook-id>.<webhook-timestamp>.<body>")>``;
during a rotation's grace period the header carries one such signature per
live secret, space-separated, newest first (receivers accept any that matches):
two at most, since a rotation retires every secret but the one it replaces.

A secret rests only sealed: AES-256-GCM under a fresh data key, the data key
wrapped by the tenant's KEK through the key-provider port, the associated data
binding tenant, endpoint and secret version (a sealed secret copied to another
endpoint or tenant does not open). ``SecretCache`` keeps opened secrets in
memory for a short time so a delivery round does not unwrap per message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
import time
from typing import Any, Iterable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.keys.port import KeyProvider, WrappedKey

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def format_secret(raw: bytes) -> str:
    return SECRET_PREFIX + base64.b64encode(raw).decode("ascii")


def sign(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


# A rotation retires all but the newest secret and its predecessor (shared.webhooks.service).
MAX_SIGNATURES = 2


def signature_header(live_secrets: Iterable[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    signatures = [sign(s, msg_id, timestamp, body) for s in live_secrets]
    assert 1 <= len(signatures) <= MAX_SIGNATURES, f"a message carries 1 to {MAX_SIGNATURES} signatures"
    return " ".join(signatures)


def _aad(tenant_id: str, endpoint_id: str, version: int) -> bytes:
    return f"accrue-webhook-secret/v1|{tenant_id}|{endpoint_id}|{version}".encode()


def seal_secret(keys: KeyProvider, tenant_id: str, endpoint_id: str, version: int, raw: bytes) -> dict[str, Any]:
    keys.ensure_tenant_key(tenant_id)
    dek = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    sealed = AESGCM(dek).encrypt(nonce, raw, _aad(tenant_id, endpoint_id, version))
    wrapped = keys.wrap(tenant_id, dek)
    return {
        "version": version, "alg": "A256GCM", "nonce": _b64(nonce), "ciphertext": _b64(sealed),
        "wrappedKey": {"keyId": wrapped.key_id, "keyVersion": wrapped.key_version, "alg": wrapped.algorithm,
                       "ciphertext": _b64(wrapped.ciphertext)},
    }


def open_secret(keys: KeyProvider, tenant_id: str, endpoint_id: str, sealed: dict[str, Any]) -> bytes:
    w = sealed["wrappedKey"]
    dek = keys.unwrap(WrappedKey(tenant_id, w["keyId"], w["keyVersion"], w["alg"], base64.b64decode(w["ciphertext"])))
    return AESGCM(dek).decrypt(base64.b64decode(sealed["nonce"]), base64.b64decode(sealed["ciphertext"]),
                               _aad(tenant_id, endpoint_id, sealed["version"]))


class SecretCache:
    """Opened secrets by (tenant, endpoint, version, ciphertext digest), for ``ttl`` seconds."""

    def __init__(self, ttl: float = 300.0, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._items: dict[tuple[str, str, int, str], tuple[float, bytes]] = {}
        self._lock = threading.Lock()

    def get(self, keys: KeyProvider, tenant_id: str, endpoint_id: str, sealed: dict[str, Any]) -> bytes:
        key = (tenant_id, endpoint_id, sealed["version"], hashlib.sha256(sealed["ciphertext"].encode()).hexdigest())
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        raw = open_secret(keys, tenant_id, endpoint_id, sealed)
        with self._lock:
            if len(self._items) >= self.size:
                self._items.clear()
            self._items[key] = (now + self.ttl, raw)
        return raw

    def forget(self, tenant_id: str, endpoint_id: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k[0] == tenant_id and k[1] == endpoint_id]:
                del self._items[key]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
