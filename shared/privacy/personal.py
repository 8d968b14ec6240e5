"""Customers' personal data: sealed per field, a blind index of the email, erasure.

Where things live (containers of ``shared.store.layout``):

* the customer document (``customers``) holds ``personal``: field name to
  envelope (``shared.privacy.crypto``), plus ``dekId`` and ``emailIndex`` (the
  id of its blind-index entry). Never a plaintext.
* ``piikeys``, partition ``tenantId:customerId``, id ``dek``: the customer's DEK
  wrapped by the tenant KEK (``WrappedKey`` fields, base64 ciphertext).
* ``piikeys``, partition ``tenantId:_blindindex``, id ``secret``: the tenant's
  32-byte blind-index secret, wrapped by the KEK.
* ``piiindex``, partition ``tenantId``, id ``email.<hex>``: the blind index,
  ``HMAC-SHA256(secret, "email:" + normalised email)`` to the customer id. One
  customer per email and tenant. Normalised: NFKC, trimmed, case-folded.

Erasure (``erase``) deletes the blind-index entry and the wrapped DEK, evicts
the DEK from this process's cache, then strips the envelopes from the profile
and marks it erased. Other processes' caches are keyed by ``dekId`` and only
used for profiles that still carry envelopes, so they can decrypt nothing after
the profile is stripped; their entries expire within ``DekCache.ttl`` anyway.
The ledger is untouched. Each step is safe to repeat, so an erasure interrupted
half way is completed by asking again; an erasure of an erased customer changes
nothing and is not audited twice.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
import time
import unicodedata
from typing import Any, Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from typing_extensions import Annotated

from shared.audit.log import AuditLog, HasActor
from shared.clock import Clock, iso
from shared.domain.inputs import BirthDate
from shared.errors import AccrueError, BatchSkipped, Conflict, DocumentExists, NotFound, PreconditionFailed
from shared.keys.port import KeyProvider, WrappedKey
from shared.privacy.crypto import DekCache, new_dek, new_dek_id, open_sealed, seal
from shared.store.contention import ATTEMPTS, attempts
from shared.store.layout import CUSTOMERS, PII_INDEX, PII_KEYS, customer_pk
from shared.store.port import Create, DocumentStore, PartitionBatch, read_many
from shared.store.removal import delete_if, delete_if_present

# The personal-data fields, declared once: the API, the sealing and the event
# schema gate (``shared.schemas``) all read this list.
# The customer document's field that holds the sealed personal fields (never
# indexed by Cosmos: bicep/main.bicep excludes it, checked by tests/unit/bicep).
SEALED_FIELD = "personal"

PERSONAL_FIELDS: tuple[str, ...] = ("email", "name", "firstName", "lastName", "phone", "birthDate",
                                    "postalAddress", "address")

EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]{1,252}\.[^@\s]{1,63}$"
PHONE_PATTERN = r"^\+?[0-9][0-9 ()\-.]{2,30}$"
Text = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]


class PostalAddress(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    lines: list[Text] = Field(min_length=1, max_length=4)
    city: Text
    postal_code: str | None = Field(default=None, alias="postalCode", max_length=20)
    region: Text | None = None
    country: str = Field(pattern=r"^[A-Z]{2}$", max_length=2, description="ISO 3166-1 alpha-2")


class PersonalData(BaseModel):
    """What a customer profile may hold about the person. Stored only encrypted."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    email: str | None = Field(default=None, pattern=EMAIL_PATTERN, max_length=254)
    name: Text | None = None
    phone: str | None = Field(default=None, pattern=PHONE_PATTERN, max_length=32)
    birth_date: BirthDate | None = Field(default=None, alias="birthDate")
    postal_address: PostalAddress | None = Field(default=None, alias="postalAddress")

    def fields(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def normalise_email(email: str) -> str:
    return unicodedata.normalize("NFKC", email).strip().casefold()


class PersonalDataDestroyed(AccrueError):
    """The customer was erased: their personal data can no longer be read by anyone."""

    code = "personal-data-erased"
    status = 410


BLIND_SECRET_PK = "_blindindex"
SECRET_CACHE_SECONDS = 300.0


class PersonalDataVault:
    """Seals, opens, indexes and erases customers' personal data."""

    def __init__(self, store: DocumentStore, keys: KeyProvider, clock: Clock, audit: AuditLog,
                 cache: DekCache | None = None) -> None:
        self._store = store
        self._keys = keys
        self._clock = clock
        self._audit = audit
        self.cache = cache or DekCache()
        self._secrets: dict[str, tuple[float, bytes]] = {}
        self._lock = threading.Lock()

    # --- data keys ----------------------------------------------------------------

    def _wrapped_dek(self, tenant_id: str, customer_id: str) -> dict[str, Any] | None:
        return self._store.read(PII_KEYS, customer_pk(tenant_id, customer_id), "dek")

    def _create_dek(self, tenant_id: str, customer_id: str) -> tuple[str, str, bytes]:
        """(dekId, kekVersion, dek): a new DEK, or the one an interrupted registration left."""
        existing = self._wrapped_dek(tenant_id, customer_id)
        if existing is not None:
            return existing["dekId"], existing["keyVersion"], self._unwrap_doc(existing)
        dek, dek_id = new_dek(), new_dek_id()
        wrapped = self._keys.wrap(tenant_id, dek)
        try:
            self._store.create(PII_KEYS, _wrapped_doc(tenant_id, customer_id, dek_id, wrapped))
        except DocumentExists:  # a concurrent registration of the same id: share its key
            return self._create_dek(tenant_id, customer_id)
        return dek_id, wrapped.key_version, dek

    def _unwrap_doc(self, doc: dict[str, Any]) -> bytes:
        return self._keys.unwrap(WrappedKey(doc["tenantId"], doc["keyId"], doc["keyVersion"], doc["algorithm"],
                                            base64.b64decode(doc["wrapped"])))

    def dek_for(self, tenant_id: str, customer_id: str, dek_id: str) -> bytes:
        cached = self.cache.get(tenant_id, customer_id, dek_id)
        if cached is not None:
            return cached
        doc = self._wrapped_dek(tenant_id, customer_id)
        if doc is None:
            raise PersonalDataDestroyed(f"customer {customer_id!r}'s personal data was erased")
        if doc["dekId"] != dek_id:
            from shared.privacy.crypto import WrongDataKey

            raise WrongDataKey(f"the profile names data key {dek_id[:8]}…, not customer {customer_id!r}'s")
        dek = self._unwrap_doc(doc)
        self.cache.put(tenant_id, customer_id, dek_id, dek)
        return dek

    # --- blind index --------------------------------------------------------------

    def _blind_secret(self, tenant_id: str) -> bytes:
        now = time.monotonic()
        with self._lock:
            hit = self._secrets.get(tenant_id)
        if hit is not None and now - hit[0] < SECRET_CACHE_SECONDS:
            return hit[1]
        pk = f"{tenant_id}:{BLIND_SECRET_PK}"
        doc = self._store.read(PII_KEYS, pk, "secret")
        if doc is None:
            secret = os.urandom(32)
            wrapped = self._keys.wrap(tenant_id, secret)
            try:
                self._store.create(PII_KEYS, dict(_wrapped_doc(tenant_id, None, "blind-index", wrapped),
                                                  id="secret", pk=pk, docType="blindIndexSecret"))
            except DocumentExists:
                doc = self._store.read(PII_KEYS, pk, "secret")
                # Never deleted: a secret that was never stored would index emails under the wrong key.
                assert doc is not None, f"tenant {tenant_id!r}'s blind-index secret vanished after its create"
        if doc is not None:
            secret = self._unwrap_doc(doc)
        with self._lock:
            self._secrets[tenant_id] = (now, secret)
        return secret

    def blind_secret(self, tenant_id: str) -> bytes:
        """The tenant's blind-index secret (for other keyed indexes of personal data:
        ``shared.occasions``). Never logged, never stored unwrapped."""
        return self._blind_secret(tenant_id)

    def email_index_id(self, tenant_id: str, email: str) -> str:
        digest = hmac.new(self._blind_secret(tenant_id), b"email:" + normalise_email(email).encode(),
                          hashlib.sha256).hexdigest()
        return f"email.{digest}"

    def keyed_digest(self, tenant_id: str, purpose: str, data: str) -> bytes:
        """HMAC-SHA256 under the tenant's blind-index secret, separated by ``purpose``
        (``voucher-code``, ...; never ``email``): a value only the tenant's key can
        recompute (shared/vouchers/codes.py makes voucher codes of it)."""
        assert purpose and ":" not in purpose and purpose != "email", "a purpose of its own"
        return hmac.new(self._blind_secret(tenant_id), f"{purpose}:{data}".encode(), hashlib.sha256).digest()

    def find_by_email(self, tenant_id: str, email: str) -> str | None:
        doc = self._store.read(PII_INDEX, tenant_id, self.email_index_id(tenant_id, email))
        return doc["customerId"] if doc else None

    # --- sealing ------------------------------------------------------------------

    def seal_new_many(self, tenant_id: str,
                      people: Sequence[tuple[str, PersonalData]]) -> list[dict[str, Any] | Conflict]:
        """Index the emails, make the data keys, seal each field, for new customers (distinct
        ids) in a few store calls: every email index entry, then the data keys missing, then
        the sealing. Per customer, in order: what to merge into the new profile, or
        ``Conflict`` (nothing of it written) if another customer of the tenant has the email.
        A crash leaves index entries and data keys owned by the customer's id, which a retry
        reuses."""
        assert len({customer_id for customer_id, _ in people}) == len(people), "one run per customer id"
        fields = [personal.fields() for _, personal in people]
        index_ids = [self.email_index_id(tenant_id, f["email"]) if "email" in f else None for f in fields]
        refused = self._file_emails(tenant_id, [(i, people[i][0], index_id) for i, index_id in enumerate(index_ids)
                                                if index_id is not None])
        keep = [i for i in range(len(people)) if i not in refused]
        keys = self._data_keys(tenant_id, [people[i][0] for i in keep])
        results: list[dict[str, Any] | Conflict] = [
            Conflict("another customer of this tenant already has this email") for _ in people]
        for i, (dek_id, kek_version, dek) in zip(keep, keys):
            customer_id = people[i][0]
            self.cache.put(tenant_id, customer_id, dek_id, dek)
            sealed = {name: seal(dek, dek_id, kek_version, tenant_id, customer_id, name, value)
                      for name, value in fields[i].items()}
            results[i] = {SEALED_FIELD: sealed, "dekId": dek_id, "emailIndex": index_ids[i]}
        return results

    def _file_emails(self, tenant_id: str, entries: list[tuple[int, str, str]]) -> set[int]:
        """Create the email index entries (position, customer, entry id); the positions whose
        email another customer has. An entry the customer already owns (an interrupted
        registration's) is kept. All entries share the tenant's partition, where a refused
        create skips the rest of the call: those go again, until none is left."""
        refused: set[int] = set()
        owners = read_many(self._store, PII_INDEX, [(tenant_id, index_id) for _, _, index_id in entries])
        left = []
        for entry, owner in zip(entries, owners):
            if owner is None:
                left.append(entry)
            elif owner["customerId"] != entry[1]:
                refused.add(entry[0])
        # Each round files or refuses at least one entry, unless an entry was given back
        # between its create and the read (a racing registration that lost its id).
        for _ in range(len(left) + ATTEMPTS):
            if not left:
                return refused
            filed = [PartitionBatch(tenant_id, [Create(_email_index_doc(tenant_id, customer_id, index_id))])
                     for _, customer_id, index_id in left]
            self._store.batches(PII_INDEX, filed)
            again = []
            for entry, work in zip(left, filed):
                if isinstance(work.error, BatchSkipped):
                    again.append(entry)
                elif isinstance(work.error, DocumentExists):
                    owner = self._store.read(PII_INDEX, tenant_id, entry[2])
                    if owner is None:
                        again.append(entry)  # given back between the create and the read: file it again
                    elif owner["customerId"] != entry[1]:
                        refused.add(entry[0])  # taken meanwhile, or by an earlier customer of this run
                elif work.error is not None:
                    raise work.error  # the store failed
            left = again
        raise Conflict("email index entries kept changing under concurrent registrations; try again")

    def _data_keys(self, tenant_id: str, customer_ids: list[str]) -> list[tuple[str, str, bytes]]:
        """``_create_dek`` of many customers: the keys an interrupted registration left,
        the others made, wrapped and created in one store call (a key a concurrent
        registration created first is shared, as ``_create_dek`` does)."""
        found = read_many(self._store, PII_KEYS, [(customer_pk(tenant_id, c), "dek") for c in customer_ids])
        made: dict[int, tuple[str, str, bytes, PartitionBatch]] = {}
        for i, (customer_id, doc) in enumerate(zip(customer_ids, found)):
            if doc is None:
                dek, dek_id = new_dek(), new_dek_id()
                wrapped = self._keys.wrap(tenant_id, dek)
                made[i] = (dek_id, wrapped.key_version, dek, PartitionBatch(
                    customer_pk(tenant_id, customer_id), [Create(_wrapped_doc(tenant_id, customer_id, dek_id,
                                                                               wrapped))]))
        if made:
            self._store.batches(PII_KEYS, [m[3] for m in made.values()])
        keys = []
        for i, (customer_id, doc) in enumerate(zip(customer_ids, found)):
            if doc is not None:
                keys.append((doc["dekId"], doc["keyVersion"], self._unwrap_doc(doc)))
            elif made[i][3].error is None:
                keys.append(made[i][:3])
            elif isinstance(made[i][3].error, DocumentExists):
                keys.append(self._create_dek(tenant_id, customer_id))  # reads the winner's key
            else:
                raise made[i][3].error  # type: ignore[misc]  # the store failed
        return keys

    def abandon(self, tenant_id: str, customer_id: str, sealed: dict[str, Any], winner: dict[str, Any] | None) -> None:
        """Undo what a registration that lost its id to ``winner``'s profile sealed with:
        its email index entry, only while the entry is still this id's and not the
        winner's (a racer may have filed it for another customer since another loser gave
        it back), and the data key it made if the winner does not use it."""
        index_id = sealed.get("emailIndex")
        if index_id and (winner is None or winner.get("emailIndex") != index_id):
            self._delete_entry_of(tenant_id, index_id, customer_id)
        # The data key it made, if the winner does not use it: made after the winner's key
        # was destroyed (the winner erased meanwhile), it must not outlive the erasure.
        dek_id = sealed.get("dekId")
        if dek_id and (winner is None or winner.get("dekId") != dek_id):
            self.cache.evict(tenant_id, customer_id)
            delete_if(self._store, PII_KEYS, customer_pk(tenant_id, customer_id), "dek",
                      lambda stored: stored["dekId"] == dek_id)

    def _delete_entry_of(self, tenant_id: str, index_id: str, customer_id: str) -> None:
        """Delete the email index entry ``index_id`` while ``customer_id`` owns it: an entry
        another customer filed meanwhile is theirs and stays."""
        delete_if(self._store, PII_INDEX, tenant_id, index_id, lambda entry: entry["customerId"] == customer_id)

    def open(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The profile's personal fields in the clear (empty if it has none or was erased)."""
        personal = doc.get("personal") or {}
        if doc.get("erasedAt") or not personal:
            return {}
        tenant_id, customer_id = doc["tenantId"], doc["customerId"]
        dek = self.dek_for(tenant_id, customer_id, doc["dekId"])
        return {name: open_sealed(dek, doc["dekId"], tenant_id, customer_id, name, envelope)
                for name, envelope in personal.items()}

    def rewrap_tenant(self, tenant_id: str) -> int:
        """The rewrap job of a KEK rotation: move every wrapped key of the tenant (customers'
        DEKs and the blind-index secret) to the current KEK version; returns how many moved."""
        from shared.store.port import Filter, Query

        current = self._keys.current_version(tenant_id)
        moved = 0
        while True:
            page = self._store.query(PII_KEYS, Query(pk=None, filters=(Filter("tenantId", "=", tenant_id),
                                                                       Filter("keyVersion", "!=", current)),
                                                     limit=500))
            if not page:
                return moved
            count = rewrap_all(self._store, self._keys, tenant_id, page)
            if count == 0:  # only documents another writer is moving: they will be current
                return moved
            moved += count

    # --- erasure ------------------------------------------------------------------

    def erase(self, tenant_id: str, customer_id: str, who: HasActor | None, reason: str | None,
              erased_at: str | None = None) -> dict[str, Any]:
        """Destroy the customer's key and strip the profile (``shared.privacy.erasure`` calls
        this, then reaches the copies: the store's files, exports, webhooks).
        ``erased_at``: the instant the erasure was asked (kept when it is completed later).

        The profile is stripped with its ETag, and audited by the writer that stripped it:
        two concurrent erasures of one customer give one ``customer.erased`` record. (A
        process dying between the two leaves the erasure-log blob, written before, as its
        record.)"""
        for _ in attempts():
            result = self._erase_once(tenant_id, customer_id, who, reason, erased_at)
            if result is not None:
                return result
        raise Conflict(f"customer {customer_id!r}'s profile kept changing during its erasure; ask again")

    def _erase_once(self, tenant_id: str, customer_id: str, who: HasActor | None, reason: str | None,
                    erased_at: str | None) -> dict[str, Any] | None:
        pk = customer_pk(tenant_id, customer_id)
        doc = self._store.read(CUSTOMERS, pk, customer_id)
        if doc is None:
            raise NotFound(f"customer {customer_id!r} does not exist; nothing was erased")
        if doc.get("erasedAt"):
            return {"customerId": customer_id, "erased": True, "erasedAt": doc["erasedAt"], "alreadyErased": True}
        if doc.get("emailIndex"):
            # Only while it is this customer's: after a crash here, the email may have been
            # registered again by another customer before the erasure's retry.
            self._delete_entry_of(tenant_id, doc["emailIndex"], customer_id)
        if doc.get("birthdayIndex"):  # the keyed hash of the birth month-day (shared.occasions)
            delete_if_present(self._store, PII_INDEX, doc["birthdayIndex"], customer_id)
        delete_if_present(self._store, PII_KEYS, pk, "dek")
        self.cache.evict(tenant_id, customer_id)
        erased_at = erased_at or iso(self._clock.now())
        stripped = {k: v for k, v in doc.items() if k not in ("personal", "dekId", "emailIndex", "birthdayIndex")}
        try:
            self._store.upsert(CUSTOMERS, dict(stripped, erasedAt=erased_at, updatedAt=erased_at),
                               if_match=doc["_etag"])
        except PreconditionFailed:
            return None  # a concurrent erasure or profile change got there first: the key is gone; again
        # Audited by the writer that stripped the profile: two concurrent erasures, one record.
        self._audit.record(tenant_id, "customer.erased", who, target=f"customer:{customer_id}",
                           before={"personalFields": sorted((doc.get("personal") or {}).keys())},
                           after={"personalFields": [], "erasedAt": erased_at}, reason=reason)
        return {"customerId": customer_id, "erased": True, "erasedAt": erased_at, "alreadyErased": False}


def _email_index_doc(tenant_id: str, customer_id: str, index_id: str) -> dict[str, Any]:
    """The blind index's entry: the email's keyed hash (``index_id``) to the customer."""
    return {"id": index_id, "pk": tenant_id, "docType": "emailIndex", "tenantId": tenant_id,
            "customerId": customer_id}


def _wrapped_doc(tenant_id: str, customer_id: str | None, dek_id: str, wrapped: WrappedKey) -> dict[str, Any]:
    return {
        "id": "dek", "pk": customer_pk(tenant_id, customer_id or ""), "docType": "wrappedDek",
        "tenantId": tenant_id, "customerId": customer_id, "dekId": dek_id, "keyId": wrapped.key_id,
        "keyVersion": wrapped.key_version, "algorithm": wrapped.algorithm,
        "wrapped": base64.b64encode(wrapped.ciphertext).decode(),
    }


def rewrap_all(store: DocumentStore, keys: KeyProvider, tenant_id: str, docs: Iterable[dict[str, Any]]) -> int:
    """Move wrapped DEKs of ``docs`` (``piikeys`` documents) to the tenant's current KEK version."""
    from shared.keys.factory import rewrap

    moved = 0
    for doc in docs:
        old = WrappedKey(doc["tenantId"], doc["keyId"], doc["keyVersion"], doc["algorithm"],
                         base64.b64decode(doc["wrapped"]))
        new = rewrap(keys, old)
        if new is old:
            continue
        store.upsert(PII_KEYS, dict(doc, keyVersion=new.key_version, keyId=new.key_id, algorithm=new.algorithm,
                                    wrapped=base64.b64encode(new.ciphertext).decode()), if_match=doc["_etag"])
        moved += 1
    return moved
