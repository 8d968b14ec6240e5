"""The containers Accrue keeps: partition keys, indexed fields and time to live.

One module, read by both store adapters and by the Bicep cross-check test, so the
templates and the code cannot drift. Every container is partitioned on ``/pk``;
the functions below are the only place a partition key's shape is decided, so
the SQLite store and Cosmos DB hold the same documents under the same keys.
docs/cosmos.md gives, per container, the largest expected partition and why it
stays under Cosmos DB's per-partition limits (20 GB, 10,000 RU/s).

Time to live (``TTL_RULES``): operational documents (delivery attempts, order
statuses, poison items, dual-control requests, counters) expire a set number of
days after their last write; the ledger, the audit log, rule versions and every
container not named in ``TTL_RULES`` never expire. Both adapters stamp the
``ttl`` property (Cosmos DB's per-item TTL, in seconds, -1 for "never") on every
write to a container with a rule, from ``TtlPolicy``, and hide it from reads.

* ``ledger``: per customer (``tenantId:customerId``). Ledger entries, order
  outcome records and idempotency markers: append-only, change feed on.
* ``customers``: per customer. Profiles.
* ``balances``: per customer. Read model fed by the ledger's change feed.
* ``orderstatus``: per order (``tenantId:orderId``). The order's claim (made
  before it is published: one owner per tenant and order id, and the relay's
  outbox while ``publishDue`` is set) and then its status read model, so a
  merchant can ask by order id alone. Explicit idempotency keys are claimed here
  too (shared/app/claims.py).
* ``tenants``: per tenant. Settings.
* ``apikeys``: per key id. Argon2id hashes, role, tenant.
* ``poison``: per tenant. Messages and changes that failed every retry.
* ``system``: per component. Checkpoints of the local pollers and schedulers.
* ``rulesets``: per tenant. Rule set drafts, the active-version pointer and A/B
  experiments (mutable, ETag-guarded).
* ``ruleversions``: per tenant. Saved rule set versions and the activation log:
  append-only, so a saved version can never change.
* ``piikeys``: per customer (and ``tenantId:_blindindex`` per tenant). Wrapped
  data keys of customers' personal data and the tenant's wrapped blind-index
  secret. Deletes really delete (no change feed): erasure destroys a DEK here.
* ``piiindex``: per tenant. Blind index (keyed HMAC of the normalised email) to
  customer id; removed on erasure.
* ``audit``: per tenant (``_platform`` for platform-wide acts). The hash-chained
  audit log: append-only, one record per sequence number.
* ``approvals``: one partition (``approvals``). Dual-control requests of
  platform-admins.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Callable, Mapping

from shared.errors import ConfigurationError
from shared.store.lines import LineSpec
from shared.store.port import ContainerSpec

PARTITION_KEY_PATH = "/pk"

LEDGER = "ledger"
CUSTOMERS = "customers"
BALANCES = "balances"
ORDER_STATUS = "orderstatus"
TENANTS = "tenants"
API_KEYS = "apikeys"
POISON = "poison"
SYSTEM = "system"
PII_KEYS = "piikeys"
PII_INDEX = "piiindex"
AUDIT = "audit"
APPROVALS = "approvals"
RULESETS = "rulesets"
RULE_VERSIONS = "ruleversions"

# The ledger entry's fields the export's ``transactions`` reads (``shared.exports.columnar``),
# kept by the SQLite store as one CSV line per entry beside its JSON (``shared.store.lines``).
# A change here is a new version: lines of the old one are then read as JSON.
LEDGER_LINE = LineSpec(version=1, when=("docType", "entry"), fields=(
    ("pk", "string"), ("id", "string"), ("customerId", "string"), ("seq", "int64"), ("transactionId", "string"),
    ("entryType", "string"), ("signedAmount", "int64"), ("status", "string"),
    ("runningBalance", "int64"), ("runningPending", "int64"), ("runningReserved", "int64"),
    ("runningLifetimeEarned", "int64"), ("ordersCredited", "int64"), ("referenceOrderId", "string"),
    ("referenceEntryId", "string"), ("settlesEntryId", "string"), ("ruleSetId", "string"),
    ("ruleSetVersion", "int64"), ("arm", "string"), ("createdAt", "string"),
    ("imported", "bool"), ("recordedAt", "string"),
))

CONTAINERS: tuple[ContainerSpec, ...] = (
    # docType is in every ledger query, always beside pk and an indexed field (the
    # query plans use those): a column to compare, not a fourth index per write.
    ContainerSpec(LEDGER, append_only=True, change_feed=True,
                  indexed=("seq", "createdAt", "referenceOrderId", "tenantId"), filtered=("docType",),
                  sparse=("seq", "referenceOrderId"), line=LEDGER_LINE),
    ContainerSpec(CUSTOMERS, indexed=("tenantId", "updatedAt")),
    ContainerSpec(BALANCES),
    # publishDue: set only on an order claim not yet known to be published (shared/app/claims.py),
    # so its sparse index holds just the relay's work, and costs a published order nothing.
    ContainerSpec(ORDER_STATUS, indexed=("publishDue",), sparse=("publishDue",)),
    ContainerSpec(TENANTS),
    ContainerSpec(API_KEYS, indexed=("tenantId",)),
    ContainerSpec(POISON, indexed=("createdAt",)),
    ContainerSpec(SYSTEM),
    ContainerSpec(RULESETS, indexed=("docType",)),
    ContainerSpec(RULE_VERSIONS, append_only=True, indexed=("docType", "ruleSetId", "version", "at")),
    ContainerSpec(PII_KEYS, indexed=("tenantId",)),
    ContainerSpec(PII_INDEX),
    ContainerSpec(AUDIT, append_only=True, indexed=("seq",)),
    ContainerSpec(APPROVALS, indexed=("createdAt",)),
)

BY_NAME = {spec.name: spec for spec in CONTAINERS}

# Containers the SQLite store keeps as a small recent table merged into a main one in
# bounded steps (shared.store.sqlite), so appends cost the same at 10 M documents as at
# 10k. Only append-only containers, that grow without bound, need it: the ledger.
STAGED: frozenset[str] = frozenset({LEDGER})


def customer_pk(tenant_id: str, customer_id: str) -> str:
    return f"{tenant_id}:{customer_id}"


def order_pk(tenant_id: str, order_id: str) -> str:
    return f"{tenant_id}:{order_id}"

# --- Data out (issue 5): webhooks and warehouse exports ---------------------------
# * ``webhookendpoints``: per tenant. Endpoints (URL, event types, sealed secrets, health).
# * ``webhookmessages``: per tenant and hash bucket (``tenantId:mNN``, ``message_pk``).
#   The outbox: one message per event, body kept byte-exact so every retry signs
#   the same bytes. A message is only ever read by its id, so the bucket is
#   computed from the id and every read stays a point read.
# * ``webhookdeliveries``: per endpoint (``tenantId:endpointId``). One task per
#   message and endpoint (and per replay): status, attempts, next attempt.
# * ``webhookattempts``: per tenant and UTC day (``tenantId:YYYY-MM-DD``,
#   ``attempt_pk``). Every attempt (status, latency, error): append-only; the
#   tenant-admins' delivery log and the export's source, both read by time range,
#   so a day partition is exactly what they walk.
# * ``exports``: per tenant. Export settings, watermarks, the run in progress and
#   the finished runs' manifests.
WEBHOOK_ENDPOINTS = "webhookendpoints"
WEBHOOK_MESSAGES = "webhookmessages"
WEBHOOK_DELIVERIES = "webhookdeliveries"
WEBHOOK_ATTEMPTS = "webhookattempts"
EXPORTS = "exports"

CONTAINERS = CONTAINERS + (
    ContainerSpec(WEBHOOK_ENDPOINTS, indexed=("status", "tenantId")),
    ContainerSpec(WEBHOOK_MESSAGES, indexed=("createdAt",)),
    ContainerSpec(WEBHOOK_DELIVERIES, indexed=("status", "nextAttemptAt", "messageId")),
    ContainerSpec(WEBHOOK_ATTEMPTS, append_only=True, indexed=("createdAt", "endpointId", "messageId")),
    ContainerSpec(EXPORTS, indexed=("docType", "startedAt")),
)
BY_NAME = {spec.name: spec for spec in CONTAINERS}

# --- Fraud controls (issue 6): the manual review queue ------------------------------
# * ``reviews``: per tenant. One document per held earn or redemption waiting for
#   (or given) a tenant-admin's decision; mutable, ETag-guarded so two admins cannot
#   both decide. The decision itself is a new ledger entry (shared/reviews/queue.py).
REVIEWS = "reviews"

CONTAINERS = CONTAINERS + (
    ContainerSpec(REVIEWS, indexed=("status", "kind", "createdAt", "customerId")),
)
BY_NAME = {spec.name: spec for spec in CONTAINERS}

# --- Expiry (issue 6): the expiry calendar ---------------------------------------------
# * ``expirycalendar``: per tenant and UTC day (``tenantId:YYYY-MM-DD``). One small
#   document per customer with a lot due on that day (``shared/expiry/calendar.py``):
#   a read model fed by the ledger's change feed, so the daily expiry job reads only
#   the customers it has work for instead of scanning every ledger entry.
EXPIRY_CALENDAR = "expirycalendar"

CONTAINERS = CONTAINERS + (
    ContainerSpec(EXPIRY_CALENDAR, indexed=("customerId", "tenantId")),
)
BY_NAME = {spec.name: spec for spec in CONTAINERS}

# --- Programme mechanics (issue 20): vouchers, partner code pools, referral codes ------
# * ``codes``: documents found by a code a person holds. A voucher: one partition
#   per voucher (``tenantId:v:<codeHash>``, ``voucher_pk``), so a point-of-sale
#   lookup is a point read and redemptions of different vouchers never share a
#   partition; its uses are counted on the one document by ETag compare-and-swap
#   (shared/vouchers/service.py). A partner's code pool: one partition per pool
#   (``tenantId:pool:<poolId>``): its counter, its codes (sealed) and one claim per
#   redemption. Referral codes: ``tenantId:r:<code>``. Nothing here is personal data.
CODES = "codes"

CONTAINERS = CONTAINERS + (
    ContainerSpec(CODES, indexed=("customerId", "expiresAt", "refundPending", "eventsPending"),
                  filtered=("docType", "status", "tenantId"), sparse=("expiresAt", "refundPending", "eventsPending")),
)
BY_NAME = {spec.name: spec for spec in CONTAINERS}


def voucher_pk(tenant_id: str, code_hash: str) -> str:
    return f"{tenant_id}:v:{code_hash}"


def pool_pk(tenant_id: str, pool_id: str) -> str:
    return f"{tenant_id}:pool:{pool_id}"


# --- Partition keys of the high-volume webhook containers (issue 16) ----------------
#
# Synthetic keys rather than Cosmos DB hierarchical partition keys: the port's
# documents carry one string ``pk`` (the same in SQLite), the emulator the tests
# run against has no hierarchical keys, and a synthetic key spreads the same way.
# A hierarchical key (/tenantId, /day) would add only cross-day queries by tenant
# prefix, which nothing here makes.

# Buckets per tenant for webhook messages: 64 x 20 GB leaves room for any tenant
# (docs/cosmos.md: ~2 GB a day for the largest, 30 days kept: ~1 GB per bucket).
MESSAGE_BUCKETS = 64


def delivery_pk(tenant_id: str, endpoint_id: str) -> str:
    """A webhook delivery task's partition: one per endpoint (its due-work scan reads one partition)."""
    return f"{tenant_id}:{endpoint_id}"


