"""The schema's object types. Each wraps the view the REST API returns for the same thing
(``public_view``, ``entry_view``, ``status_view``, the tier and rule models) and resolves
its related objects through the request's loaders or the same application services REST
calls: there is no second path to the store.

Read-model types (``Customer``, ``Balance``, ``Transaction``, ``Order``) carry ``dataAsOf``
as REST does: when the projections were last known caught up with the ledger."""

from __future__ import annotations

import base64
from datetime import datetime
from enum import Enum
from typing import Any, Optional

import strawberry
from strawberry.scalars import JSON

from shared.app.corrections import entry_view
from shared.app.customers import public_view
from shared.graphql.auth import require
from shared.graphql.limits import bounded, instant_argument
from shared.tiers.history import view as tier_change_view

Info = strawberry.Info
# Entries read per transaction asked (an earn with lots, a hold and its release): bounds one page's read.
TRANSACTION_ENTRIES = 5


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    from shared.graphql.errors import QueryRefused
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise QueryRefused("the cursor is malformed: pass endCursor of the previous page unchanged") from None


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: Optional[str]


@strawberry.type(description="Points now, from the balances read model (as GET /v1/customers/{id}/balance).")
class Balance:
    available: int
    pending: int
    reserved: int
    lifetime_earned: int
    orders_credited: int
    data_as_of: Optional[str]


@strawberry.type(description="One ledger entry (as GET /v1/customers/{id}/ledger).")
class LedgerEntry:
    id: str
    seq: int
    transaction_id: str
    entry_type: str
    signed_amount: int
    running_balance: Optional[int]
    status: Optional[str]
    reference_order_id: Optional[str]
    rule_set_id: Optional[str]
    rule_set_version: Optional[int]
    arm: Optional[str]
    created_at: str

    @classmethod
    def of(cls, doc: dict[str, Any]) -> "LedgerEntry":
        view = entry_view(doc)
        return cls(id=view["id"], seq=view["seq"], transaction_id=view.get("transactionId", ""),
                   entry_type=view["entryType"], signed_amount=view["signedAmount"],
                   running_balance=view.get("runningBalance"), status=view.get("status"),
                   reference_order_id=view.get("referenceOrderId"), rule_set_id=view.get("ruleSetId"),
                   rule_set_version=view.get("ruleSetVersion"), arm=view.get("arm"), created_at=view["createdAt"])


@strawberry.type(description="A customer's tier change (as GET /v1/customers/{id}/tier/history).")
class TierChange:
    change_seq: int
    from_tier: Optional[str]
    to_tier: Optional[str]
    direction: Optional[str]
    reason: Optional[str]
    trigger: Optional[str]
    at: Optional[str]
    program_version: Optional[int]

    @classmethod
    def of(cls, doc: dict[str, Any]) -> "TierChange":
        view = tier_change_view(doc)
        return cls(change_seq=view["changeSeq"], from_tier=view.get("fromTier"), to_tier=view.get("toTier"),
                   direction=view.get("direction"), reason=view.get("reason"), trigger=view.get("trigger"),
                   at=view.get("at"), program_version=view.get("programVersion"))


