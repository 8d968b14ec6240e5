"""Rule performance: a pre-aggregated projection of the ledger, fed by the change feed, so a
12-month ``rulePerformance`` query reads at most 366 documents (one per day) instead of
scanning the ledger.

**What is counted, per (tenant, rule set, version, UTC day), per rule and per experiment arm**
(``-`` when no experiment ran):

* ``evaluated``: orders whose rule evaluation reached the rule (trace status ``applied``,
  ``not-matched`` or ``failed``; a rule ``skipped`` because an earlier one stopped evaluation
  was not evaluated), from the order record's trace, which ingestion already writes with
  every credited or held order (``shared.rules.result``: which rules matched, per order);
* ``matched``: orders where the rule's conditions held (the trace's ``matched: true``);
* ``points``: points of the EARN entries whose lot the rule produced (``attributes.rule``);
* per day and arm also the orders (``orders``) and all points (``points``) of the version, for
  each rule's share of all points.

**Exactly once under redelivery.** The change feed delivers at least once and the projector
re-projects after a restart. Each counted ledger document leaves a marker (``c|<pk>|<id>``)
in the day's partition, written in the same atomic batch as the day's new counters (with the
counter document's ETag as precondition): a document seen again finds its marker and is not
counted twice, and two projectors racing on one day retry on the precondition. The markers
are never read by queries.

The trace holds at most ``MAX_TRACE_ITEMS`` (200) rules per order: for a rule set with more
rules the later rules' counts would be short (the rule budget keeps real sets far smaller).
Days are UTC days of the ledger's ``createdAt``; weeks are ISO weeks (Monday), months calendar
months, both of UTC days."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Iterable, Literal

from shared.errors import BatchFailed, PreconditionFailed
from shared.ledger.entries import ENTRY_DOC, ORDER_DOC
from shared.store.layout import SYSTEM
from shared.store.port import Create, DocumentStore, Upsert, read_many

COUNTER_ID = "counters"
NO_ARM = "-"
EVALUATED = ("applied", "not-matched", "failed")
MAX_DAYS = 366
Granularity = Literal["day", "week", "month"]


def partition(tenant_id: str, rule_set_id: str, version: int, day: str) -> str:
    return f"ruleperf|{tenant_id}|{rule_set_id}|{version}|{day}"


@dataclass(frozen=True)
class Contribution:
    """What one ledger document adds to one day's counters."""

    pk: str
    marker: str
    tenant_id: str
    rule_set_id: str
    version: int
    day: str
    arm: str
    # rule -> (evaluated, matched, points)
    rules: tuple[tuple[str, int, int, int], ...]
    orders: int
    points: int


def contribution(doc: dict[str, Any]) -> Contribution | None:
    kind = doc.get("docType")
    rule_set_id, version = doc.get("ruleSetId"), doc.get("ruleSetVersion")
    if kind not in (ENTRY_DOC, ORDER_DOC) or not rule_set_id or version is None or not doc.get("createdAt"):
        return None
    day = doc["createdAt"][:10]
    arm = doc.get("arm") or NO_ARM
    base = dict(tenant_id=doc["tenantId"], rule_set_id=rule_set_id, version=int(version), day=day, arm=arm,
                pk=partition(doc["tenantId"], rule_set_id, int(version), day), marker=f"c|{doc['pk']}|{doc['id']}")
    if kind == ORDER_DOC:
        if doc.get("status") not in ("credited", "held"):
            return None
        rules: dict[str, list[int]] = {}
        for item in doc.get("trace") or ():
            name = item.get("rule")
            if not name or item.get("status") not in EVALUATED:
                continue
            counts = rules.setdefault(name, [0, 0, 0])
            counts[0] += 1
            counts[1] += 1 if item.get("matched") is True else 0
        return Contribution(rules=tuple((r, c[0], c[1], 0) for r, c in sorted(rules.items())), orders=1, points=0,
                            **base)
    if doc.get("entryType") != "EARN" or not doc.get("signedAmount"):
        return None
    amount = int(doc["signedAmount"])
    rule = (doc.get("attributes") or {}).get("rule")
    return Contribution(rules=((rule, 0, 0, amount),) if rule else (), orders=0, points=amount, **base)


