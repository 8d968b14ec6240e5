"""Sealing of per-experiment secrets before they are stored.

``SecretSealer`` is the seam: the lifecycle service seals the HMAC key of an
A/B experiment before writing it into the experiment document and unseals it
when the provider loads the experiment. ``PlainSealer`` stores the bytes
base64-encoded and marked ``plain:``; an implementation over the key-provider
port (the tenant's KEK wrapping the secret) drops in without changing the
service, and documents sealed by it are recognised by their own prefix.

``KeyProviderSealer`` is that implementation, and the one the platform uses:
the secret is encrypted with AES-256-GCM under a fresh data key, the data key is
wrapped by the tenant's KEK through the key-provider port (local keyring or Key
Vault), and the associated data binds the tenant, so a sealed secret copied
into another tenant's document does not open. Nothing that ``seal`` returns
reveals the secret without the KEK.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.keys.port import KeyProvider, WrappedKey


class SecretSealer(Protocol):
    def seal(self, tenant_id: str, secret: bytes) -> str: ...

    def unseal(self, tenant_id: str, sealed: str) -> bytes: ...


class PlainSealer:
    """Encoding only, no encryption: for the embedded default until a KEK-backed sealer is wired in."""

    PREFIX = "plain:"

    def seal(self, tenant_id: str, secret: bytes) -> str:
        return self.PREFIX + base64.b64encode(secret).decode("ascii")

    def unseal(self, tenant_id: str, sealed: str) -> bytes:
        if not sealed.startswith(self.PREFIX):
            raise ValueError("secret was sealed by another sealer")
        return base64.b64decode(sealed[len(self.PREFIX):])


class KeyProviderSealer:
    """Envelope encryption under the tenant's KEK (see the module docstring)."""

    PREFIX = "kek1:"

    def __init__(self, keys: KeyProvider) -> None:
        self._keys = keys

    @staticmethod
    def _aad(tenant_id: str) -> bytes:
        return f"accrue-experiment-secret/v1|{tenant_id}".encode()

    def seal(self, tenant_id: str, secret: bytes) -> str:
        self._keys.ensure_tenant_key(tenant_id)
        dek = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(12)
        ciphertext = AESGCM(dek).encrypt(nonce, secret, self._aad(tenant_id))
        wrapped = self._keys.wrap(tenant_id, dek)
        envelope = {"keyId": wrapped.key_id, "keyVersion": wrapped.key_version, "alg": wrapped.algorithm,
                    "wrapped": _b64(wrapped.ciphertext), "nonce": _b64(nonce), "ciphertext": _b64(ciphertext)}
        return self.PREFIX + _b64(json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode())

    def unseal(self, tenant_id: str, sealed: str) -> bytes:
        if not sealed.startswith(self.PREFIX):
            raise ValueError("secret was sealed by another sealer")
        envelope = json.loads(base64.b64decode(sealed[len(self.PREFIX):]))
        dek = self._keys.unwrap(WrappedKey(tenant_id, envelope["keyId"], envelope["keyVersion"], envelope["alg"],
                                           base64.b64decode(envelope["wrapped"])))
        try:
            return AESGCM(dek).decrypt(base64.b64decode(envelope["nonce"]),
                                       base64.b64decode(envelope["ciphertext"]), self._aad(tenant_id))
        except InvalidTag:
            raise ValueError("sealed secret does not open for this tenant (damaged or copied)") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
