"""No agent tool writes new words about a customer after their erasure. The erasure scrubs
the case summaries and goodwill notes present when it runs, once; an outside review found an
agent could then open a case with a summary, or execute a goodwill quote made before the
erasure into a review item holding its note, and nothing scrubbed them again. Each writing
tool now refuses an erased customer, and a write that raced the erasure (checked before it,
landed after its scrub) is scrubbed by the writer."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.agents.conftest import World

SUMMARY = "Ann Smith, 12 rue A, phone +33 6 12 34 56 78"
NOTE = "Ann Example (ann@example.com) lost her card"


def _texts(platform) -> str:  # type: ignore[no-untyped-def]
    return str([r["details"] for r in platform.reviews.list("acme", customer_id="ann")])


def _goodwill(platform, principal, points: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    answer = platform.agents.call(principal, "quote_goodwill", {
        "customerId": "ann", "points": points, "reasonCode": "goodwill", "note": NOTE, "consentReference": "call-1"})
    assert answer.decision == "allowed", answer.reasons
    return answer.result


def _execute(platform, principal, quote: dict[str, Any]):  # type: ignore[no-untyped-def]
    return platform.agents.call(principal, "execute_quote", {"quoteId": quote["quoteId"],
                                                             "contentHash": quote["contentHash"]})


@pytest.mark.parametrize("tool", ["open_case", "quote_goodwill"])
def test_a_tool_that_writes_about_an_erased_customer_is_refused(platform, world: World, tool: str) -> None:
    platform.erasures.erase("acme", "ann", None, "asked")
    principal = platform.keys.verify(world.agent)
    arguments = ({"customerId": "ann", "topic": "other", "summary": SUMMARY} if tool == "open_case" else
                 {"customerId": "ann", "points": 50, "reasonCode": "goodwill", "note": NOTE,
                  "consentReference": "call-1"})
    answer = platform.agents.call(principal, tool, arguments)
    assert answer.decision == "refused" and answer.reasons[0].code == "customer-erased"
    assert platform.reviews.list("acme", customer_id="ann") == []


@pytest.mark.parametrize("points", [50, 500], ids=["executes", "escalates"])
def test_a_goodwill_quoted_before_the_erasure_does_not_execute_after_it(platform, world: World,
                                                                      points: int) -> None:
    principal = platform.keys.verify(world.agent)
    quote = _goodwill(platform, principal, points)  # 500: above the soft limit, a person would decide
    before = platform.ledger.head("acme", "ann")
    platform.erasures.erase("acme", "ann", None, "asked")
    answer = _execute(platform, principal, quote)
    assert answer.decision == "refused" and answer.reasons[0].code == "customer-erased"
    assert "ann@example.com" not in _texts(platform)
    assert platform.ledger.head("acme", "ann") == before  # no adjustment carrying the note


def _erasing_before_the_write(platform, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The race: the tool has checked the customer; the erasure runs (its scrub finds nothing
    yet); then the tool's review item lands."""
    submit = platform.reviews.submit

    def erasure_first(*args, **kwargs):  # type: ignore[no-untyped-def]
        platform.erasures.erase("acme", "ann", None, "asked")
        return submit(*args, **kwargs)

    monkeypatch.setattr(platform.reviews, "submit", erasure_first)


def test_a_case_opened_as_the_erasure_runs_loses_its_summary(platform, world: World, monkeypatch) -> None:
    principal = platform.keys.verify(world.agent)
    _erasing_before_the_write(platform, monkeypatch)
    answer = platform.agents.call(principal, "open_case", {"customerId": "ann", "topic": "other",
                                                           "summary": SUMMARY})
    assert answer.decision == "allowed"
    assert platform.reviews.get("acme", answer.result["caseId"])["details"]["summary"] == "[erased]"
    assert "12 rue A" not in _texts(platform)


def test_an_escalation_made_as_the_erasure_runs_loses_its_note(platform, world: World, monkeypatch) -> None:
    principal = platform.keys.verify(world.agent)
    quote = _goodwill(platform, principal, 500)
    _erasing_before_the_write(platform, monkeypatch)
    answer = _execute(platform, principal, quote)
    assert answer.decision == "escalated"
    assert "ann@example.com" not in _texts(platform)
