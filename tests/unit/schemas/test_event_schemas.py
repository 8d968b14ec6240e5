"""The event schema registry: the CI gate against personal data in events, and
validation at publish time (refused events go to the poison store, not lost)."""

from __future__ import annotations

import json

import pytest

from shared.app.replay import replay_poison
from shared.bus.port import BusMessage
from shared.privacy.personal import PERSONAL_FIELDS
from shared.schemas import REGISTRY, EventSchemaViolation, SchemaRegistry, personal_data_fields
from shared.schemas.checked_bus import SchemaCheckedBus
from shared.schemas.registry import EVENTS_DIR, PERSONAL_DATA_ALLOWED
from shared.store.layout import BALANCES, ORDER_STATUS, customer_pk, order_pk
from tests.conftest import auth, drain, order_body


def test_ci_gate_no_event_schema_defines_a_personal_data_field() -> None:
    assert len(REGISTRY) >= 3 and {s.event_type for s in REGISTRY} >= {"order.received", "projection.balance"}
    offenders = {}
    for entry in SchemaRegistry(EVENTS_DIR):
        found = personal_data_fields(entry.schema)
        allowed = entry.schema.get("x-personal-data-allowed") == "customers-export" \
            and entry.event_type in PERSONAL_DATA_ALLOWED
        if found and not allowed:
            offenders[entry.path.name] = found
    assert not offenders, f"event schemas carry personal data: {offenders}"


def test_the_gate_catches_names_suffixes_nesting_and_annotations() -> None:
    schema = {"type": "object", "properties": {
        "order": {"type": "object", "properties": {"customerEmail": {"type": "string"}}},
        "notes": {"type": "string", "x-personal-data": True},
        "tenantId": {"type": "string"}},
        "$defs": {"addr": {"type": "object", "properties": {"postal_address": {}}}}}
    assert sorted(personal_data_fields(schema)) == [
        "/$defs/addr/properties/postal_address", "/properties/notes", "/properties/order/properties/customerEmail"]
    assert "email" in PERSONAL_FIELDS


def test_registry_discovers_files_and_refuses_bad_ones(tmp_path) -> None:
    (tmp_path / "webhook.points-credited.v1.json").write_text(json.dumps({
        "x-event-type": "webhook.points-credited", "x-event-version": 1, "type": "object",
        "additionalProperties": False, "properties": {"points": {"type": "integer"}}}))
    registry = SchemaRegistry(tmp_path)
    assert registry.problems({"points": 3}, "webhook.points-credited", 1) == []
    assert "unexpected" in registry.problems({"points": 3, "email": "x"}, "webhook.points-credited", 1)[0]
    (tmp_path / "bad.event.v1.json").write_text("{}")
    with pytest.raises(Exception, match="x-event-type"):
        SchemaRegistry(tmp_path)


def test_real_messages_and_projection_outputs_match_their_schemas(client, platform, tenant) -> None:
    client.post("/v1/orders", json=order_body("c1", "o1", idempotencyKey="k1"), headers=auth(tenant.merchant))
    drain(platform)
    REGISTRY.validate(platform.store.read(BALANCES, customer_pk("acme", "c1"), "balance"), "projection.balance", 1)
    REGISTRY.validate(platform.store.read(ORDER_STATUS, order_pk("acme", "o1"), "o1"), "projection.orderstatus", 1)


def test_an_event_off_its_schema_is_refused_and_kept_for_replay(platform, tenant) -> None:
    good = {"type": "order.received", "version": 1, "tenantId": "acme", "acceptedAt": "2026-11-01T12:00:00Z",
            "order": {"customerId": "c1", "orderId": "o9", "amount": "5.00", "currency": "EUR",
                      "timestamp": "2026-11-01T11:00:00Z"}}
    bad = json.loads(json.dumps(good))
    bad["order"]["orderId"], bad["order"]["email"] = "o10", "leak@example.com"
    with pytest.raises(EventSchemaViolation) as caught:
        platform.event_bus.publish([BusMessage("acme:c1", good), BusMessage("acme:c1", bad)])
    assert "email" in caught.value.message and caught.value.details["poisonIds"]
    assert platform.bus.depth() == 1  # the good one went through
    kept = platform.poison.list("acme")
    assert len(kept) == 1 and kept[0]["body"]["order"]["orderId"] == "o10" and "schema" in kept[0]["reason"]
    unknown = {"type": "order.shipped", "version": 1}
    with pytest.raises(EventSchemaViolation, match="no schema is registered"):
        platform.event_bus.publish([BusMessage("acme:c1", unknown)])


def test_the_api_path_publishes_through_the_checked_bus(platform) -> None:
    assert isinstance(platform.event_bus, SchemaCheckedBus)
    assert platform.intake._bus is platform.event_bus  # noqa: SLF001


def _entry_type_enums(node: object) -> list[list[str]]:
    found: list[list[str]] = []
    if isinstance(node, dict):
        spec = node.get("properties", {}).get("entryType") if isinstance(node.get("properties"), dict) else None
        if isinstance(spec, dict) and "enum" in spec:
            found.append(spec["enum"])
        for value in node.values():
            found.extend(_entry_type_enums(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_entry_type_enums(value))
    return found


def test_every_entry_type_the_ledger_writes_is_allowed_by_every_schema_that_enumerates_them() -> None:
    # A new entry type missing from a webhook schema would send every such change to poison.
    from shared.ledger.entries import EntryType

    enums = [(entry.path.name, enum) for entry in SchemaRegistry(EVENTS_DIR)
             for enum in _entry_type_enums(entry.schema)]
    assert enums, "no schema enumerates entry types: the check would be empty"
    for name, enum in enums:
        assert set(enum) == {t.value for t in EntryType}, f"{name}: entryType enum drifted from EntryType"
