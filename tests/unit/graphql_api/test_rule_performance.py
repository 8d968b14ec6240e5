"""Rule performance: the daily counters the change feed feeds equal a full recount of the
ledger, stay equal when the feed redelivers, and answer ``rulePerformance`` by day, week
and month over GraphQL."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.store.layout import LEDGER, SYSTEM
from shared.store.port import Filter, Query
from tests.conftest import auth, drain, order_body

REASON = {"code": "campaign", "text": "rule performance"}
SOURCE = "\n".join([
    'rule "base"\n  when order.total >= 1\n  then earn floor(order.total) points',
    'rule "big basket"\n  when order.total >= 30\n  then earn 50 points',
    'rule "small"\n  when order.total < 5\n  then earn 1 points',
])
COUNTER = itertools.count()


def _activate(client, tenant) -> None:
    admin = auth(tenant.admin)
    assert client.post("/v1/rules/versions", json={"ruleSetId": "main", "source": SOURCE, "reason": REASON},
                       headers=admin).status_code == 201
    assert client.post("/v1/rules/activate", json={"target": {"ruleSetId": "main", "version": 1},
                                                   "reason": REASON}, headers=admin).status_code == 200


def recount(platform) -> dict[tuple[str, str, str], list[int]]:
    """(day, arm, rule) -> [evaluated, matched, points], straight from every ledger document."""
    counts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for doc in platform.store.changes(LEDGER, 0, 1_000_000):
        doc = doc.doc
        if doc.get("ruleSetId") != "main" or doc.get("tenantId") != "acme":
            continue
        day, arm = doc["createdAt"][:10], doc.get("arm") or "-"
        if doc.get("docType") == "order" and doc.get("status") in ("credited", "held"):
            for item in doc.get("trace") or ():
                if item.get("status") in ("applied", "not-matched", "failed"):
                    counts[(day, arm, item["rule"])][0] += 1
                    counts[(day, arm, item["rule"])][1] += item.get("matched") is True
        elif doc.get("docType") == "entry" and doc.get("entryType") == "EARN" and doc.get("attributes", {}).get("rule"):
            counts[(day, arm, doc["attributes"]["rule"])][2] += doc["signedAmount"]
    return {k: v for k, v in counts.items() if any(v)}


def projected(platform) -> dict[tuple[str, str, str], list[int]]:
    docs = platform.store.query(SYSTEM, Query(pk=None, filters=(Filter("docType", "=", "rulePerformance"),),
                                              limit=10_000))
    months = platform.store.query(SYSTEM, Query(pk=None, filters=(Filter("docType", "=", "rulePerformanceMonth"),),
                                                limit=10_000))
    rollup: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for doc in months:
        for arm, counts in doc["arms"].items():
            for rule, values in counts["rules"].items():
                rollup[(doc["day"], arm, rule)] = list(values)
    summed: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for doc in docs:
        for arm, counts in doc["arms"].items():
            for rule, values in counts["rules"].items():
                summed[(doc["day"][:7], arm, rule)] = [a + b for a, b in zip(summed[(doc["day"][:7], arm, rule)], values)]
    assert dict(rollup) == dict(summed), "each month's rollup is the sum of its days"
    out = {}
    for doc in docs:
        for arm, counts in doc["arms"].items():
            for rule, values in counts["rules"].items():
                if any(values):
                    out[(doc["day"], arm, rule)] = list(values)
    return out


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(orders=st.lists(st.tuples(st.sampled_from(["c1", "c2", "c3"]), st.integers(1, 60), st.integers(0, 2)),
                       min_size=1, max_size=12),
       replay=st.randoms(use_true_random=False))
def test_the_counters_equal_a_full_recount_even_when_the_feed_redelivers(client, platform, clock, tenant,
                                                                         orders, replay) -> None:
    if not platform.rule_sets.active("acme"):
        _activate(client, tenant)
    for customer, amount, days_later in orders:
        clock.advance(timedelta(days=days_later, minutes=1))
        order_id = f"p{next(COUNTER)}"
        response = client.post("/v1/orders", json=order_body(customer, order_id, f"{amount}.00",
                                                                timestamp=clock.now().isoformat()),
                               headers=auth(tenant.merchant))
        assert response.status_code == 202, response.text
    drain(platform)
    assert projected(platform), "the orders were counted"
    assert projected(platform) == recount(platform)
    # The change feed delivers at least once: everything again, in random chunks, changes nothing.
    everything = [c.doc for c in platform.store.changes(LEDGER, 0, 1_000_000)]
    replay.shuffle(everything)
    while everything:
        chunk, everything = everything[:replay.randint(1, 20)], everything[replay.randint(1, 20):]
        platform.rule_performance.project(chunk)
    assert projected(platform) == recount(platform)


def test_rule_performance_by_day_week_and_month_over_graphql(graphql, client, platform, clock, tenant) -> None:
    _activate(client, tenant)
    amounts = [3, 12, 40, 45]
    for n, amount in enumerate(amounts):
        response = client.post("/v1/orders", json=order_body("c1", f"q{n}", f"{amount}.00",
                                                                timestamp=clock.now().isoformat()),
                               headers=auth(tenant.merchant))
        assert response.status_code == 202
        drain(platform)
        clock.advance(timedelta(days=1))
    start = (clock.now() - timedelta(days=400)).date().isoformat()
    end = clock.now().date().isoformat()
    query = '''query($from: Date!, $to: Date!, $g: Granularity!) { rulePerformance(ruleSetId: "main", version: 1,
        from: $from, to: $to, granularity: $g) { periods dataAsOf series { rule arm ordersEvaluated ordersMatched
        pointsIssued shareOfPoints orders } } }'''
    too_long = graphql.run(tenant.analyst, query, {"from": start, "to": end, "g": "DAY"})
    assert too_long["errors"][0]["extensions"]["code"] == "query-refused"
    start = (clock.now() - timedelta(days=300)).date().isoformat()
    rows = as_rows(graphql.data(tenant.analyst, query, {"from": start, "to": end, "g": "MONTH"})["rulePerformance"])
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in rows:
        totals[row["rule"]][0] += row["ordersEvaluated"]
        totals[row["rule"]][1] += row["ordersMatched"]
        totals[row["rule"]][2] += row["pointsIssued"]
        assert 0 <= row["shareOfPoints"] <= 1 and row["arm"] is None
    assert totals["base"] == [4, 4, sum(amounts)]
    assert totals["big basket"][1:] == [2, 100]
    assert totals["small"][1:] == [1, 1]
    # Whole months are answered from the month rollups: the same figures as from the days.
    month_end = (clock.now().date().replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    whole = {"from": f"{start[:7]}-01", "to": month_end.isoformat(), "g": "MONTH"}
    by_rollup = as_rows(graphql.data(tenant.analyst, query, whole)["rulePerformance"])

    def by_rule(found: list[dict[str, Any]]) -> dict[tuple[str, str], list[int]]:
        out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        for row in found:
            slot = out[(row["period"], row["rule"])]
            slot[0] += row["ordersEvaluated"]
            slot[1] += row["ordersMatched"]
            slot[2] += row["pointsIssued"]
        return dict(out)

    assert by_rule(by_rollup) == by_rule(rows) and by_rollup
    daily = graphql.data(tenant.analyst, query, {"from": start, "to": end, "g": "DAY"})["rulePerformance"]
    assert len(daily["periods"]) == 4 and daily["dataAsOf"]
    assert all(len(line["pointsIssued"]) == 4 for line in daily["series"])
    assert codes_of(graphql.run(tenant.merchant, query, {"from": start, "to": end, "g": "WEEK"})) == ["forbidden"]


def as_rows(found: dict[str, Any]) -> list[dict[str, Any]]:
    """The series back as one row per (period, rule, arm) with orders."""
    rows = []
    for line in found["series"]:
        for n, period in enumerate(found["periods"]):
            if line["orders"][n]:
                rows.append({"period": period, "rule": line["rule"], "arm": line["arm"],
                             "ordersEvaluated": line["ordersEvaluated"][n], "ordersMatched": line["ordersMatched"][n],
                             "pointsIssued": line["pointsIssued"][n], "shareOfPoints": line["shareOfPoints"][n]})
    return rows


def codes_of(answer: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in answer["errors"] or ()]



def test_a_busy_month_in_one_feed_page_is_counted(client, platform, clock, tenant) -> None:
    """More documents of one month partition in one feed page than one transactional
    batch holds (a marker each): counted in chunks, none lost, none twice. Before the
    chunks, the store refused the batch and the projector stopped on that page."""
    if not platform.rule_sets.active("acme"):
        _activate(client, tenant)
    clock.advance(timedelta(days=40))  # a month of its own, not shared with other tests' orders
    for n in range(70):  # an order document and an EARN entry per order: 140 contributions
        response = client.post("/v1/orders", json=order_body(f"c{n % 3 + 1}", f"busy{next(COUNTER)}", "12.00",
                                                                timestamp=clock.now().isoformat()),
                               headers=auth(tenant.merchant))
        assert response.status_code == 202, response.text
    drain(platform)
    assert projected(platform) == recount(platform)
    everything = [c.doc for c in platform.store.changes(LEDGER, 0, 1_000_000)]
    assert platform.rule_performance.project(everything) == 0, "each document is counted once, ever"
    assert projected(platform) == recount(platform)