def message_bucket(message_id: str) -> int:
    """The bucket of a webhook message: a stable hash of its id (not Python's ``hash``, salted per process)."""
    digest = hashlib.blake2b(message_id.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % MESSAGE_BUCKETS


def message_pk(tenant_id: str, message_id: str) -> str:
    """A webhook message's partition: ``tenantId:mNN``, from the message id alone."""
    return f"{tenant_id}:m{message_bucket(message_id):02d}"


def attempt_day(created_at: str) -> str:
    """``YYYY-MM-DD`` of an ISO-8601 UTC timestamp (the form ``shared.clock.iso`` writes)."""
    day = created_at[:10]
    assert len(day) == 10 and day[4] == "-" and day[7] == "-", f"not an ISO timestamp: {created_at!r}"
    return day


def attempt_pk(tenant_id: str, created_at: str) -> str:
    """A webhook attempt's partition: ``tenantId:YYYY-MM-DD`` of the attempt's time."""
    return f"{tenant_id}:{attempt_day(created_at)}"


def attempt_pks(tenant_id: str, first: date, last: date) -> list[str]:
    """The attempt partitions of ``first`` .. ``last`` (inclusive), newest first."""
    assert first <= last, "an empty day range"
    days = (last - first).days
    return [f"{tenant_id}:{(last - timedelta(days=n)).isoformat()}" for n in range(days + 1)]


# --- Time to live (issue 16) ------------------------------------------------------------

DAY_SECONDS = 86_400
# A rule may not expire anything sooner than this: records a caller may still act on
# (a tenant-provisioning record, a claim being retried) must outlive any retry window.
MIN_TTL_DAYS = 1
MAX_TTL_DAYS = 3650


@dataclass(frozen=True)
class TtlRule:
    """Documents of ``container`` (of ``doc_type`` only, when given) expire ``days``
    after their last write, unless ``keep`` says the document is still live (then
    it carries ``ttl: -1`` until a later write sees it finished)."""

    container: str
    doc_type: str | None
    days: int
    why: str
    keep: Callable[[dict[str, Any]], bool] | None = None

    @property
    def key(self) -> str:
        return self.container if self.doc_type is None else f"{self.container}/{self.doc_type}"


TTL_RULES: tuple[TtlRule, ...] = (
    TtlRule(WEBHOOK_MESSAGES, None, 30, "the replay window: a message older than 30 days is not replayed"),
    TtlRule(WEBHOOK_ATTEMPTS, None, 30, "the tenant's delivery log; exported nightly to the warehouse"),
    TtlRule(WEBHOOK_DELIVERIES, None, 7, "finished tasks (the attempts log keeps 30 days); one endpoint "
            "of the largest tenant writes ~1.2 GB of tasks a day into its partition; a task still being "
            "retried never expires",
            keep=lambda doc: doc.get("status") not in ("succeeded", "failed")),
    TtlRule(ORDER_STATUS, None, 90,
            "order status and claims; the ledger's idempotency markers (never expiring) still refuse a "
            "re-sent order after its claim expired; a claim not yet published never expires",
            keep=lambda doc: doc.get("publishDue") is not None),
    TtlRule(POISON, None, 90, "failed messages kept for operators to inspect and replay"),
    TtlRule(APPROVALS, None, 90, "dual-control requests expire within hours; kept 90 days for review"),
    TtlRule(REVIEWS, "review", 365, "decided fraud reviews (the decision itself is a ledger entry); "
            "an open review never expires", keep=lambda doc: doc.get("status") == "open"),
    TtlRule(SYSTEM, "ratelimit", 2, "a tenant's rate-limit window, rewritten every window while it is active"),
    TtlRule(SYSTEM, "fraudCounter", 3, "hourly and daily velocity counters, read only for the current hour/day"),
    TtlRule(SYSTEM, "agentCounter", 3, "agents' daily counters (shared/agents/limits.py), read only for the current day"),
    TtlRule(SYSTEM, "agentQuote", 30, "agents' quotes (shared/agents/quotes.py): valid minutes; an escalated one "
            "is copied into its review"),
)

# Never a TTL here, whatever a rule or an override says (asserted below and in the tests).
NEVER_EXPIRE = frozenset({LEDGER, AUDIT, RULE_VERSIONS, CUSTOMERS, BALANCES, TENANTS, API_KEYS,
                          PII_KEYS, PII_INDEX, RULESETS, EXPORTS, WEBHOOK_ENDPOINTS, EXPIRY_CALENDAR,
                          CODES})

assert not NEVER_EXPIRE & {rule.container for rule in TTL_RULES}, "a TTL rule on a container that never expires"
assert len({rule.key for rule in TTL_RULES}) == len(TTL_RULES), "two TTL rules for one document kind"
assert all(MIN_TTL_DAYS <= rule.days <= MAX_TTL_DAYS for rule in TTL_RULES)


def container_default_ttl(container: str) -> int | None:
    """Cosmos DB ``defaultTtl`` of a container (Bicep): None (TTL off, nothing ever
    expires), -1 (TTL on, only documents carrying a ``ttl`` expire: containers whose
    rules name document kinds, such as ``system``), or the whole-container rule's seconds."""
    rules = [rule for rule in TTL_RULES if rule.container == container]
    if not rules:
        return None
    whole = [rule for rule in rules if rule.doc_type is None]
    return whole[0].days * DAY_SECONDS if whole else -1


class TtlPolicy:
    """The TTL rules with a deployment's overrides (``ACCRUE_TTL_DAYS``), answering
    for any document what ``ttl`` it is written with."""

    def __init__(self, overrides: Mapping[str, int] | None = None) -> None:
        known = {rule.key: rule for rule in TTL_RULES}
        for key, days in (overrides or {}).items():
            if key not in known:
                raise ConfigurationError(
                    f"setting ACCRUE_TTL_DAYS names {key!r}, which has no TTL rule; one of: {', '.join(known)}")
            if not isinstance(days, int) or not MIN_TTL_DAYS <= days <= MAX_TTL_DAYS:
                raise ConfigurationError(
                    f"setting ACCRUE_TTL_DAYS gives {key!r} {days!r} days: a whole number from "
                    f"{MIN_TTL_DAYS} to {MAX_TTL_DAYS}")
        self.days = {key: (overrides or {}).get(key, rule.days) for key, rule in known.items()}
        self._by_container: dict[str, dict[str | None, TtlRule]] = {}
        for rule in TTL_RULES:
            self._by_container.setdefault(rule.container, {})[rule.doc_type] = rule

    @classmethod
    def from_setting(cls, text: str | None) -> "TtlPolicy":
        """``ACCRUE_TTL_DAYS``: ``container=days`` or ``container/docType=days``, comma-separated."""
        overrides: dict[str, int] = {}
        for part in (text or "").split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            if not sep or not value.strip().isdigit():
                raise ConfigurationError(
                    f"setting ACCRUE_TTL_DAYS: {part.strip()!r} is not container=days (e.g. webhookattempts=60)")
            overrides[key.strip()] = int(value.strip())
        return cls(overrides)

    def applies_to(self, container: str) -> bool:
        return container in self._by_container

    def seconds(self, container: str, doc: dict[str, Any]) -> int | None:
        """The ``ttl`` to write ``doc`` with: seconds after this write, -1 (never), or
        None for a container without TTL (the document is written as it is)."""
        rules = self._by_container.get(container)
        if rules is None:
            return None
        rule = rules.get(doc.get("docType")) or rules.get(None)
        if rule is None or (rule.keep is not None and rule.keep(doc)):
            return -1
        return self.days[rule.key] * DAY_SECONDS


DEFAULT_TTL = TtlPolicy()


# --- Indexing (issue 16): paths Cosmos DB does not index --------------------------------
#
# Everything else stays indexed under ``/*`` (an ORDER BY needs a range index on its
# field, and queries order and filter by more fields than ``ContainerSpec.indexed``
# lists). Excluded: encrypted or free-form fields no query reads; each excluded term is
# RU saved on every write of the container. main.bicep declares the same lists (checked
# by tests/unit/bicep), and the Cosmos adapter creates containers with them.
UNINDEXED_PATHS: dict[str, tuple[str, ...]] = {
    LEDGER: ("/attributes/*",),
    CUSTOMERS: ("/personal/*",),
    RULESETS: ("/draft/source/?", "/experiment/sealedSecret/?"),
    RULE_VERSIONS: ("/body/source/?",),
    PII_KEYS: ("/wrapped/?",),
    AUDIT: ("/before/*", "/after/*"),
    WEBHOOK_ENDPOINTS: ("/secrets/*",),
    WEBHOOK_MESSAGES: ("/body/?",),
    WEBHOOK_ATTEMPTS: ("/url/?", "/error/?", "/responseExcerpt/?"),
    CODES: ("/sealed/?",),
}
# Paths indexed again under an excluded one (the more precise path wins): the
# redemption limits query the ledger by ``attributes.rewardId`` (shared/spend/redemptions.py).
REINDEXED_PATHS: dict[str, tuple[str, ...]] = {
    LEDGER: ("/attributes/rewardId/?",),
}
assert set(UNINDEXED_PATHS) <= set(BY_NAME) and set(REINDEXED_PATHS) <= set(UNINDEXED_PATHS)


def indexing_policy(container: str) -> dict[str, Any]:
    """The Cosmos DB indexing policy of a container (as main.bicep declares it)."""
    return {
        "indexingMode": "consistent",
        "automatic": True,
        "includedPaths": [{"path": "/*"}] + [{"path": p} for p in REINDEXED_PATHS.get(container, ())],
        "excludedPaths": [{"path": '/"_etag"/?'}] + [{"path": p} for p in UNINDEXED_PATHS.get(container, ())],
    }
