"""Webhook events of redemptions: a reservation is ``points.reserved`` (not
``points.held``), its confirmation or release a ``transaction.committed`` that
names what it settles; held earns keep ``points.held`` / ``points.released``."""

from __future__ import annotations

from shared.schemas import REGISTRY
from shared.webhooks.events import events_from_ledger, schema_name
from tests.conftest import auth
from tests.unit.spend.conftest import fund


def test_redemption_entries_map_to_sensible_events(client, platform, tenant) -> None:
    fund(platform, "acme", "c1", 1000)
    url = "/v1/customers/c1/redemptions"
    first = client.post(url, json={"idempotencyKey": "a", "points": 100, "mode": "reserve"},
                        headers=auth(tenant.merchant)).json()
    client.post(f"{url}/{first['redemptionId']}/confirm", headers=auth(tenant.merchant))
    second = client.post(url, json={"idempotencyKey": "b", "points": 200, "mode": "reserve"},
                         headers=auth(tenant.merchant)).json()
    client.post(f"{url}/{second['redemptionId']}/cancel", headers=auth(tenant.merchant))
    client.post(url, json={"idempotencyKey": "c", "points": 50}, headers=auth(tenant.merchant))
    entries = platform.ledger.entries("acme", "c1", newest_first=False)
    events = events_from_ledger(entries)
    assert [e.type for e in events] == ["transaction.committed", "points.reserved", "transaction.committed",
                                        "points.reserved", "transaction.committed", "transaction.committed"]
    assert events[1].data["reserved"] == 100 and events[1].data["redemptionId"] == first["redemptionId"]
    assert events[2].data["settlesEntryId"] == entries[1]["id"]
    assert events[4].data["entryType"] == "RELEASE" and events[4].data["points"] == 200
    for event in events:
        REGISTRY.validate({"type": event.type, "timestamp": event.occurred_at, "data": event.data},
                          schema_name(event.type), 1)


def test_held_earns_keep_their_events() -> None:
    base = {"docType": "entry", "pk": "t:c", "tenantId": "t", "customerId": "c", "createdAt": "x",
            "runningBalance": 0, "runningPending": 10, "transactionId": "tx"}
    held = dict(base, id="e-1", entryType="EARN", status="PENDING", signedAmount=10)
    approved = dict(base, id="e-2", entryType="EARN", status="COMMITTED", signedAmount=10, settlesEntryId="e-1")
    voided = dict(base, id="e-3", entryType="VOID", status="COMMITTED", signedAmount=0, settlesEntryId="e-1")
    assert [e.type for e in events_from_ledger([held, approved, voided])] == [
        "points.held", "points.released", "points.released"]
