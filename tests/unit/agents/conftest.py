"""An agent's world in process: the tenant ``acme`` with an active rule set, a reward
catalogue, a customer with an email and a credited order, an agent key and its active
guardrail policy; MCP sessions with the official client through the real ASGI app."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest

from shared.app.auth import Role
from shared.audit.log import Actor
from shared.app.customers import CustomerProfile
from shared.rules import models
from shared.spend.catalogue import NewReward
from tests.conftest import TenantKeys, auth, drain, order_body

ADMIN = Actor("testadmin001", "tenant-admin")
RULES = ('rule "Base earn" then earn floor(order.total * 10) points\n'
         'rule "Big basket double" when order.total >= 50 then multiply earned by 2\n')

POLICY: dict[str, Any] = {
    "description": "support agent", "tools": ["*"], "personalFields": [],
    "hardLimits": {"pointsPerAction": 1000, "pointsPerCustomerPerDay": 2000, "agentDailyBudget": 5000},
    "softLimits": {"pointsPerAction": 300},
    "rewardCategories": ["drinks", "food"], "requireConsent": True,
}


@dataclass
class World:
    tenant: TenantKeys
    agent: str        # the agent key (secret)
    agent_id: str     # its key id


def activate_rules(platform, tenant_id: str) -> None:
    reason = models.Reason(code="new-programme", text="tests")
    version = platform.rule_admin.save_version(tenant_id, models.SaveVersionInput(
        ruleSetId="main", source=RULES, reason=reason), ADMIN).version
    platform.rule_admin.activate(tenant_id, models.ActivateInput(
        target=models.VersionRef(ruleSetId="main", version=version), reason=reason), ADMIN)


def set_policy(platform, tenant_id: str, policy: dict[str, Any], policy_id: str = "default") -> int:
    saved = platform.agents.policies.save(tenant_id, policy_id, policy, "tests", "admin")
    platform.agents.policies.activate(tenant_id, policy_id, saved["version"], "tests", "admin")
    return saved["version"]


def credit(client, platform, merchant: str, customer_id: str, order_id: str, amount: str) -> None:
    sent = client.post("/v1/orders", json=order_body(customer_id, order_id, amount), headers=auth(merchant))
    assert sent.status_code in (200, 202), sent.text
    drain(platform)


@pytest.fixture
def world(platform, tenant, client) -> World:
    activate_rules(platform, "acme")
    for reward in ({"rewardId": "coffee", "name": "Coffee", "pointsCost": 100, "category": "drinks"},
                   {"rewardId": "mug", "name": "Mug", "pointsCost": 150, "category": "merch"},
                   {"rewardId": "cake", "name": "Cake", "pointsCost": 1000, "category": "food"}):
        platform.spend.catalogue.create("acme", NewReward.model_validate(reward))
    platform.customers.register("acme", CustomerProfile(customerId="ann", joinDate=date(2025, 1, 1),
                                                        email="ann@example.com", name="Ann Example"))
    credit(client, platform, tenant.merchant, "ann", "o-ann-1", "20.00")  # 200 points; no double below 50
    set_policy(platform, "acme", POLICY)
    issued = platform.keys.issue("acme", Role.AGENT, None, label="support bot")
    return World(tenant, issued.secret_key, issued.key_id)