@strawberry.type(description="A customer (as GET /v1/customers/{id}); personal data only for keys that may see it.")
class Customer:
    id: str
    join_date: Optional[str]
    tags: list[str]
    tier: Optional[str]
    created_at: Optional[str]
    erased: bool
    doc: strawberry.Private[dict[str, Any]]

    @classmethod
    def of(cls, doc: dict[str, Any]) -> "Customer":
        view = public_view(doc)
        return cls(id=view["customerId"], join_date=view.get("joinDate"), tags=list(view.get("tags") or ()),
                   tier=view.get("tier"), created_at=view.get("createdAt"), erased=bool(view.get("erased")),
                   doc=doc)

    @strawberry.field(description="Decrypted personal fields: keys with the personal-data capability only "
                                  "(merchants, tenant-admins); analysts get a forbidden error.")
    async def personal_data(self, info: Info) -> Optional[JSON]:
        require(info, "personal-data")
        if not self.doc.get("personal"):
            return None
        context = info.context
        return await context.call(context.platform.vault.open, self.doc)

    @strawberry.field(description="Points now (read model; batched across the page).")
    async def balance(self, info: Info) -> Balance:
        context = info.context
        doc = await context.loaders.balances.load(self.id) or {}
        checkpoint = await context.data_as_of()
        freshest = max(filter(None, (doc.get("lastEntryAt"), checkpoint)), default=None)
        return Balance(available=doc.get("available", 0), pending=doc.get("pending", 0),
                       reserved=doc.get("reserved", 0), lifetime_earned=doc.get("lifetimeEarned", 0),
                       orders_credited=doc.get("ordersCredited", 0), data_as_of=freshest)

    @strawberry.field(description="Available points now (balance.available).")
    async def points_balance(self, info: Info) -> int:
        doc = await info.context.loaders.balances.load(self.id) or {}
        return int(doc.get("available", 0))

    @strawberry.field(description="Ledger entries, newest first; filter by type and creation time; "
                                  "page with before = the last entry's seq.")
    async def entries(self, info: Info, first: int = 50, before: Optional[int] = None,
                      entry_types: Optional[list[str]] = None, created_from: Optional[datetime] = None,
                      created_to: Optional[datetime] = None) -> list[LedgerEntry]:
        context = info.context
        docs = await context.call(context.platform.ledger.entries, context.tenant_id, self.id,
                                  before_seq=before, limit=bounded(first), entry_types=list(entry_types or ()),
                                  created_from=instant_argument("createdFrom", created_from),
                                  created_to=instant_argument("createdTo", created_to))
        return [LedgerEntry.of(d) for d in docs]

    @strawberry.field(description="Ledger transactions (all entries of one atomic batch), newest first; filter by "
                                  "entry type and creation time; page with before = the last transaction's "
                                  "lowest entry seq.")
    async def transactions(self, info: Info, first: int = 20, before: Optional[int] = None,
                           entry_types: Optional[list[str]] = None, created_from: Optional[datetime] = None,
                           created_to: Optional[datetime] = None) -> list["Transaction"]:
        context, wanted = info.context, bounded(first)
        # A transaction holds a handful of entries: read enough entries for the page, keep whole transactions.
        limit = min(wanted * TRANSACTION_ENTRIES, 1000)
        docs = await context.call(context.platform.ledger.entries, context.tenant_id, self.id,
                                  before_seq=before, limit=limit, entry_types=list(entry_types or ()),
                                  created_from=instant_argument("createdFrom", created_from),
                                  created_to=instant_argument("createdTo", created_to))
        groups: list[list[dict[str, Any]]] = []
        for doc in docs:
            if groups and groups[-1][0].get("transactionId") == doc.get("transactionId"):
                groups[-1].append(doc)
            else:
                groups.append([doc])
        if len(docs) == limit and len(groups) > 1:
            groups.pop()  # may continue past what was read: it comes whole on the next page
        return [Transaction(id=g[0].get("transactionId", ""), customer_id=self.id,
                            entries=[LedgerEntry.of(d) for d in reversed(g)], created_at=g[0]["createdAt"])
                for g in groups[:wanted]]

    @strawberry.field(description="The customer's tier now, its qualifying values and grace (as REST).")
    async def tier_status(self, info: Info) -> JSON:
        context = info.context
        return await context.call(context.platform.tiers.customer_tier, context.tenant_id, self.id)

    @strawberry.field(description="Tier changes, newest first; page with before = the last changeSeq.")
    async def tier_history(self, info: Info, first: int = 50, before: Optional[int] = None) -> list[TierChange]:
        context = info.context
        docs = await context.call(context.platform.tiers.history.list, context.tenant_id, self.id,
                                  before_seq=before, limit=bounded(first))
        return [TierChange.of(d) for d in docs]

    @strawberry.field(description="Redemptions and conversions, newest first (as REST).")
    async def redemptions(self, info: Info, first: int = 50) -> list[JSON]:
        context = info.context
        return await context.call(context.platform.spend.redemptions.list, context.tenant_id, self.id,
                                  bounded(first))

    @strawberry.field(description="Points that will expire, per last valid day, soonest first (as REST).")
    async def expiries(self, info: Info) -> JSON:
        context = info.context
        return await context.call(context.platform.expiry.upcoming, context.tenant_id, self.id, 500)

    @strawberry.field
    async def data_as_of(self, info: Info) -> Optional[str]:
        return await info.context.data_as_of()


@strawberry.type
class CustomerEdge:
    cursor: str
    node: Customer


@strawberry.type
class CustomerConnection:
    edges: list[CustomerEdge]
    page_info: PageInfo

    @strawberry.field
    def nodes(self) -> list[Customer]:
        return [edge.node for edge in self.edges]


@strawberry.type(description="All the entries of one ledger transaction (one atomic batch).")
class Transaction:
    id: str
    customer_id: str
    entries: list[LedgerEntry]
    created_at: str
    # The change-feed position of the transaction's last entry: resume a subscription after it.
    cursor: Optional[str] = None

    @strawberry.field
    async def customer(self, info: Info) -> Optional[Customer]:
        doc = await info.context.loaders.customers.load(self.customer_id)
        return Customer.of(doc) if doc is not None else None

    @strawberry.field
    async def data_as_of(self, info: Info) -> Optional[str]:
        # A transaction is read from the ledger itself: it is as fresh as its own commit.
        return self.created_at


