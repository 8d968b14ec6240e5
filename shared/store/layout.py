"""The containers Accrue keeps, with their partition keys and indexed fields.

One list, read by both store adapters and by the Bicep cross-check test, so the
templates and the code cannot drift. Every container is partitioned on ``/pk``.

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

CONTAINERS: tuple[ContainerSpec, ...] = (
    # docType is in every ledger query, always beside pk and an indexed field (the
    # query plans use those): a column to compare, not a fourth index per write.
    ContainerSpec(LEDGER, append_only=True, change_feed=True,
                  indexed=("seq", "createdAt", "referenceOrderId", "tenantId"), filtered=("docType",),
                  sparse=("seq", "referenceOrderId")),
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


def customer_pk(tenant_id: str, customer_id: str) -> str:
    return f"{tenant_id}:{customer_id}"


def order_pk(tenant_id: str, order_id: str) -> str:
    return f"{tenant_id}:{order_id}"

# --- Data out (issue 5): webhooks and warehouse exports ---------------------------
# * ``webhookendpoints``: per tenant. Endpoints (URL, event types, sealed secrets, health).
# * ``webhookmessages``: per tenant. The outbox: one message per event, body kept
#   byte-exact so every retry signs the same bytes.
# * ``webhookdeliveries``: per endpoint (``tenantId:endpointId``). One task per
#   message and endpoint (and per replay): status, attempts, next attempt.
# * ``webhookattempts``: per tenant. Every attempt (status, latency, error):
#   append-only; the tenant-admins' delivery log and the export's source.
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
