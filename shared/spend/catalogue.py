"""The rewards catalogue of a tenant, and each reward's stock counter.

A reward: id, name, points cost (a positive integer), optional stock (units that
may ever be handed out), optional validity window, optional per-customer limit,
and optionally the partner that fulfils it. Tenant-admins create, update, list
and read rewards; every change is audited by the route (before/after).

Where stock is counted, and why there: stock is shared by every customer, so it
cannot live in a customer's ledger partition (a ledger batch is one partition).
Each reward has a counter document ``rewardstock:<rewardId>`` in the tenant's
partition of the ``tenants`` container, changed only by ETag compare-and-swap
(``take``: claimed + 1 if claimed < stock; ``give_back``: claimed - 1). A
redemption takes a unit *before* its ledger append and gives it back if the
append writes nothing (refused, replayed) and when its reservation is released.
So ``claimed`` never exceeds ``stock`` under any concurrency: stock is never
oversold. A process dying between the take and the append, or between a
release and the give-back, leaks a unit (the reward undersells by one) — the
safe direction; ``claimed`` is visible on the reward so an admin can see it.

Documents live in the ``tenants`` container (partition = tenant id) next to the
tenant's settings: ids ``reward:<id>`` and ``rewardstock:<id>``; code listing
tenants keeps only documents whose id equals their partition.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from shared.clock import Clock, iso
from shared.domain.inputs import Instant
from shared.domain.orders import EntityId
from shared.errors import Conflict, DocumentExists, FieldProblem, NotFound, OutOfStock, PreconditionFailed, \
    RewardNotAvailable, ValidationFailed
from shared.store.contention import attempts
from shared.store.layout import TENANTS
from shared.store.port import DocumentStore, Filter, Query
from shared.store.replace import Change

MAX_COST = 10**12
MAX_VOUCHER_USES = 1000
CAS_ATTEMPTS = 200
# Edits of one reward retried on a lost ETag race before the caller is told to retry.
EDIT_ATTEMPTS = 64


class VoucherValue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: str = Field(pattern=r"^[0-9]{1,9}\.[0-9]{2}$", max_length=12,
                        description="the value the voucher takes off a purchase, a decimal string: 10.00")
    currency: str = Field(pattern=r"^[A-Z]{3}$", max_length=3, description="ISO 4217")

    @model_validator(mode="after")
    def _positive(self) -> "VoucherValue":
        if Decimal(self.amount) <= 0:
            raise ValueError("a voucher's value is more than zero")
        return self


class VoucherTerms(BaseModel):
    """What a voucher reward hands out (docs/vouchers.md): a code worth a value or a
    product, usable ``uses`` times (1: single-use), for ``validDays`` after it is
    issued, on a channel; or, with ``poolId``, a partner's code from that pool."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    uses: StrictInt = Field(default=1, ge=1, le=MAX_VOUCHER_USES, description="1: single-use")
    value: VoucherValue | None = None
    product_sku: str | None = Field(default=None, alias="productSku", min_length=1, max_length=100)
    valid_days: StrictInt = Field(default=90, alias="validDays", ge=1, le=3660)
    channel: Literal["any", "online", "in-store"] = "any"
    pool_id: EntityId | None = Field(default=None, alias="poolId",
                                     description="hand out a partner's code from this pool instead of making one")

    @model_validator(mode="after")
    def _one_benefit(self) -> "VoucherTerms":
        if self.pool_id is None and (self.value is None) == (self.product_sku is None):
            raise ValueError("a voucher gives exactly one of value or productSku (or comes from a poolId)")
        return self


class RewardFields(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=200)
    points_cost: StrictInt = Field(alias="pointsCost", ge=1, le=MAX_COST)
    stock: StrictInt | None = Field(default=None, ge=0, le=10**9, description="units that may ever be redeemed")
    valid_from: Instant | None = Field(default=None, alias="validFrom")
    valid_until: Instant | None = Field(default=None, alias="validUntil")
    per_customer_limit: StrictInt | None = Field(default=None, alias="perCustomerLimit", ge=1, le=10**6)
    partner_id: EntityId | None = Field(default=None, alias="partnerId",
                                        description="the partner that fulfils it (a voucher), if any")
    partner_sku: str | None = Field(default=None, alias="partnerSku", min_length=1, max_length=100)
    # Agents' guardrail policies permit rewards by category (shared/agents/policy.py).
    category: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]{0,49}$", max_length=50,
                                 description="the reward's category (a slug), which agent policies permit or not")
    type: Literal["standard", "voucher"] = Field(default="standard",
                                                 description="voucher: points are exchanged for a code")
    voucher: VoucherTerms | None = Field(default=None, description="the voucher's terms (type voucher)")

    @model_validator(mode="after")
    def _window(self) -> "RewardFields":
        if (self.type == "voucher") != (self.voucher is not None):
            raise ValueError("a reward of type voucher needs its voucher terms, and only it has them")
        if self.type == "voucher" and self.partner_id:
            raise ValueError("a voucher reward is not fulfilled by a partner call (a partner's codes: voucher.poolId)")
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("validUntil must be after validFrom")
        if self.partner_sku and not self.partner_id:
            raise ValueError("partnerSku needs a partnerId")
        return self