@strawberry.type(description="An order's status (as GET /v1/orders/{id}).")
class Order:
    order_id: str
    customer_id: Optional[str]
    status: str
    points: Optional[int]
    transaction_id: Optional[str]
    rule_set_id: Optional[str]
    rule_set_version: Optional[int]
    arm: Optional[str]
    reason: Optional[JSON]
    accepted_at: Optional[str]
    decided_at: Optional[str]
    cursor: Optional[str] = None

    @classmethod
    def of(cls, view: dict[str, Any], cursor: str | None = None) -> "Order":
        return cls(order_id=view["orderId"], customer_id=view.get("customerId"), status=view["status"],
                   points=view.get("points"), transaction_id=view.get("transactionId"),
                   rule_set_id=view.get("ruleSetId"), rule_set_version=view.get("ruleSetVersion"),
                   arm=view.get("arm"), reason=view.get("reason"), accepted_at=view.get("acceptedAt"),
                   decided_at=view.get("decidedAt"), cursor=cursor)

    @strawberry.field
    async def data_as_of(self, info: Info) -> Optional[str]:
        return self.decided_at or await info.context.data_as_of()


@strawberry.type
class RuleSetVersion:
    rule_set_id: str
    version: int
    author: str
    created_at: str
    reason: JSON
    cost: int
    rules: int
    source: Optional[str] = None


@strawberry.type
class Activation:
    rule_set_id: str
    version: int
    at: str
    by: str
    reason: JSON
    previous_version: Optional[JSON]


@strawberry.type(description="A confidence interval of B minus A; significant when it excludes 0.")
class DifferenceInterval:
    estimate: float
    low: float
    high: float
    confidence: float
    method: str
    significant: bool


@strawberry.type
class ArmResult:
    arm: str
    rule_set_id: str
    version: int
    customers: int
    orders: int
    points_issued: int
    points_per_order: Optional[float]
    repeat_customers: int
    conversion: Optional[float] = strawberry.field(
        description="Share of the arm's ordering customers who ordered again during the experiment.")


@strawberry.type
class ExperimentResults:
    arms: list[ArmResult]
    points_per_order_difference: Optional[DifferenceInterval] = strawberry.field(
        description="Welch's t interval for B's mean points per order minus A's (None below 2 orders per arm).")
    conversion_difference: Optional[DifferenceInterval] = strawberry.field(
        description="Newcombe's hybrid score interval for B's conversion minus A's.")
    scanned: int
    truncated: bool


@strawberry.type
class Experiment:
    experiment_id: str
    name: str
    control: JSON
    treatment: JSON
    treatment_share: float
    status: str
    started_at: str
    ended_at: Optional[str]
    winner: Optional[str]


@strawberry.type
class WebhookEndpoint:
    id: str
    url: str
    event_types: list[str]
    description: Optional[str]
    status: Optional[str]
    created_at: Optional[str]

    @strawberry.field(description="Delivery tasks of this endpoint (pending, succeeded, failed), newest first.")
    async def deliveries(self, info: Info, status: Optional[str] = None, first: int = 50) -> list[JSON]:
        context = info.context
        return await context.call(context.platform.webhooks.deliveries, context.tenant_id, self.id, status,
                                  bounded(first))


@strawberry.enum
class Granularity(Enum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@strawberry.type(description="One rule's performance over the periods (and one experiment arm, when one "
                                "ran): each list is aligned with RulePerformance.periods.")
class RuleSeries:
    rule: str
    arm: Optional[str]
    orders_evaluated: list[int]
    orders_matched: list[int]
    points_issued: list[int]
    share_of_points: list[float] = strawberry.field(description="The rule's points over all points of the "
                                                                "version in the period and arm (0 to 1).")
    orders: list[int] = strawberry.field(description="All orders the version evaluated in the period and arm.")


@strawberry.type(description="Rule performance of one saved version, from the pre-aggregated daily counters.")
class RulePerformance:
    periods: list[str] = strawberry.field(description="Each period's first day (UTC): the day, the ISO week's "
                                                      "Monday or the month's first day; periods without orders "
                                                      "are left out.")
    series: list[RuleSeries]

    @strawberry.field(description="When the counters were last known caught up with the ledger.")
    async def data_as_of(self, info: Info) -> Optional[str]:
        return await info.context.data_as_of()


@strawberry.type
class Viewer:
    tenant_id: str
    key_id: str
    role: str

