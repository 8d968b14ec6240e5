"""Platform operators: identities with FIDO2 security keys (WebAuthn credentials).

An operator has an id (``op-<hex>``), a display name, one or more registered
credentials and the platform-admin API keys bound to them (``operatorId`` on the
key). All of it lives in the ``system`` container, partition ``operators``
(a handful of documents per region):

* ``operator``: id, name, credentials (id, attested data, AAGUID, signature
  counter), ``removedAt``. Counters move under the document's ETag.
* ``credentialClaim`` (id ``cred-<sha256 of the credential id>``): created once
  per credential, so one security key belongs to one operator only; two
  registrations of the same key race on the create and one loses.
* ``registrationChallenge``: the random challenge of a pending registration
  (five minutes, used once: deleted under its ETag when the registration is
  verified).
* ``bootstrap``: created once per region by the very first operator's bootstrap.

Guarantees: registration and removal of credentials and operators happen only
through the executors of approved acts (``shared.governance.acts``), with one
exception, the **bootstrap**: the first operator of an empty region is created
with a platform-admin key by ``bootstrap`` (the ``accrue bootstrap-operator``
command, or the local runner's first start) and registers its first security
key alone, once, audited as ``operator.bootstrapped``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from datetime import timedelta
from typing import Any

from fido2.utils import websafe_decode

from shared.audit.log import PLATFORM_CHAIN, Actor, AuditLog, HasActor
from shared.clock import Clock, iso, parse_iso
from shared.errors import AccrueError, BatchFailed, Conflict, DocumentExists, Forbidden, NotFound, PreconditionFailed
from shared.governance.webauthn import Assertion, CeremonyFailed, Credential, RelyingParty
from shared.store.contention import attempts
from shared.store.layout import API_KEYS, SYSTEM
from shared.store.pages import read_all
from shared.store.port import Create, Delete, DocumentStore, Filter, Upsert

PK = "operators"
BOOTSTRAP_ID = "bootstrap"
CHALLENGE_TTL = timedelta(minutes=5)


class OperatorRequired(Forbidden):
    """A platform-admin key not bound to an operator (issued before operators existed)."""

    code = "operator-required"


class CredentialInUse(AccrueError):
    code = "credential-in-use"
    status = 409


class AlreadyBootstrapped(AccrueError):
    code = "already-bootstrapped"
    status = 409


def credential_view(c: dict[str, Any]) -> dict[str, Any]:
    return {"credentialId": c["credentialId"], "aaguid": c["aaguid"], "createdAt": c["createdAt"]}


def operator_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {"operatorId": doc["id"], "name": doc["name"], "createdAt": doc["createdAt"],
            "removedAt": doc.get("removedAt"), "credentials": [credential_view(c) for c in doc["credentials"]],
            "awaitingBootstrapKey": bool(doc.get("bootstrap")) and not doc["credentials"]}


def to_credential(c: dict[str, Any]) -> Credential:
    return Credential(c["credentialId"], c["data"], c["aaguid"], int(c.get("signCount", 0)))


class Operators:
    def __init__(self, store: DocumentStore, clock: Clock, audit: AuditLog, rp: RelyingParty) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit
        self.rp = rp

    # --- reading ------------------------------------------------------------------

    def get(self, operator_id: str) -> dict[str, Any]:
        doc = self._store.read(SYSTEM, PK, operator_id)
        if doc is None or doc.get("docType") != "operator":
            raise NotFound(f"operator {operator_id!r} does not exist")
        return doc

    def active(self, operator_id: str) -> dict[str, Any]:
        doc = self.get(operator_id)
        if doc.get("removedAt"):
            raise Forbidden(f"operator {operator_id!r} was removed")
        return doc

    def list(self) -> list[dict[str, Any]]:
        docs = read_all(self._store, SYSTEM, PK, (Filter("docType", "=", "operator"),))
        return sorted(docs, key=lambda d: (d["createdAt"], d["id"]))  # every one, oldest first (no cap)

    def with_keys(self) -> list[dict[str, Any]]:
        """Operators not removed that hold at least one security key: who can approve."""
        return [d for d in self.list() if not d.get("removedAt") and d["credentials"]]

    def of_key(self, key_id: str) -> str:
        """The operator a platform-admin key is bound to, or ``OperatorRequired``."""
        key = self._store.read(API_KEYS, key_id, key_id) or {}
        operator_id = key.get("operatorId")
        if not operator_id:
            raise OperatorRequired("this platform-admin key is bound to no operator: platform acts need an "
                                   "operator's key (see docs/fido2.md)")
        return operator_id

    # --- the bootstrap ------------------------------------------------------------

    def bootstrapped(self) -> bool:
        return self._store.read(SYSTEM, PK, BOOTSTRAP_ID) is not None

    def bootstrap_operator_id(self) -> str | None:
        """The region's bootstrap operator, once there is one."""
        marker = self._store.read(SYSTEM, PK, BOOTSTRAP_ID)
        return marker["operatorId"] if marker is not None else None

    def bootstrap(self, name: str, who: HasActor | Actor | None) -> dict[str, Any]:
        """The first operator of an empty region (once: ``AlreadyBootstrapped`` after).
        Its first security key is registered alone (``register_bootstrap_key``)."""
        operator_id = "op-" + secrets.token_hex(8)
        actor = Actor.of(who)
        # The marker and the operator it names in one batch: a crash between two writes left a
        # marker naming no operator, and a region that could never bootstrap again.
        try:
            doc = self._store.batch(SYSTEM, PK, [
                Create({"id": BOOTSTRAP_ID, "pk": PK, "docType": "operatorBootstrap", "operatorId": operator_id,
                        "at": iso(self._clock.now()), "by": actor.key_id}),
                Create(self._operator(operator_id, name, [], bootstrap=True))])[1]
        except (BatchFailed, DocumentExists):
            raise AlreadyBootstrapped("this region's first operator was bootstrapped already: new operators "
                                      "are registered by two operators (operator.register)") from None
        self._audit.record(PLATFORM_CHAIN, "operator.bootstrap", actor, target=f"operator:{operator_id}",
                           after={"operatorId": operator_id, "name": doc["name"], "singleOperator": True},
                           reason="bootstrap: the first operator of this region, created without a second operator")
        return doc

    def register_bootstrap_key(self, operator_id: str, credential: Credential, who: HasActor) -> dict[str, Any]:
        """The bootstrap operator's first security key, registered alone (once)."""
        doc = self.active(operator_id)
        if not doc.get("bootstrap") or doc["credentials"]:
            raise Forbidden("only the bootstrap operator's first security key is registered without approval; "
                            "this one needs a credential.add request approved by two other operators")
        saved = self._with_claim(credential.credential_id, operator_id,
                                 Upsert(dict(doc, credentials=[self._entry(credential)]), if_match=doc["_etag"]))
        if saved is None:
            raise Conflict("the operator changed meanwhile; try again")
        self._audit.record(PLATFORM_CHAIN, "operator.bootstrapped", who, target=f"operator:{operator_id}",
                           after={"operatorId": operator_id, "credentialId": credential.credential_id,
                                  "aaguid": credential.aaguid, "singleOperator": True},
                           reason="bootstrap: the first operator's first security key, registered alone")
        return saved

    # --- registration ceremonies ---------------------------------------------------

    def registration_options(self, *, operator_id: str | None, name: str | None, sponsor: str) -> dict[str, Any]:
        """Creation options for a new credential of ``operator_id`` (an existing operator:
        another key, or a lost key's replacement) or of a newcomer called ``name``."""
        if operator_id is not None:
            doc = self.active(operator_id)
            subject, display, exclude = operator_id, doc["name"], [to_credential(c) for c in doc["credentials"]]
        else:
            assert name, "a newcomer has a name"
            subject, display, exclude = "op-" + secrets.token_hex(8), name, []
        challenge = os.urandom(32)
        challenge_id = "chal-" + secrets.token_hex(8)
        self._store.create(SYSTEM, {"id": challenge_id, "pk": PK, "docType": "registrationChallenge",
                                    "operatorId": subject, "name": display, "newcomer": operator_id is None,
                                    "sponsor": sponsor, "challenge": challenge.hex(),
                                    "expiresAt": iso(self._clock.now() + CHALLENGE_TTL)})
        return {"challengeId": challenge_id, "operatorId": subject,
                "publicKey": self.rp.creation_options(subject, display, exclude, challenge)}

    def verify_registration(self, challenge_id: str, response: dict[str, Any], sponsor: str
                            ) -> tuple[dict[str, Any], Credential]:
        """The pending registration ``challenge_id`` (used up now) and its verified credential."""
        pending = self._store.read(SYSTEM, PK, challenge_id)
        if pending is None or pending.get("docType") != "registrationChallenge" or pending["sponsor"] != sponsor:
            raise CeremonyFailed(f"no pending registration {challenge_id!r} of yours (used, expired or unknown)")
        try:
            self._store.delete(SYSTEM, PK, challenge_id, if_match=pending["_etag"])
        except (PreconditionFailed, NotFound):
            raise CeremonyFailed(f"registration {challenge_id!r} was used just now") from None
        if self._clock.now() >= parse_iso(pending["expiresAt"]):
            raise CeremonyFailed(f"registration {challenge_id!r} expired; start again")
        credential = self.rp.verify_registration(bytes.fromhex(pending["challenge"]), response)
        claim = self._store.read(SYSTEM, PK, claim_id(credential.credential_id))
        if claim is not None:
            raise CredentialInUse("this security key is registered already (to an operator of this region)")
        return pending, credential

    # --- what approved acts do (shared.governance.acts) -----------------------------

    def create_with_key(self, operator_id: str, name: str, credential: dict[str, Any]) -> dict[str, Any]:
        """A newcomer registered by an approved ``operator.register``; idempotent per id."""
        for _ in attempts():
            existing = self._store.read(SYSTEM, PK, operator_id)
            if existing is not None:
                return existing
            created = self._with_claim(credential["credentialId"], operator_id, Create(self._operator(
                operator_id, name, [dict(credential, createdAt=iso(self._clock.now()))])))
            if created is not None:
                return created
        raise Conflict(f"operator {operator_id!r} is being registered by many requests at once; try again")

    def add_credential(self, operator_id: str, credential: dict[str, Any]) -> dict[str, Any]:
        for _ in attempts():
            doc = self.active(operator_id)
            if any(c["credentialId"] == credential["credentialId"] for c in doc["credentials"]):
                return doc
            entry = dict(credential, createdAt=iso(self._clock.now()))
            saved = self._with_claim(credential["credentialId"], operator_id, Upsert(
                dict(doc, credentials=doc["credentials"] + [entry]), if_match=doc["_etag"]))
            if saved is not None:
                return saved
        raise Conflict(f"operator {operator_id!r} kept changing; try again")

    def remove_credential(self, operator_id: str, credential_id: str) -> dict[str, Any]:
        for _ in attempts():
            doc = self.active(operator_id)
            kept = [c for c in doc["credentials"] if c["credentialId"] != credential_id]
            if len(kept) == len(doc["credentials"]):
                raise NotFound(f"operator {operator_id!r} has no credential {credential_id!r}")
            claim = self._store.read(SYSTEM, PK, claim_id(credential_id))
            release = ([Delete(claim["id"], if_match=claim["_etag"])]
                       if claim is not None and claim.get("operatorId") == operator_id else [])
            try:
                # The operator's key list and the key's claim in one batch: a crash between two
                # writes left a claim no operator held, and that key could never be registered again.
                return self._store.batch(SYSTEM, PK, [Upsert(dict(doc, credentials=kept), if_match=doc["_etag"])]
                                         + release)[0]
            except (BatchFailed, NotFound, PreconditionFailed):
                continue
        raise Conflict(f"operator {operator_id!r} kept changing; try again")

    def remove(self, operator_id: str) -> dict[str, Any]:
        doc = self.get(operator_id)
        if doc.get("removedAt"):
            return doc
        return self._store.upsert(SYSTEM, dict(doc, removedAt=iso(self._clock.now())), if_match=doc["_etag"])

    # --- assertions ---------------------------------------------------------------

    def verify_assertion(self, operator_id: str, challenge: bytes, response: dict[str, Any],
                         extra: list[Credential] | None = None) -> Assertion:
        """``operator_id``'s assertion of ``challenge`` (see ``RelyingParty``), its counter
        stored under the ETag: of two uses of one assertion, the second is refused."""
        if extra:  # a newcomer's credential, not stored on an operator yet
            return self.rp.verify_assertion(challenge, extra, response)
        for _ in attempts():
            doc = self.active(operator_id)
            assertion = self.rp.verify_assertion(challenge, [to_credential(c) for c in doc["credentials"]], response)
            credentials = [dict(c, signCount=assertion.sign_count) if c["credentialId"] == assertion.credential_id
                           else c for c in doc["credentials"]]
            try:
                self._store.upsert(SYSTEM, dict(doc, credentials=credentials), if_match=doc["_etag"])
            except PreconditionFailed:
                continue  # another ceremony of this operator just now: check the counter again
            return assertion
        raise Conflict(f"operator {operator_id!r} kept changing; try again")

    def owner_of(self, credential_id: str) -> str | None:
        claim = self._store.read(SYSTEM, PK, claim_id(credential_id))
        return None if claim is None else claim["operatorId"]

    # --- internals ----------------------------------------------------------------

    def _operator(self, operator_id: str, name: str, credentials: list[dict[str, Any]],
                  bootstrap: bool = False) -> dict[str, Any]:
        return {"id": operator_id, "pk": PK, "docType": "operator", "name": name[:100],
                "createdAt": iso(self._clock.now()), "removedAt": None, "bootstrap": bootstrap,
                "credentials": credentials}

    def _entry(self, credential: Credential) -> dict[str, Any]:
        return {"credentialId": credential.credential_id, "data": credential.data, "aaguid": credential.aaguid,
                "signCount": credential.sign_count, "createdAt": iso(self._clock.now())}

    def _with_claim(self, credential_id: str, operator_id: str, write: Create | Upsert) -> dict[str, Any] | None:
        """``write`` (of the operator document) and the key's claim for ``operator_id`` in one
        batch, so a key is claimed exactly when an operator holds it. ``CredentialInUse`` when
        another operator holds the claim; None when the batch lost a race (read again)."""
        claim = self._store.read(SYSTEM, PK, claim_id(credential_id))
        if claim is not None and claim.get("operatorId") != operator_id:
            raise CredentialInUse("this security key is registered to another operator already")
        take = [] if claim is not None else [Create({"id": claim_id(credential_id), "pk": PK,
                                                     "docType": "credentialClaim", "credentialId": credential_id,
                                                     "operatorId": operator_id})]
        try:
            return self._store.batch(SYSTEM, PK, [write] + take)[0]
        except (BatchFailed, DocumentExists, PreconditionFailed):
            return None


def claim_id(credential_id: str) -> str:
    return "cred-" + hashlib.sha256(websafe_decode(credential_id)).hexdigest()[:40]


def stored_credential(credential: Credential) -> dict[str, Any]:
    return {"credentialId": credential.credential_id, "data": credential.data, "aaguid": credential.aaguid,
            "signCount": credential.sign_count}
