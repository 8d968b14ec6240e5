"""Every administrative act logs one structured line: actor (the API key id, never the
secret), action, tenant, target; a rule set act its id and version; a customer act no
customer id."""

from __future__ import annotations

import io
import json
import logging

import pytest

from shared.audit.log import Actor
from shared.telemetry.logs import handler
from tests.conftest import auth


@pytest.fixture
def acts():
    stream = io.StringIO()
    logger = logging.getLogger("accrue.audit")
    made = handler("api", stream)
    logger.addHandler(made)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(made)
    logger.setLevel(old_level)


def test_a_key_created_and_revoked_over_http_are_two_lines_naming_the_admin_key(client, tenant, platform,
                                                                                 acts) -> None:
    admin_id = platform.keys.verify(tenant.admin).key_id
    created = client.post("/v1/api-keys", json={"role": "merchant", "label": "till 4"}, headers=auth(tenant.admin))
    assert created.status_code == 201, created.text
    key_id, secret = created.json()["keyId"], created.json()["apiKey"]
    assert client.delete(f"/v1/api-keys/{key_id}", headers=auth(tenant.admin)).status_code == 200
    lines = [line for line in acts() if line["action"].startswith("apikey.")]
    assert [(l["action"], l["actor"], l["tenant"], l["target"]) for l in lines] == [
        ("apikey.created", admin_id, "acme", f"apikey:{key_id}"),
        ("apikey.revoked", admin_id, "acme", f"apikey:{key_id}")]
    assert all(l["level"] == "INFO" and isinstance(l["audit_seq"], int) for l in lines)
    assert secret not in json.dumps(acts()) and tenant.admin not in json.dumps(acts())


def test_tenant_settings_changed_over_http_is_logged(client, tenant, acts) -> None:
    changed = client.patch("/v1/tenant", json={"name": "Acme Coffee"}, headers=auth(tenant.admin))
    assert changed.status_code == 200, changed.text
    assert [l["action"] for l in acts()] == ["tenant.settings.changed"]


def test_a_rule_set_act_carries_its_id_and_version(platform, acts) -> None:
    platform.audit.record("acme", "ruleset.activated", Actor("k1", "tenant-admin"), target="ruleset:spring",
                          before=None, after={"ruleSetId": "spring", "version": 3})
    [line] = acts()
    assert (line["rule_set_id"], line["rule_set_version"], line["actor"]) == ("spring", 3, "k1")


def test_a_customer_act_logs_the_kind_of_target_only(platform, acts) -> None:
    platform.audit.record("acme", "customer.erased", Actor("k1", "tenant-admin"), target="customer:zelda-q")
    [line] = acts()
    assert line["target"] == "customer" and "zelda" not in json.dumps(line)


def test_a_system_act_names_the_system_as_actor(platform, acts) -> None:
    platform.audit.record("acme", "webhook.endpoint.disabled", None, target="webhook:e1")
    [line] = acts()
    assert line["actor"] == "system"
