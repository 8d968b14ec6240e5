"""A software FIDO2 authenticator for tests: real P-256 keys (``cryptography``),
attestation objects in format ``none`` and assertions, encoded with the ``fido2``
package's own CBOR/COSE helpers. Test code only: it lets API tests run the very
ceremony a security key runs, and forge what a broken or hostile one would send
(wrong origin, wrong RP id, no user verification, a bad signature, a rewound counter)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.cose import ES256
from fido2.utils import websafe_decode, websafe_encode
from fido2.webauthn import AttestationObject, AttestedCredentialData, AuthenticatorData, CollectedClientData

FLAG = AuthenticatorData.FLAG
ORIGIN = "http://localhost"
AAGUID = bytes(16)


@dataclass
class SoftKey:
    """One credential of a software authenticator."""

    rp_id: str = "localhost"
    origin: str = ORIGIN
    aaguid: bytes = AAGUID
    counter: int = 0
    credential_id: bytes = field(default_factory=lambda: os.urandom(32))
    private_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    @property
    def id(self) -> str:
        return websafe_encode(self.credential_id)

    def create(self, options: dict[str, Any], *, origin: str | None = None, rp_id: str | None = None,
               uv: bool = True) -> dict[str, Any]:
        """``navigator.credentials.create`` for ``options`` (the JSON ``publicKey``)."""
        client_data = CollectedClientData.create("webauthn.create", websafe_decode(options["challenge"]),
                                                 origin or self.origin)
        public = ES256.from_cryptography_key(self.private_key.public_key())
        attested = AttestedCredentialData.create(self.aaguid, self.credential_id, public)
        flags = FLAG.UP | FLAG.AT | (FLAG.UV if uv else 0)
        auth_data = AuthenticatorData.create(_hash(rp_id or self.rp_id), flags, self.counter, attested)
        attestation = AttestationObject.create("none", auth_data, {})
        return {"id": self.id, "rawId": self.id, "type": "public-key",
                "response": {"clientDataJSON": websafe_encode(client_data),
                             "attestationObject": websafe_encode(attestation)}}

    def get(self, options: dict[str, Any], *, origin: str | None = None, rp_id: str | None = None,
            uv: bool = True, counter: int | None = None, forge: bool = False) -> dict[str, Any]:
        """``navigator.credentials.get`` for ``options``: signs its challenge, counter + 1."""
        self.counter = self.counter + 1 if counter is None else counter
        client_data = CollectedClientData.create("webauthn.get", websafe_decode(options["challenge"]),
                                                 origin or self.origin)
        flags = FLAG.UP | (FLAG.UV if uv else 0)
        auth_data = AuthenticatorData.create(_hash(rp_id or options.get("rpId") or self.rp_id), flags, self.counter)
        signature = self.private_key.sign(bytes(auth_data) + client_data.hash, ec.ECDSA(hashes.SHA256()))
        if forge:  # someone else's key signs: a well-formed, wrong signature
            signature = ec.generate_private_key(ec.SECP256R1()).sign(bytes(auth_data) + client_data.hash,
                                                                      ec.ECDSA(hashes.SHA256()))
        return {"id": self.id, "rawId": self.id, "type": "public-key",
                "response": {"clientDataJSON": websafe_encode(client_data),
                             "authenticatorData": websafe_encode(auth_data),
                             "signature": websafe_encode(signature)}}


def _hash(rp_id: str) -> bytes:
    return hashlib.sha256(rp_id.encode()).digest()
