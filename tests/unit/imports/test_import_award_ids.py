"""An award id names one award per tenant, as an order id names one order: the ledger's key
``import:award:<id>`` lives in the customer's partition, so before the award claims the same
id for another customer was a new key there and the award was paid twice (found by an
outside review), and ``mode=all-or-nothing`` applied the rows before an award id repeated
with other content. A re-run of an awards file finds its own claims and changes nothing."""

from __future__ import annotations

import pytest

from tests.unit.imports.conftest import ndjson, run_import


def _award(award_id: str, customer: str, points: int = 100) -> dict:
    return {"awardId": award_id, "customerId": customer, "points": points, "reason": "goodwill",
            "awardedAt": "2026-10-01T11:00:00Z"}


def _balances(platform, *customers: str) -> list[int]:  # type: ignore[no-untyped-def]
    return [platform.ledger.head("acme", c).balance for c in customers]


def test_an_award_id_given_to_one_customer_is_refused_for_another(platform, tenant) -> None:  # type: ignore
    assert run_import(platform, "acme", ndjson([_award("a1", "c1")]), kind="awards")["rowsDone"] == 1
    status = run_import(platform, "acme", ndjson([_award("a1", "c2")]), kind="awards")
    assert (status["rowsDone"], status["rowsFailed"]) == (0, 1), status
    [error] = platform.imports.errors("acme", status["importId"])
    assert error["errors"][0]["field"] == "awardId"
    assert _balances(platform, "c1", "c2") == [100, 0]


@pytest.mark.parametrize("mode", ["continue", "all-or-nothing"])
def test_one_file_cannot_give_one_award_id_twice(platform, tenant, mode: str) -> None:  # type: ignore
    rows = [_award("a9", "c1"), _award("b1", "c1", 5), _award("a9", "c2"), _award("a9", "c1", 99)]
    status = run_import(platform, "acme", ndjson(rows), kind="awards", mode=mode)
    if mode == "all-or-nothing":
        assert status["status"] == "rejected" and _balances(platform, "c1", "c2") == [0, 0], status
    else:
        assert (status["rowsDone"], status["rowsFailed"]) == (2, 2), status
        assert _balances(platform, "c1", "c2") == [105, 0]


def test_all_or_nothing_refuses_an_award_id_stored_with_other_content(platform, tenant) -> None:  # type: ignore
    assert run_import(platform, "acme", ndjson([_award("a2", "c1", 20)]), kind="awards")["rowsDone"] == 1
    status = run_import(platform, "acme", ndjson([_award("b1", "c1", 5), _award("a2", "c1", 7)]), kind="awards",
                        mode="all-or-nothing")
    assert status["status"] == "rejected" and _balances(platform, "c1") == [20], status


def test_a_rerun_of_an_awards_file_changes_nothing(platform, tenant) -> None:  # type: ignore
    data = ndjson([_award("a1", "c1"), _award("a2", "c2", 50), _award("a1", "c1")])
    first = run_import(platform, "acme", data, kind="awards")
    again = run_import(platform, "acme", data, kind="awards")
    assert [s["rowsFailed"] for s in (first, again)] == [0, 0]
    assert _balances(platform, "c1", "c2") == [100, 50]
