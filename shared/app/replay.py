"""Replay of the poison store: put poisoned items back through the pipeline once
their cause is fixed.

* ``ingest`` entries (order messages) are republished to the order bus, so they
  take the normal path again (ingest handler, ledger, projections). Entries of
  one customer are republished in the order the API accepted them
  (``acceptedAt``), in one ``publish`` call, which keeps per-key order.
* ``projection`` entries (ledger documents from the change feed) are applied to
  the projector again, one by one.

Guarantees:

* an entry leaves the poison store only after its item was durably accepted
  (the bus acknowledged the publish, or the projector applied the document);
  if the bus is unavailable nothing is removed and ``BusUnavailable`` is raised;
* replay is at-least-once: if removing an entry fails after its item went
  through, a later replay sends it again, which changes nothing (ingestion and
  projection are idempotent);
* an ingest entry whose body is still not a valid order message is left in
  place and reported as skipped (republishing it would only poison it again);
  entries of unknown sources are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.app.messages import MalformedMessage, OrderMessage, parse_order_message
from shared.app.poison import PoisonStore
from shared.app.projections import Projector
from shared.bus.port import BusMessage, OrderBus

INGEST = "ingest"
PROJECTION = "projection"


@dataclass(frozen=True)
class ReplayItem:
    poison_id: str
    tenant_id: str
    source: str
    detail: str = ""


@dataclass
class ReplayReport:
    republished: list[ReplayItem] = field(default_factory=list)
    reprojected: list[ReplayItem] = field(default_factory=list)
    skipped: list[ReplayItem] = field(default_factory=list)
    failed: list[ReplayItem] = field(default_factory=list)

    @property
    def replayed(self) -> int:
        return len(self.republished) + len(self.reprojected)


def replay_poison(
    poison: PoisonStore,
    bus: OrderBus,
    projector: Projector,
    *,
    tenant_id: str | None = None,
    sources: tuple[str, ...] = (INGEST, PROJECTION),
    limit: int = 1000,
) -> ReplayReport:
    """Replay up to ``limit`` of the oldest poison entries (of one tenant, or all)."""
    entries = poison.list(tenant_id, limit=limit) if tenant_id is not None else poison.list_all(limit=limit)
    report = ReplayReport()
    if INGEST in sources:
        _replay_ingest(poison, bus, [e for e in entries if e.get("source") == INGEST], report)
    if PROJECTION in sources:
        _replay_projection(poison, projector, [e for e in entries if e.get("source") == PROJECTION], report)
    for entry in entries:
        if entry.get("source") not in (INGEST, PROJECTION):
            report.skipped.append(_item(entry, f"unknown source {entry.get('source')!r}"))
    return report


def _replay_ingest(poison: PoisonStore, bus: OrderBus, entries: list[dict[str, Any]], report: ReplayReport) -> None:
    valid: list[tuple[OrderMessage, dict[str, Any]]] = []
    for entry in entries:
        try:
            valid.append((parse_order_message(entry["body"]), entry))
        except MalformedMessage as bad:
            report.skipped.append(_item(entry, f"still malformed: {bad.reason}"))
    if not valid:
        return
    # Stable sort: one customer's orders go back in the order the API accepted them.
    valid.sort(key=lambda pair: pair[0].accepted_at)
    bus.publish([BusMessage(partition_key=message.partition_key, body=entry["body"]) for message, entry in valid])
    for message, entry in valid:
        _remove(poison, entry, report.republished, report)


def _replay_projection(poison: PoisonStore, projector: Projector, entries: list[dict[str, Any]],
                       report: ReplayReport) -> None:
    for entry in entries:
        body = entry["body"]
        if not isinstance(body, dict):
            report.skipped.append(_item(entry, "body is not a document"))
            continue
        try:
            projector.apply([body])
        except Exception as exc:  # noqa: BLE001 - one bad document must not stop the others
            report.failed.append(_item(entry, f"{type(exc).__name__}: {exc}"))
            continue
        _remove(poison, entry, report.reprojected, report)


def _remove(poison: PoisonStore, entry: dict[str, Any], done: list[ReplayItem], report: ReplayReport) -> None:
    try:
        poison.remove(entry["pk"], entry["id"])
    except Exception as exc:  # noqa: BLE001 - the item went through; a later replay is harmless
        report.failed.append(_item(entry, f"replayed, but not removed from the poison store: {exc}"))
        return
    done.append(_item(entry))


def _item(entry: dict[str, Any], detail: str = "") -> ReplayItem:
    return ReplayItem(poison_id=entry["id"], tenant_id=entry.get("pk", ""), source=str(entry.get("source")),
                      detail=detail)
