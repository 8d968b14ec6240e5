"""Rule performance: a pre-aggregated projection of the ledger, fed by the change feed, so a
12-month ``rulePerformance`` query reads at most 366 documents (one per day; 13 by whole
months: each month also keeps a rollup) instead of scanning the ledger.

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
re-projects after a restart. The documents of one (tenant, rule set, version, month) share a
partition: the day counters (``day|<date>``), the month rollup (``month``) and, for each
counted ledger document, a marker (``c|<pk>|<id>``) written in the same atomic batch as the
new counters (with the counters' ETags as preconditions): a document seen again finds its marker and is not
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
from shared.store.contention import attempts
from shared.store.layout import SYSTEM
from shared.store.port import MAX_BATCH_OPERATIONS, Create, DocumentStore, Upsert, inline_reads, read_many

MONTH_ID = "month"
NO_ARM = "-"
EVALUATED = ("applied", "not-matched", "failed")
MAX_DAYS = 366
Granularity = Literal["day", "week", "month"]


def partition(tenant_id: str, rule_set_id: str, version: int, day: str) -> str:
    """The partition of a day's documents: its month's."""
    return f"ruleperf|{tenant_id}|{rule_set_id}|{version}|{day[:7]}"


def day_id(day: str) -> str:
    return f"day|{day}"


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


# Markers per batch: the rest of MAX_BATCH_OPERATIONS is for 31 day counters and the month's.
CONTRIBUTIONS_PER_BATCH = MAX_BATCH_OPERATIONS - 32
assert CONTRIBUTIONS_PER_BATCH > 0


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
            unique = list({c.marker: c for c in contributions}.values())
            # One batch holds a marker per contribution plus a counter per day and the
            # month's rollup (at most 32): chunks keep it within a transactional batch
            # (a busy month's feed page held 500+ and the projector stopped on it).
            for start in range(0, len(unique), CONTRIBUTIONS_PER_BATCH):
                counted += self._apply(pk, unique[start:start + CONTRIBUTIONS_PER_BATCH])
        return counted

    def _apply(self, pk: str, unique: list[Contribution]) -> int:
        assert len(unique) <= CONTRIBUTIONS_PER_BATCH
        for _ in attempts():
            markers = read_many(self._store, SYSTEM, [(pk, c.marker) for c in unique])
            fresh = [c for c, m in zip(unique, markers, strict=True) if m is None]
            if not fresh:
                return 0
            by_day: dict[str, list[Contribution]] = defaultdict(list)
            for c in fresh:
                by_day[c.day].append(c)
            operations: list[Any] = [Create({"id": c.marker, "pk": pk, "docType": "rulePerformanceMarker"})
                                     for c in fresh]
            for day, counted in by_day.items():
                operations.append(self._counted(pk, day_id(day), day, counted))
            operations.append(self._counted(pk, MONTH_ID, fresh[0].day[:7], fresh))
            try:
                self._store.batch(SYSTEM, pk, operations)
                return len(fresh)
            except (BatchFailed, PreconditionFailed):
                continue  # another projector counted some of these meanwhile: read again
        raise AssertionError(f"rule performance counters of {pk} kept changing under us")

    def _counted(self, pk: str, doc_id: str, period: str, counted: list[Contribution]) -> Any:
        """The operation adding ``counted`` to one counters document (conditional on its ETag)."""
        current = self._store.read(SYSTEM, pk, doc_id)
        first = counted[0]
        kind = "rulePerformanceMonth" if doc_id == MONTH_ID else "rulePerformance"
        counters = dict(current) if current is not None else {
            "id": doc_id, "pk": pk, "docType": kind, "tenantId": first.tenant_id, "ruleSetId": first.rule_set_id,
            "version": first.version, "day": period, "arms": {}}
        etag = counters.pop("_etag", None)
        counters.pop("_ts", None)
        for c in counted:
            _add(counters, c)
        return Create(counters) if etag is None else Upsert(counters, if_match=etag)

    # --- the query ---------------------------------------------------------------------

    def read(self, tenant_id: str, rule_set_id: str, version: int, start: date, end: date,
             granularity: Granularity) -> dict[str, Any]:
        """Per rule and arm, a series over the periods (``as_series``): evaluated, matched, points,
        share of all points and all orders; periods without orders are left out. Reads one document per day of the range, or
        one per month when the range is whole months by month."""
        days = (end - start).days + 1
        assert 1 <= days <= MAX_DAYS, "the range is 1 to 366 days"
        if granularity == "month" and start.day == 1 and (end + timedelta(days=1)).day == 1:
            # Whole months: their rollups, one document a month.
            months = sorted({(start + timedelta(d)).isoformat()[:7] for d in range(days)})
            keys = [(partition(tenant_id, rule_set_id, version, m), MONTH_ID) for m in months]
        else:
            keys = []
            for d in range(days):
                day = (start + timedelta(d)).isoformat()
                keys.append((partition(tenant_id, rule_set_id, version, day), day_id(day)))
        if inline_reads(self._store):
            # The embedded store answers a point read in microseconds; measured several times faster
            # than its read_many for these keys (bench/bench_graphql.py). Elsewhere: one call for all.
            docs = [self._store.read(SYSTEM, pk, id) for pk, id in keys]
        else:
            docs = read_many(self._store, SYSTEM, keys)
        buckets: dict[tuple[str, str], dict[str, Any]] = {}
        for doc in docs:
            if doc is None:
                continue
            period = doc["day"] if len(doc["day"]) == 10 else doc["day"] + "-01"  # a month rollup: its first day
            bucket = bucket_of(date.fromisoformat(period), granularity)
            for arm, counts in doc.get("arms", {}).items():
                slot = buckets.setdefault((bucket, arm), {"orders": 0, "points": 0, "rules": {}})
                slot["orders"] += counts["orders"]
                slot["points"] += counts["points"]
                for rule, (evaluated, matched, points) in counts["rules"].items():
                    rule_slot = slot["rules"].setdefault(rule, [0, 0, 0])
                    rule_slot[0] += evaluated
                    rule_slot[1] += matched
                    rule_slot[2] += points
        return as_series(buckets)


def as_series(buckets: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """Buckets -> ``periods`` (sorted) and one series per (rule, arm), aligned with the periods:
    the shape a chart draws, and far fewer objects to serialise than a row per period."""
    periods = sorted({bucket for bucket, _ in buckets})
    index = {period: n for n, period in enumerate(periods)}
    series: dict[tuple[str, str], dict[str, Any]] = {}
    for (bucket, arm), slot in buckets.items():
        at = index[bucket]
        for rule, (evaluated, matched, points) in slot["rules"].items():
            line = series.get((rule, arm))
            if line is None:
                line = series[(rule, arm)] = {
                    "rule": rule, "arm": None if arm == NO_ARM else arm,
                    **{name: [0] * len(periods) for name in ("ordersEvaluated", "ordersMatched", "pointsIssued",
                                                             "orders")},
                    "shareOfPoints": [0.0] * len(periods)}
            line["ordersEvaluated"][at] = evaluated
            line["ordersMatched"][at] = matched
            line["pointsIssued"][at] = points
            line["orders"][at] = slot["orders"]
            line["shareOfPoints"][at] = points / slot["points"] if slot["points"] else 0.0
    return {"periods": periods, "series": [series[key] for key in sorted(series, key=lambda k: (k[0], k[1]))]}


def bucket_of(day: date, granularity: Granularity) -> str:
    if granularity == "day":
        return day.isoformat()
    if granularity == "week":
        return (day - timedelta(days=day.weekday())).isoformat()
    return day.replace(day=1).isoformat()
