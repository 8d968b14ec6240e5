"""Signed webhooks (Standard Webhooks): endpoints, the outbox, the delivery worker.

Public entry points (on ``Platform``):

* ``platform.webhooks``: ``WebhookService`` — endpoints, ``publish``,
  ``rule_set_activated(tenant_id, rule_set_id, version, activated_at=..., arm=...)``,
  ``tier_changed(tenant_id, customer_id, from_tier, to_tier, source_id=..., changed_at=...)``,
  delivery log and replay; ``project(docs)`` is the change-feed subscriber.
* ``platform.webhook_worker``: ``DeliveryWorker.run_once()`` — the timer job.

See ``docs/webhooks.md``.
"""

from shared.webhooks.delivery import DeliveryWorker, RoundReport
from shared.webhooks.events import EVENT_TYPES
from shared.webhooks.service import WebhookService
from shared.webhooks.ssrf import TestAllowance, UnsafeUrl, check_url

__all__ = ["DeliveryWorker", "EVENT_TYPES", "RoundReport", "TestAllowance", "UnsafeUrl", "WebhookService",
           "check_url"]
