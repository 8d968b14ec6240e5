"""Customers of a tenant: registration and lookup by the tenant's own id.

A profile may carry personal fields (``shared.privacy.personal.PersonalData``:
email, name, phone, birth date, postal address). They are never stored in the
clear: ``register`` hands them to the ``PersonalDataVault``, which seals each
field under the customer's own data key and indexes the email blindly; the
document keeps only the envelopes. An erased profile keeps its id, join date,
tags and tier, and reads as erased.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Sequence

from pydantic import ConfigDict, Field, StringConstraints
from typing_extensions import Annotated

from shared.clock import Clock, iso
from shared.domain.inputs import JoinDate
from shared.domain.orders import EntityId
from shared.domain.tags import MAX_TAG_LENGTH, MAX_TAGS, TAG_PATTERN, is_tag
from shared.errors import AccrueError, Conflict, DocumentExists, NotFound, PreconditionFailed, ValidationFailed
from shared.privacy.personal import PersonalData, PersonalDataVault
from shared.store.contention import attempts
from shared.store.layout import CUSTOMERS, PII_INDEX, customer_pk
from shared.store.port import (
    MAX_BATCH_OPERATIONS,
    Create,
    DocumentStore,
    Filter,
    Operation,
    PartitionBatch,
    Query,
    Upsert,
    read_many,
)
from shared.telemetry.logs import fields

log = logging.getLogger("accrue.customers")

Tag = Annotated[str, StringConstraints(pattern=TAG_PATTERN, max_length=MAX_TAG_LENGTH)]
# The customer's tier as the tenant names it (a tier programme's names are slugs of
# at most 32; a tenant without one may use its own labels).
MAX_TIER_LENGTH = 64
TierLabel = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TIER_LENGTH)]


class CustomerProfile(PersonalData):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    customer_id: EntityId = Field(alias="customerId")
    join_date: JoinDate = Field(alias="joinDate")
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    tier: TierLabel | None = None

    def personal(self) -> PersonalData | None:
        data = PersonalData.model_validate({k: getattr(self, k) for k in PersonalData.model_fields})
        return data if data.fields() else None


class CustomerExists(Conflict):
    """The customer id is taken: a registration of it writes nothing."""


class CustomerService:
    def __init__(self, store: DocumentStore, clock: Clock, vault: PersonalDataVault | None = None) -> None:
        self._store = store
        self._clock = clock
        self.vault = vault
        # Birthday and anniversary rewards (shared.occasions): files each new profile under
        # keyed hashes of its month-days. Set by the platform; None: no index.
        self.occasions: Any = None

    def register(self, tenant_id: str, profile: CustomerProfile, referrer_id: str | None = None) -> dict[str, Any]:
        """Create the profile and return it; ``referrer_id``: the customer whose referral code
        it was registered with, kept on the profile so that a retry can finish an enrolment a
        crash cut off. ``CustomerExists`` if the id is taken, ``Conflict`` if another customer
        has the email (nothing of this profile written in either case)."""
        outcome, = self._register(tenant_id, [profile], {profile.customer_id: referrer_id} if referrer_id else {})
        if isinstance(outcome, AccrueError):
            raise outcome
        return outcome

    def register_many(self, tenant_id: str, profiles: Sequence[CustomerProfile]) -> list[AccrueError | None]:
        """``register`` of many profiles with distinct ids (a bulk import's run of rows), in a
        few store calls instead of several per profile. Per profile, in order: None, or the
        error ``register`` would raise for it."""
        return [outcome if isinstance(outcome, AccrueError) else None
                for outcome in self._register(tenant_id, profiles, {})]

    def _register(self, tenant_id: str, profiles: Sequence[CustomerProfile],
                  referrers: dict[str, str]) -> list[dict[str, Any] | AccrueError]:
        """Register profiles with distinct ids: the personal fields sealed together
        (``PersonalDataVault.seal_new_many``: email index entries, then data keys), every
        occasion index entry, then every profile, each its own create. Each profile's writes
        come in that order, so a crash leaves entries without a profile (the daily run skips
        them, a retry reuses them), never a profile its email or birthday index cannot find.
        Per profile: the stored profile, or why it was refused (an id that exists or an email
        another customer has: refused before any write of that profile; an id registered
        meanwhile: what it filed and the winner does not use given back)."""
        ids = [p.customer_id for p in profiles]
        assert len(set(ids)) == len(ids), "one run per customer id: a repeated id goes in the next run"
        outcomes: dict[str, dict[str, Any] | AccrueError] = {}
        personal = {p.customer_id: p.personal() for p in profiles}
        docs = {p.customer_id: self._new_doc(tenant_id, p) for p in profiles}
        for customer_id, referrer_id in referrers.items():
            docs[customer_id]["referrerId"] = referrer_id
        # An existing id is refused before anything of it is written: no data key, no email
        # index entry, no occasion index entry filed under another join or birth date.
        for customer_id, doc in self.find_many(tenant_id, ids).items():
            if doc is not None:
                outcomes[customer_id] = CustomerExists(f"customer {customer_id!r} already exists")
        sealing = [c for c in ids if personal[c] is not None and c not in outcomes]
        if sealing and self.vault is None:
            for customer_id in sealing:
                outcomes[customer_id] = ValidationFailed("personal fields cannot be stored: no key provider is "
                                                         "configured")
            sealing = []
        sealed_of: dict[str, dict[str, Any]] = {}
        if sealing:
            assert self.vault is not None
            for customer_id, sealed in zip(sealing, self.vault.seal_new_many(
                    tenant_id, [(c, personal[c]) for c in sealing])):  # type: ignore[misc]
                if isinstance(sealed, Conflict):
                    outcomes[customer_id] = sealed
                else:
                    sealed_of[customer_id] = sealed
                    docs[customer_id].update(sealed)
        going = [p for p in profiles if p.customer_id not in outcomes]
        filed_of: dict[str, list[dict[str, Any]]] = {}
        if self.occasions is not None and going:
            by_pk: dict[str, list[Operation]] = {}
            for p in going:
                birth_date = personal[p.customer_id].birth_date if personal[p.customer_id] is not None else None
                docs[p.customer_id].update(self.occasions.index_fields(tenant_id, birth_date))
                filed_of[p.customer_id] = self.occasions.index_docs(tenant_id, p.customer_id, birth_date, p.join_date)
                for entry in filed_of[p.customer_id]:
                    by_pk.setdefault(entry["pk"], []).append(Upsert(entry))
            filed = [PartitionBatch(pk, ops[start:start + MAX_BATCH_OPERATIONS])
                     for pk, ops in by_pk.items() for start in range(0, len(ops), MAX_BATCH_OPERATIONS)]
            self._store.batches(PII_INDEX, filed)
            for work in filed:
                if work.error is not None:
                    raise work.error  # an upsert is never refused: the store failed
        created = {p.customer_id: PartitionBatch(docs[p.customer_id]["pk"], [Create(docs[p.customer_id])])
                   for p in going}
        if created:
            self._store.batches(CUSTOMERS, list(created.values()))
        for customer_id, work in created.items():
            if work.error is None:
                assert work.result is not None and len(work.result) == 1, "one create, one stored profile"
                outcomes[customer_id] = work.result[0]
            elif isinstance(work.error, DocumentExists):
                # Lost the id to a registration that got there first: what this one filed
                # and the winner does not use goes back (the winner may even have been
                # erased meanwhile, and nothing of this one may outlive that erasure).
                winner = self.find(tenant_id, customer_id)
                if customer_id in sealed_of:
                    assert self.vault is not None
                    self.vault.abandon(tenant_id, customer_id, sealed_of[customer_id], winner)
                if customer_id in filed_of:
                    self.occasions.abandon(tenant_id, customer_id, filed_of[customer_id], winner)
                outcomes[customer_id] = CustomerExists(f"customer {customer_id!r} already exists")
            else:
                raise work.error  # the store failed
        return [outcomes[customer_id] for customer_id in ids]

    def _new_doc(self, tenant_id: str, profile: CustomerProfile) -> dict[str, Any]:
        now = iso(self._clock.now())
        return {
            "id": profile.customer_id,
            "pk": customer_pk(tenant_id, profile.customer_id),
            "docType": "customer",
            "tenantId": tenant_id,
            "customerId": profile.customer_id,
            "joinDate": profile.join_date.isoformat(),
            "tags": sorted(set(profile.tags)),
            "tier": profile.tier,
            "createdAt": now,
            # Moves on every change of the profile: the customers export selects on it,
            # so tag, tier and erasure changes reach the warehouse, not only new customers.
            "updatedAt": now,
        }

    def get(self, tenant_id: str, customer_id: str) -> dict[str, Any]:
        doc = self.find(tenant_id, customer_id)
        if doc is None:
            raise NotFound(f"customer {customer_id!r} does not exist")
        return doc

    def find(self, tenant_id: str, customer_id: str) -> dict[str, Any] | None:
        return self._store.read(CUSTOMERS, customer_pk(tenant_id, customer_id), customer_id)

    def find_many(self, tenant_id: str, customer_ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """``find`` of several customers at once (one store call): id -> document or None."""
        ids = list(dict.fromkeys(customer_ids))
        docs = read_many(self._store, CUSTOMERS, [(customer_pk(tenant_id, c), c) for c in ids])
        return dict(zip(ids, docs))

    def list(self, tenant_id: str, after: str | None, limit: int) -> list[dict[str, Any]]:
        filters = [Filter("tenantId", "=", tenant_id)]
        if after:
            filters.append(Filter("customerId", ">", after))
        return self._store.query(CUSTOMERS, Query(pk=None, filters=tuple(filters), order_by="customerId", limit=limit))

    def search(self, tenant_id: str, after: str | None, limit: int, tier: str | None = None,
               joined_from: str | None = None, joined_to: str | None = None) -> list[dict[str, Any]]:
        """``list`` narrowed by tier and by join date (ISO dates, inclusive), in id order: the
        store does the filtering, so a page costs one query whatever the filters."""
        filters = [Filter("tenantId", "=", tenant_id)]
        if after:
            filters.append(Filter("customerId", ">", after))
        if tier is not None:
            filters.append(Filter("tier", "=", tier))
        if joined_from is not None:
            filters.append(Filter("joinDate", ">=", joined_from))
        if joined_to is not None:
            filters.append(Filter("joinDate", "<=", joined_to))
        return self._store.query(CUSTOMERS, Query(pk=None, filters=tuple(filters), order_by="customerId", limit=limit))

    def add_tags(self, tenant_id: str, customer_id: str, tags: tuple[str, ...]) -> None:
        """Union the tags in (idempotent); retried on a concurrent write. The customer's tags are
        kept: new ones join while there is room (``MAX_TAGS``; the sorted cut used to drop an
        existing tag to make room, found by an outside review), and only tags of the customer
        grammar are stored (a rule set saved before the language checked it may name others)."""
        wanted = {tag for tag in tags if is_tag(tag)}
        if len(wanted) < len(set(tags)):
            log.warning("tags outside the customer tag grammar were not added",
                        extra=fields(tenant=tenant_id, error="tag-refused"))
        for _ in attempts():
            doc = self.find(tenant_id, customer_id)
            if doc is None:
                return
            held = list(doc.get("tags", []))
            room = max(0, MAX_TAGS - len(held))
            merged = sorted(set(held) | set(sorted(wanted - set(held))[:room]))
            if merged == doc.get("tags"):
                return
            try:
                self._store.upsert(CUSTOMERS, dict(doc, tags=merged, updatedAt=iso(self._clock.now())),
                                   if_match=doc["_etag"])
                return
            except PreconditionFailed:
                continue  # another writer changed the profile: merge again
        raise Conflict(f"customer {customer_id!r} kept changing while tags were added; try again")


def public_view(doc: dict[str, Any]) -> dict[str, Any]:
    view = {k: doc.get(k) for k in ("customerId", "joinDate", "tags", "tier", "createdAt")}
    if doc.get("erasedAt"):
        view.update(erased=True, erasedAt=doc["erasedAt"])
    return view