def _add(counters: dict[str, Any], c: Contribution) -> None:
    arm = counters.setdefault("arms", {}).setdefault(c.arm, {"orders": 0, "points": 0, "rules": {}})
    arm["orders"] += c.orders
    arm["points"] += c.points
    for rule, evaluated, matched, points in c.rules:
        slot = arm["rules"].setdefault(rule, [0, 0, 0])
        slot[0] += evaluated
        slot[1] += matched
        slot[2] += points


class RulePerformance:
    def __init__(self, store: DocumentStore) -> None:
        self._store = store

    # --- the projection (a projector subscriber) -------------------------------------------

    def project(self, docs: Iterable[dict[str, Any]]) -> int:
        """Count these ledger documents (each at most once, ever); returns documents counted."""
        by_partition: dict[str, list[Contribution]] = defaultdict(list)
        for doc in docs:
            found = contribution(doc)
            if found is not None:
                by_partition[found.pk].append(found)
        counted = 0
        for pk, contributions in by_partition.items():
            counted += self._apply(pk, contributions)
        return counted

    def _apply(self, pk: str, contributions: list[Contribution]) -> int:
        unique = list({c.marker: c for c in contributions}.values())
        for _ in range(50):
            markers = read_many(self._store, SYSTEM, [(pk, c.marker) for c in unique])
            fresh = [c for c, m in zip(unique, markers) if m is None]
            if not fresh:
                return 0
            current = self._store.read(SYSTEM, pk, COUNTER_ID)
            first = fresh[0]
            counters = dict(current) if current is not None else {
                "id": COUNTER_ID, "pk": pk, "docType": "rulePerformance", "tenantId": first.tenant_id,
                "ruleSetId": first.rule_set_id, "version": first.version, "day": first.day, "arms": {}}
            etag = counters.pop("_etag", None)
            counters.pop("_ts", None)
            for c in fresh:
                _add(counters, c)
            operations = [Create({"id": c.marker, "pk": pk, "docType": "rulePerformanceMarker"}) for c in fresh]
            operations.append(Create(counters) if etag is None else Upsert(counters, if_match=etag))
            try:
                self._store.batch(SYSTEM, pk, operations)
                return len(fresh)
            except (BatchFailed, PreconditionFailed):
                continue  # another projector counted some of these meanwhile: read again
        raise AssertionError(f"rule performance counters of {pk} kept changing under us")

    # --- the query ---------------------------------------------------------------------

    def read(self, tenant_id: str, rule_set_id: str, version: int, start: date, end: date,
             granularity: Granularity) -> list[dict[str, Any]]:
        """Per bucket, arm and rule: evaluated, matched, points and share of all points, in bucket
        order; buckets without orders are left out. Reads one document per day of the range."""
        days = (end - start).days + 1
        assert 1 <= days <= MAX_DAYS, "the range is 1 to 366 days"
        keys = [(partition(tenant_id, rule_set_id, version, (start + timedelta(d)).isoformat()), COUNTER_ID)
                for d in range(days)]
        buckets: dict[tuple[str, str], dict[str, Any]] = {}
        for doc in read_many(self._store, SYSTEM, keys):
            if doc is None:
                continue
            bucket = bucket_of(date.fromisoformat(doc["day"]), granularity)
            for arm, counts in doc.get("arms", {}).items():
                slot = buckets.setdefault((bucket, arm), {"orders": 0, "points": 0, "rules": {}})
                slot["orders"] += counts["orders"]
                slot["points"] += counts["points"]
                for rule, (evaluated, matched, points) in counts["rules"].items():
                    rule_slot = slot["rules"].setdefault(rule, [0, 0, 0])
                    rule_slot[0] += evaluated
                    rule_slot[1] += matched
                    rule_slot[2] += points
        out = []
        for (bucket, arm), slot in sorted(buckets.items()):
            for rule, (evaluated, matched, points) in sorted(slot["rules"].items()):
                out.append({"period": bucket, "arm": None if arm == NO_ARM else arm, "rule": rule,
                            "ordersEvaluated": evaluated, "ordersMatched": matched, "pointsIssued": points,
                            "shareOfPoints": points / slot["points"] if slot["points"] else 0.0,
                            "orders": slot["orders"]})
        return out


def bucket_of(day: date, granularity: Granularity) -> str:
    if granularity == "day":
        return day.isoformat()
    if granularity == "week":
        return (day - timedelta(days=day.weekday())).isoformat()
    return day.replace(day=1).isoformat()
