"""The agents' racing writes on Cosmos DB (cosmosdb-server) as on SQLite: 20 executions
counting against one daily budget at once never pass it, and count each quote once; the
decision trail, policy versions and quotes round-trip (append-only container, ETag pointer)."""

from __future__ import annotations

import pytest

from shared.agents.limits import DailyCounters
from shared.agents.policy import GuardrailPolicies
from shared.agents.quotes import QuoteRefused, Quotes
from shared.agents.trail import DecisionTrail
from tests.conftest import run_in_threads

pytestmark = pytest.mark.cosmos


@pytest.mark.parametrize("store_name", ["cosmos_store", "sqlite_store"])
def test_twenty_executions_at_once_never_pass_the_budget(store_name, request) -> None:
    store = request.getfixturevalue(store_name)
    counters = DailyCounters(store)
    results: list[bool] = []
    run_in_threads(lambda n: results.append(counters.add("acme", "2026-11-01", "agent:k", f"q{n}", 100, 1000).ok),
                   [(n,) for n in range(20)], timeout=120)
    assert results.count(True) == 10 and counters.total("acme", "2026-11-01", "agent:k") == 1000
    # A retried quote is counted once; a removed one frees its points.
    counted = [n for n in range(20) if counters.add("acme", "2026-11-01", "agent:k", f"q{n}", 100, 1000).ok]
    assert len(counted) == 10 and counters.total("acme", "2026-11-01", "agent:k") == 1000
    counters.remove("acme", "2026-11-01", "agent:k", f"q{counted[0]}")
    assert counters.total("acme", "2026-11-01", "agent:k") == 900


def test_policies_quotes_and_trail_on_cosmos(cosmos_store, clock) -> None:
    policies = GuardrailPolicies(cosmos_store, clock)
    v1 = policies.save("acme", "default", {"tools": ["*"]}, "first", "admin")["version"]
    v2 = policies.save("acme", "default", {"tools": ["get_balance"]}, "narrow", "admin")["version"]
    policies.activate("acme", "default", v1, "go", "admin")
    policies.activate("acme", "default", v2, "narrow", "admin")
    assert policies.active("acme", "default")[0] == 2
    policies.rollback("acme", "default", "back", "admin")
    assert policies.active("acme", "default")[0] == 1
    quotes = Quotes(cosmos_store, clock)
    quote = quotes.issue("acme", {"action": "goodwill", "customerId": "c1", "points": 5})
    assert quotes.load("acme", quote["quoteId"], quote["contentHash"])["points"] == 5
    with pytest.raises(QuoteRefused):
        quotes.load("acme", quote["quoteId"], "0" * 64)
    trail = DecisionTrail(cosmos_store, clock)
    for tool in ("find_customer", "get_balance"):
        trail.record("acme", agent_key_id="k", tool=tool, arguments={"email": "a@b.c"}, policy_id="default",
                     policy_version=1, decision="allowed", reasons=[], result=None)
    assert [c["tool"] for c in trail.list("acme")] == ["find_customer", "get_balance"]
    assert trail.list("acme")[0]["arguments"] == {"email": "[redacted]"}


@pytest.mark.parametrize("store_name", ["cosmos_store", "sqlite_store"])
def test_a_counter_stays_small_however_many_quotes_it_counts(store_name, request) -> None:
    """Each quote has its own marker beside the counter: the counter document, rewritten at
    every action, held every quote id of the day (an agent key's busy day took it towards
    Cosmos DB's 2 MB document limit); a counter written that way still counts its quotes."""
    store = request.getfixturevalue(store_name)
    counters = DailyCounters(store)
    for n in range(300):
        assert counters.add("acme", "2026-11-02", "agent:k", f"quote-{n:04d}-{'x' * 40}", 1, None).ok
    counter = store.read("system", "agent-counters:acme", "day-2026-11-02:agent:k")
    assert counter["points"] == 300 and len(str(counter)) < 600
    assert counters.add("acme", "2026-11-02", "agent:k", f"quote-0007-{'x' * 40}", 1, None).total == 300
    # A counter of before the markers: its quotes still count once and can be given back.
    store.create("system", {"id": "day-2026-11-03:agent:k", "pk": "agent-counters:acme", "docType": "agentCounter",
                            "tenantId": "acme", "day": "2026-11-03", "subject": "agent:k", "points": 5,
                            "quotes": {"old": 5}})
    assert counters.add("acme", "2026-11-03", "agent:k", "old", 5, 10).total == 5
    assert counters.total("acme", "2026-11-03", "agent:k", excluding="old") == 0
    assert counters.add("acme", "2026-11-03", "agent:k", "new", 5, 10).ok
    assert not counters.add("acme", "2026-11-03", "agent:k", "more", 1, 10).ok
    counters.remove("acme", "2026-11-03", "agent:k", "old")
    counters.remove("acme", "2026-11-03", "agent:k", "new")
    assert counters.total("acme", "2026-11-03", "agent:k") == 0
