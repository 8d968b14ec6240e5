"""WebAuthn (FIDO2 security keys) for platform operators: creation and request
options, and verification of registrations and assertions.

Verification is the ``fido2`` package's (Yubico's maintained FIDO2/WebAuthn library:
``Fido2Server`` checks type, origin, challenge, RP id hash, user presence, user
verification and the signature; COSE keys and CBOR are its own). We chose it over
``webauthn`` (py_webauthn) because one library gives both the server checks and, in
the tests only, the CBOR/COSE encoders a software authenticator needs: no
hand-written CBOR anywhere. This module adds what the library leaves to its caller:

* **user verification required** on every ceremony (PIN or biometric on the key);
* **origins**: exactly the configured ones (``ACCRUE_WEBAUTHN_ORIGIN``), or, with the
  local default RP id ``localhost``, ``http://localhost[:port]`` (a secure context);
* **attestation policy**: ``none`` is accepted; with ``ACCRUE_WEBAUTHN_AAGUIDS`` set,
  only those authenticator models may register (the AAGUID in the attested data);
* **signature counter**: an assertion whose counter does not exceed the stored one
  (unless both are 0: authenticators without a counter) is refused as a cloned key
  or a replay; the caller stores the new counter under an ETag;
* **challenges of approvals** are not random: ``challenge_for`` is the SHA-256 of
  the request's canonical content, so an assertion approves that act only.

Every refusal is ``CeremonyFailed`` (403, ``webauthn-failed``) with the reason.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit

from fido2.server import Fido2Server
from fido2.utils import websafe_decode, websafe_encode
from fido2.webauthn import (
    AttestedCredentialData,
    AuthenticationResponse,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    UserVerificationRequirement,
)

from shared.errors import Forbidden

RP_NAME = "Accrue platform operators"


class CeremonyFailed(Forbidden):
    code = "webauthn-failed"


@dataclass(frozen=True)
class Credential:
    """A registered credential as stored: its id and attested data (websafe base64)."""

    credential_id: str
    data: str
    aaguid: str
    sign_count: int

    def attested(self) -> AttestedCredentialData:
        return AttestedCredentialData(websafe_decode(self.data))


@dataclass(frozen=True)
class Assertion:
    """A verified assertion: which credential signed, and its new signature counter."""

    credential_id: str
    sign_count: int


def canonical(content: Mapping[str, Any]) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def challenge_for(content: Mapping[str, Any]) -> bytes:
    """The challenge an approval of ``content`` must sign: SHA-256 of its canonical JSON."""
    return hashlib.sha256(canonical(content)).digest()


class RelyingParty:
    def __init__(self, rp_id: str = "localhost", origins: Sequence[str] = (), aaguids: Sequence[str] = ()) -> None:
        assert rp_id and "/" not in rp_id, f"an RP id is a host name, not {rp_id!r}"
        self.rp_id = rp_id
        self.origins = tuple(origins)
        self.aaguids = frozenset(a.lower() for a in aaguids)
        self._server = Fido2Server(PublicKeyCredentialRpEntity(name=RP_NAME, id=rp_id),
                                   verify_origin=self.origin_allowed)

    def origin_allowed(self, origin: str) -> bool:
        if self.origins:
            return origin in self.origins
        parts = urlsplit(origin)
        if self.rp_id == "localhost":
            return parts.scheme == "http" and parts.hostname == "localhost" and parts.path == ""
        return origin == f"https://{self.rp_id}"

    # --- registration -------------------------------------------------------------

    def creation_options(self, user_id: str, name: str, exclude: Sequence[Credential],
                         challenge: bytes) -> dict[str, Any]:
        """``publicKey`` options for ``navigator.credentials.create`` (JSON form)."""
        options, _ = self._server.register_begin(
            PublicKeyCredentialUserEntity(name=name, id=user_id.encode(), display_name=name),
            credentials=[c.attested() for c in exclude],
            user_verification=UserVerificationRequirement.REQUIRED, challenge=challenge)
        return _json(options)["publicKey"]

    def verify_registration(self, challenge: bytes, response: Mapping[str, Any]) -> Credential:
        state = {"challenge": websafe_encode(challenge), "user_verification": UserVerificationRequirement.REQUIRED}
        try:
            auth_data = self._server.register_complete(state, response)
        except (ValueError, KeyError, TypeError) as exc:
            raise CeremonyFailed(f"the security key's registration was refused: {exc}") from None
        data = auth_data.credential_data
        assert data is not None, "register_complete answers attested credential data"
        aaguid = str(data.aaguid)
        if self.aaguids and aaguid.lower() not in self.aaguids:
            raise CeremonyFailed(f"authenticator model {aaguid} is not allowed here (ACCRUE_WEBAUTHN_AAGUIDS)")
        return Credential(websafe_encode(data.credential_id), websafe_encode(bytes(data)), aaguid,
                          auth_data.counter)

    # --- authentication -----------------------------------------------------------

    def request_options(self, challenge: bytes, allowed: Sequence[Credential]) -> dict[str, Any]:
        options, _ = self._server.authenticate_begin([c.attested() for c in allowed],
                                                     user_verification=UserVerificationRequirement.REQUIRED,
                                                     challenge=challenge)
        return _json(options)["publicKey"]

    def verify_assertion(self, challenge: bytes, credentials: Sequence[Credential],
                         response: Mapping[str, Any]) -> Assertion:
        """Which of ``credentials`` signed ``challenge`` (every check of the module
        docstring), or ``CeremonyFailed``."""
        if not credentials:
            raise CeremonyFailed("this operator has no registered security key")
        state = {"challenge": websafe_encode(challenge), "user_verification": UserVerificationRequirement.REQUIRED}
        try:
            parsed = AuthenticationResponse.from_dict(response)
            used = self._server.authenticate_complete(state, [c.attested() for c in credentials], parsed)
        except (ValueError, KeyError, TypeError) as exc:
            raise CeremonyFailed(f"the security key's assertion was refused: {exc}") from None
        credential_id = websafe_encode(used.credential_id)
        stored = next(c for c in credentials if c.credential_id == credential_id)
        counter = parsed.response.authenticator_data.counter
        if (counter or stored.sign_count) and counter <= stored.sign_count:
            raise CeremonyFailed(f"signature counter {counter} does not exceed the stored {stored.sign_count}: "
                                 "a cloned key or a replayed assertion")
        return Assertion(credential_id, counter)


def _json(options: Any) -> dict[str, Any]:
    """The library's options object as JSON-ready data (websafe base64 bytes)."""
    return json.loads(json.dumps(dict(options), default=_bytes))


def _bytes(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return websafe_encode(bytes(value))
    if hasattr(value, "items"):
        return dict(value)
    if hasattr(value, "value"):
        return value.value
    raise TypeError(f"not JSON: {type(value).__name__}")
