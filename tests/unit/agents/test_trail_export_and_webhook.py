"""The decision trail leaves Accrue two ways: the nightly export's ``agentdecisions`` subject
(rows valid against export.agentdecisions.v1, no personal data) and, for escalations, the
signed ``agent.escalated`` webhook (valid against its schema, ids and points only)."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.exports.keys import resolver
from shared.schemas import REGISTRY
from shared.store.layout import WEBHOOK_MESSAGES
from shared.store.port import Filter, Query
from tests.unit.agents.conftest import World


def _trail_rows(platform, manifest, fmt: str) -> list[dict]:  # type: ignore[no-untyped-def]
    entry = next(f for f in manifest["files"] if f["subject"] == "agentdecisions")
    if fmt == "ndjson":
        plain = b"".join(platform.exports.file_plaintext("acme", manifest, entry))
        return [json.loads(line) for line in gzip.decompress(plain).splitlines()]
    data = b"".join(platform.exports.sink.open(entry["path"], resolver(platform.exports.export_keys, "acme")))
    rows = pq.read_table(pa.BufferReader(data)).to_pylist()
    # The Parquet columns: the JSON Schema's properties plus the merge columns, json columns as text.
    return [{**{k: v for k, v in row.items() if k not in ("rowKey", "rowVersion")},
             "at": row["at"].isoformat().replace("+00:00", "Z"),
             **{k: json.loads(row[k]) if row[k] is not None else None for k in ("arguments", "reasons", "result")}}
            for row in rows]


@pytest.mark.parametrize("fmt", ["parquet", "ndjson"])
def test_the_trail_is_exported_as_its_own_subject(platform, clock, world: World, monkeypatch, fmt: str) -> None:
    from shared.exports import service

    monkeypatch.setattr(service, "DEFAULT_FORMAT", fmt)
    principal = platform.keys.verify(world.agent)
    platform.agents.call(principal, "find_customer", {"email": "ann@example.com"})
    platform.agents.call(principal, "get_balance", {"customerId": "ann"})
    clock.advance(timedelta(minutes=5))
    manifest = platform.exports.run("acme")
    rows = _trail_rows(platform, manifest, fmt)
    assert [r["tool"] for r in rows] == ["find_customer", "get_balance"]
    if fmt == "ndjson":
        for row in rows:
            REGISTRY.validate(row, "export.agentdecisions", 1)
    assert "ann@example.com" not in json.dumps(rows) and rows[0]["arguments"] == {"email": "[redacted]"}
    # The next run exports only what came after.
    platform.agents.call(principal, "get_balance", {"customerId": "ann"})
    clock.advance(timedelta(minutes=5))
    assert len(_trail_rows(platform, platform.exports.run("acme"), fmt)) == 1


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
