"""Event schemas (one JSON Schema file per event type and version) and their registry."""

from shared.schemas.registry import (
    REGISTRY,
    EventSchemaViolation,
    SchemaRegistry,
    UnknownEventType,
    personal_data_fields,
)

__all__ = ["REGISTRY", "EventSchemaViolation", "SchemaRegistry", "UnknownEventType", "personal_data_fields"]
