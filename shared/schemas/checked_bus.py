"""A bus that publishes only events matching their registered schema.

Wraps any ``OrderBus``: each message body is validated against the registry
first. Valid messages are published as one call (per-key order kept); each
invalid one is kept in the poison store (source ``ingest``, so ``replay``
republishes it once the schema or the producer is fixed) and the call then
raises ``EventSchemaViolation`` naming the first problem and the poison entry.
An order is never silently dropped and never published unchecked.
"""

from __future__ import annotations

import logging
from typing import Sequence

from shared.app.poison import PoisonStore
from shared.bus.port import BusMessage, OrderBus, publish_async
from shared.schemas.registry import REGISTRY, EventSchemaViolation, SchemaRegistry
from shared.telemetry.logs import fields

log = logging.getLogger("accrue.schemas")
POISON_SOURCE = "ingest"


class SchemaCheckedBus:
    def __init__(self, inner: OrderBus, poison: PoisonStore, registry: SchemaRegistry = REGISTRY) -> None:
        self.inner = inner
        self._poison = poison
        self._registry = registry

    def publish(self, messages: Sequence[BusMessage]) -> None:
        valid, refused = self._check(messages)
        if valid:
            self.inner.publish(valid)
        self._refuse(refused)

    async def publish_async(self, messages: Sequence[BusMessage]) -> None:
        valid, refused = self._check(messages)
        if valid:
            await publish_async(self.inner, valid)
        self._refuse(refused)

    def _check(self, messages: Sequence[BusMessage]) -> tuple[list[BusMessage], list[tuple[str, list[str]]]]:
        valid: list[BusMessage] = []
        refused: list[tuple[str, list[str]]] = []
        for message in messages:
            problems = self._registry.problems(message.body)
            if not problems:
                valid.append(message)
                continue
            reason = "event schema: " + "; ".join(problems[:5])
            poison_id = self._poison.put(POISON_SOURCE, message.body, reason)
            log.warning("event refused by its schema: %s", problems[0],
                        extra=fields(poison_id=poison_id, source=POISON_SOURCE))
            refused.append((poison_id, problems))
        return valid, refused

    @staticmethod
    def _refuse(refused: list[tuple[str, list[str]]]) -> None:
        if refused:
            poison_id, problems = refused[0]
            raise EventSchemaViolation(
                f"{len(refused)} event(s) did not match their schema and were not published; kept in the poison "
                f"store as {', '.join(p for p, _ in refused)} for inspection and replay. First problem: {problems[0]}",
                poisonIds=[p for p, _ in refused], problems=problems[:20])

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str):  # depth(), etc. of the wrapped bus
        return getattr(self.inner, name)
