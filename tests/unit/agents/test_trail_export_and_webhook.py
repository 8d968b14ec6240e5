"""The decision trail leaves Accrue two ways: the nightly export's ``agentdecisions`` subject
(rows valid against export.agentdecisions.v1, no personal data) and, for escalations, the
signed ``agent.escalated`` webhook (valid against its schema, ids and points only)."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta

from shared.exports.crypto import decrypt_stream
from shared.schemas import REGISTRY
from shared.store.layout import WEBHOOK_MESSAGES
from shared.store.port import Filter, Query
from tests.unit.agents.conftest import World


def test_the_trail_is_exported_as_its_own_subject(platform, clock, world: World) -> None:
    principal = platform.keys.verify(world.agent)
    platform.agents.call(principal, "find_customer", {"email": "ann@example.com"})
    platform.agents.call(principal, "get_balance", {"customerId": "ann"})
    clock.advance(timedelta(minutes=5))
    manifest = platform.exports.run("acme")
    entry = next(f for f in manifest["files"] if f["subject"] == "agentdecisions")
    plain = b"".join(decrypt_stream(platform.key_provider, platform.exports.sink.open(entry["path"]),
                                    tenant_id="acme", subject="agentdecisions", run_id=manifest["runId"]))
    rows = [json.loads(line) for line in gzip.decompress(plain).splitlines()]
    assert [r["tool"] for r in rows] == ["find_customer", "get_balance"]
    for row in rows:
        REGISTRY.validate(row, "export.agentdecisions", 1)
    assert "ann@example.com" not in gzip.decompress(plain).decode() and rows[0]["arguments"] == {"email": "[redacted]"}
    # The next run exports only what came after.
    platform.agents.call(principal, "get_balance", {"customerId": "ann"})
    clock.advance(timedelta(minutes=5))
    second = platform.exports.run("acme")
    entry = next(f for f in second["files"] if f["subject"] == "agentdecisions")
    plain = b"".join(decrypt_stream(platform.key_provider, platform.exports.sink.open(entry["path"]),
                                    tenant_id="acme", subject="agentdecisions", run_id=second["runId"]))
    assert len(gzip.decompress(plain).splitlines()) == 1


def test_an_escalation_is_announced_by_webhook(platform, world: World) -> None:
    platform.webhooks.resolver = lambda host, port: ["93.184.216.34"]
    platform.webhooks.register("acme", "https://hooks.example.com/agents", ["agent.escalated"])
    principal = platform.keys.verify(world.agent)
    quote = platform.agents.call(principal, "quote_goodwill", {"customerId": "ann", "points": 500, "note": "late",
                                                               "consentReference": "chat-1"}).result
    answer = platform.agents.call(principal, "execute_quote", {"quoteId": quote["quoteId"],
                                                               "contentHash": quote["contentHash"]})
    assert answer.decision == "escalated"
    messages = [m for m in platform.store.query(WEBHOOK_MESSAGES, Query(pk=None, filters=(
        Filter("eventType", "=", "agent.escalated"),), limit=10))]
    assert len(messages) == 1
    body = json.loads(messages[0]["body"])
    REGISTRY.validate(body, "webhook.agent.escalated", 1)
    assert body["data"] == {"caseId": answer.result["caseId"], "quoteId": quote["quoteId"], "customerId": "ann",
                            "agentKeyId": world.agent_id, "action": "goodwill", "points": 500,
                            "reasons": ["points-per-action"]}
