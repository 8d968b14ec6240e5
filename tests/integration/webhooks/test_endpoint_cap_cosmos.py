"""The per-tenant webhook endpoint cap under 20 concurrent registrations, on Cosmos DB
(cosmosdb-server): the same check as tests/unit/webhooks/test_endpoint_cap.py, whose slot
documents rely on the partition batch being atomic in the real adapter too."""

from __future__ import annotations

import pytest

from shared.webhooks.service import MAX_ENDPOINTS_PER_TENANT, WebhookService
from tests.unit.webhooks.test_endpoint_cap import fill_then_race

pytestmark = pytest.mark.cosmos


def test_twenty_concurrent_registrations_never_exceed_the_cap_on_cosmos(cosmos_store, platform, clock) -> None:
    webhooks = WebhookService(cosmos_store, clock, platform.key_provider)
    fill_then_race(webhooks, cosmos_store, "acme", MAX_ENDPOINTS_PER_TENANT - 5)
