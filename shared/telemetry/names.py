"""The names of the platform's own metrics, in one place.

The code records under these names (``shared.telemetry.metrics``) and the
regional alert rules in ``bicep/`` query them; a test checks that every alert
names a metric declared here. Dotted OpenTelemetry names; Prometheus sees them
with dots as underscores. Renaming one is a breaking change for operators'
dashboards and alerts.
"""

from __future__ import annotations

ORDERS_ACCEPTED = "accrue.orders.accepted"
ORDERS_CREDITED = "accrue.orders.credited"
ORDERS_HELD = "accrue.orders.held"
ORDERS_REJECTED = "accrue.orders.rejected"
INGEST_LAG = "accrue.ingest.lag"  # seconds, accepted -> committed (histogram)
PROJECTION_LAG = "accrue.projection.lag"  # seconds, committed -> read model (histogram)
BUS_BACKLOG = "accrue.bus.backlog"
POISON_ITEMS = "accrue.poison.items"
DEFERRED_BATCHES = "accrue.ingest.deferred_batches"
RULE_EVALUATION_TIME = "accrue.rules.evaluation.duration"
WEBHOOK_ATTEMPTS = "accrue.webhook.attempts"
WEBHOOK_DELIVERY_LATENCY = "accrue.webhook.delivery.latency"
WEBHOOK_ENDPOINTS_FAILING = "accrue.webhook.endpoints.failing"
WEBHOOK_ENDPOINTS_DISABLED = "accrue.webhook.endpoints.disabled"
REDEMPTIONS = "accrue.redemptions"
PARTNER_CIRCUIT_STATE = "accrue.partner.circuit.state"
RECONCILIATION_DRIFT = "accrue.reconciliation.drift"
JOB_PROGRESS = "accrue.jobs.progress"
COSMOS_REQUEST_CHARGE = "accrue.cosmos.request_charge"
HTTP_SERVER_DURATION = "http.server.request.duration"
# Added with the metrics (issue 15): state gauges, and the timer jobs' runs.
POISON_PENDING = "accrue.poison.pending"  # items resting in the poison stores (gauge)
PROJECTION_BEHIND = "accrue.projection.behind"  # seconds, oldest unprojected change (gauge; 0 caught up)
JOB_RUNS = "accrue.jobs.runs"
JOB_DURATION = "accrue.jobs.duration"
