"""The audit log of administrative acts (hash-chained, append-only, archived)."""

from shared.audit.log import PLATFORM_CHAIN, SYSTEM_ACTOR, Actor, AuditLog, record_hash

__all__ = ["PLATFORM_CHAIN", "SYSTEM_ACTOR", "Actor", "AuditLog", "record_hash"]