class NewReward(RewardFields):
    reward_id: EntityId = Field(alias="rewardId")


class RewardPatch(BaseModel):
    """Only the fields given change; ``null`` clears an optional field."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = Field(default=None, min_length=1, max_length=200)
    points_cost: StrictInt | None = Field(default=None, alias="pointsCost", ge=1, le=MAX_COST)
    stock: StrictInt | None = Field(default=None, ge=0, le=10**9)
    valid_from: Instant | None = Field(default=None, alias="validFrom")
    valid_until: Instant | None = Field(default=None, alias="validUntil")
    per_customer_limit: StrictInt | None = Field(default=None, alias="perCustomerLimit", ge=1, le=10**6)
    partner_id: EntityId | None = Field(default=None, alias="partnerId")
    partner_sku: str | None = Field(default=None, alias="partnerSku", min_length=1, max_length=100)
    category: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]{0,49}$", max_length=50)
    type: Literal["standard", "voucher"] | None = None
    voucher: VoucherTerms | None = None


def reward_doc_id(reward_id: str) -> str:
    return f"reward:{reward_id}"


def stock_doc_id(reward_id: str) -> str:
    return f"rewardstock:{reward_id}"


# The stored reward's own fields, by their JSON names: computed once (building the JSON
# schema costs about a millisecond, and a reward is read on every redemption).
_REWARD_FIELDS = tuple(field.alias or name for name, field in RewardFields.model_fields.items())


def _reward_fields(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc[k] for k in _REWARD_FIELDS if k in doc}  # rewards stored before a field existed lack it


class Catalogue:
    def __init__(self, store: DocumentStore, clock: Clock, partner_exists: Any = None) -> None:
        self._store = store
        self._clock = clock
        self._partner_exists = partner_exists or (lambda _pid: True)

    # --- admin ------------------------------------------------------------------------

    def create(self, tenant_id: str, reward: NewReward) -> dict[str, Any]:
        self._check_partner(reward)
        now = iso(self._clock.now())
        doc = {"id": reward_doc_id(reward.reward_id), "pk": tenant_id, "docType": "reward", "tenantId": tenant_id,
               **reward.model_dump(mode="json", by_alias=True), "version": 1, "createdAt": now, "updatedAt": now}
        try:
            self._store.create(TENANTS, doc)
        except DocumentExists:
            raise Conflict(f"reward {reward.reward_id!r} already exists: change it with PATCH") from None
        return self.get(tenant_id, reward.reward_id)

    def update(self, tenant_id: str, reward_id: str, patch: RewardPatch) -> Change:
        """Applies the patch to the reward as stored, as (before, after) views. ETag-guarded and
        rebased: a concurrent edit makes this one re-read and apply its fields again on what won
        (a merge patch means the same on either), so no edit is lost; a patch that changes
        nothing writes nothing (``changed`` False, no new version)."""
        changes = patch.model_dump(mode="json", by_alias=True, exclude_unset=True)
        for _ in attempts(EDIT_ATTEMPTS):
            doc = self._doc(tenant_id, reward_id)
            merged = {**_reward_fields(doc), **changes}
            fields = RewardFields.model_validate(merged)  # re-checks the window and the partner pairing
            self._check_partner(fields)
            stock = self._stock_doc(tenant_id, reward_id)
            claimed = stock["claimed"] if stock else 0
            if fields.stock is not None and fields.stock < claimed:
                raise ValidationFailed("stock below what is already claimed",
                                       [FieldProblem("stock", f"{claimed} units are already redeemed or reserved")])
            before = self._view(doc, stock)
            wanted = fields.model_dump(mode="json", by_alias=True)
            if all(doc.get(k) == v for k, v in wanted.items()):
                return Change(before, before, False)
            new_doc = {**doc, **wanted, "version": doc["version"] + 1, "updatedAt": iso(self._clock.now())}
            try:
                saved = self._store.upsert(TENANTS, new_doc, if_match=doc["_etag"])
            except PreconditionFailed:
                continue
            # The view of what this edit wrote (a read now could show a later edit's).
            return Change(before, self._view(saved, stock), True)
        raise Conflict(f"reward {reward_id!r} kept changing while it was being edited: read it and retry")

    def list(self, tenant_id: str, after: str | None, limit: int) -> list[dict[str, Any]]:
        filters = [Filter("docType", "=", "reward")]
        if after:
            filters.append(Filter("id", ">", reward_doc_id(after)))
        docs = self._store.query(TENANTS, Query(pk=tenant_id, filters=tuple(filters), order_by="id", limit=limit))
        return [self._view(d, self._stock_doc(tenant_id, d["rewardId"])) for d in docs]

    def get(self, tenant_id: str, reward_id: str) -> dict[str, Any]:
        return self._view(self._doc(tenant_id, reward_id), self._stock_doc(tenant_id, reward_id))

    def reward(self, tenant_id: str, reward_id: str) -> RewardFields:
        doc = self._doc(tenant_id, reward_id)
        return RewardFields.model_validate(_reward_fields(doc))

    def check_available(self, tenant_id: str, reward_id: str, reward: RewardFields, at: datetime) -> None:
        if reward.valid_from and at < reward.valid_from:
            raise RewardNotAvailable(f"reward {reward_id!r} can be redeemed from {iso(reward.valid_from)}",
                                     rewardId=reward_id, validFrom=iso(reward.valid_from))
        if reward.valid_until and at >= reward.valid_until:
            raise RewardNotAvailable(f"reward {reward_id!r} could be redeemed until {iso(reward.valid_until)}",
                                     rewardId=reward_id, validUntil=iso(reward.valid_until))

    # --- stock --------------------------------------------------------------------------

    def take(self, tenant_id: str, reward_id: str) -> None:
        """Claim one unit (compare-and-swap); ``OutOfStock`` when none is left."""
        self._cas(tenant_id, reward_id, +1)

    def give_back(self, tenant_id: str, reward_id: str) -> None:
        self._cas(tenant_id, reward_id, -1)

    def _cas(self, tenant_id: str, reward_id: str, delta: int) -> None:
        for _ in attempts(CAS_ATTEMPTS):
            reward = self._doc(tenant_id, reward_id)
            stock = self._stock_doc(tenant_id, reward_id)
            claimed = stock["claimed"] if stock else 0
            limit = reward.get("stock")
            if delta > 0 and limit is not None and claimed >= limit:
                raise OutOfStock(f"reward {reward_id!r} is out of stock", rewardId=reward_id, stock=limit)
            if delta < 0 and claimed == 0:
                return
            doc = {"id": stock_doc_id(reward_id), "pk": tenant_id, "docType": "rewardStock", "tenantId": tenant_id,
                   "rewardId": reward_id, "claimed": claimed + delta}
            try:
                if stock is None:
                    self._store.create(TENANTS, doc)
                else:
                    self._store.upsert(TENANTS, doc, if_match=stock["_etag"])
                return
            except (PreconditionFailed, DocumentExists):
                # Another redemption moved the counter first: re-read and retry (after the
                # jittered pause of shared/store/contention.py).
                continue
        raise Conflict(f"reward {reward_id!r} is in heavy demand: retry the redemption")

    # --- internals ----------------------------------------------------------------------

    def _check_partner(self, reward: RewardFields) -> None:
        if reward.partner_id and not self._partner_exists(reward.partner_id):
            raise ValidationFailed("unknown partner", [FieldProblem("partnerId",
                                                                    f"no partner {reward.partner_id!r} is registered")])

    def _doc(self, tenant_id: str, reward_id: str) -> dict[str, Any]:
        doc = self._store.read(TENANTS, tenant_id, reward_doc_id(reward_id))
        if doc is None:
            raise NotFound(f"reward {reward_id!r} does not exist")
        return doc

    def _stock_doc(self, tenant_id: str, reward_id: str) -> dict[str, Any] | None:
        return self._store.read(TENANTS, tenant_id, stock_doc_id(reward_id))

    @staticmethod
    def _view(doc: dict[str, Any], stock: dict[str, Any] | None) -> dict[str, Any]:
        keys = ("rewardId", "name", "pointsCost", "stock", "validFrom", "validUntil", "perCustomerLimit",
                "partnerId", "partnerSku", "category", "version", "createdAt", "updatedAt")
        view = {k: doc.get(k) for k in keys}
        if doc.get("type") == "voucher":  # shown only on vouchers: a standard reward reads as it always did
            view["type"], view["voucher"] = "voucher", doc.get("voucher")
        view["claimed"] = stock["claimed"] if stock else 0
        view["remaining"] = None if doc.get("stock") is None else max(0, doc["stock"] - view["claimed"])
        return view
