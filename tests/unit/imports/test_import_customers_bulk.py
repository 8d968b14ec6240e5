"""Customers without personal fields are imported a chunk at a time
(``CustomerService.register_plain``): the documents ``register`` writes, in file order with
the rows that go through ``register``, and a crash at any of its writes leaves no profile
that the birthday and anniversary run cannot find."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from shared.app.customers import CustomerProfile, CustomerService
from shared.errors import Conflict
from shared.store.layout import CUSTOMERS, PII_INDEX, customer_pk
from shared.store.port import Filter, Query
from tests.conftest import Died, StoreThatDies
from tests.unit.imports.conftest import run_import

VOLATILE = ("_etag", "_ts", "id", "pk", "customerId")


def _profile(customer_id: str, joined: str = "2021-02-03", **fields: Any) -> CustomerProfile:
    return CustomerProfile.model_validate({"customerId": customer_id, "joinDate": joined, **fields})


def _index_entries(platform, customer_id: str) -> list[dict[str, Any]]:
    docs = platform.store.query(PII_INDEX, Query(pk=None, filters=(Filter("customerId", "=", customer_id),),
                                                 limit=100))
    return sorted(({k: v for k, v in d.items() if k not in VOLATILE} for d in docs), key=lambda d: d["occasion"])


def _customer(platform, customer_id: str) -> dict[str, Any] | None:
    return platform.store.read(CUSTOMERS, customer_pk("acme", customer_id), customer_id)


def test_a_run_of_plain_profiles_writes_what_register_writes(platform, tenant) -> None:
    platform.customers.register("acme", _profile("one", tags=["vip", "gold", "vip"], tier="silver"))
    outcomes = platform.customers.register_plain("acme", [_profile("two", tags=["vip", "gold", "vip"],
                                                                   tier="silver"), _profile("three")])
    assert outcomes == [None, None]
    one, two = _customer(platform, "one"), _customer(platform, "two")
    assert {k: v for k, v in two.items() if k not in VOLATILE} == {k: v for k, v in one.items() if k not in VOLATILE}
    assert two["id"] == two["customerId"] == "two" and two["pk"] == customer_pk("acme", "two")
    # Filed under the same anniversary partition as through register (same join date).
    assert _index_entries(platform, "two") == _index_entries(platform, "one") != []
    assert _customer(platform, "three")["tags"] == []


def test_an_existing_id_is_a_conflict_and_the_others_are_created(platform, tenant) -> None:
    outcomes = platform.customers.register_plain("acme", [_profile("c1"), _profile("new1"), _profile("new1")])
    assert isinstance(outcomes[0], Conflict) and outcomes[1] is None and isinstance(outcomes[2], Conflict)
    assert _customer(platform, "new1") is not None


def test_an_ids_later_rows_in_a_run_write_nothing(platform, tenant) -> None:
    outcomes = platform.customers.register_plain("acme", [_profile("twice", joined="2020-01-01"),
                                                          _profile("twice", joined="2020-06-15")])
    assert outcomes[0] is None and isinstance(outcomes[1], Conflict)
    assert _customer(platform, "twice")["joinDate"] == "2020-01-01"
    entries = platform.store.query(PII_INDEX, Query(pk=None, filters=(Filter("customerId", "=", "twice"),),
                                                    limit=10))
    assert len(entries) == 1, "no index entry for a row that is not registered"


def test_file_order_holds_between_plain_and_personal_rows(platform, tenant) -> None:
    data = (b"customerId,joinDate,email\n"
            b"d1,2020-01-01,\n"
            b"d1,2020-02-02,d1@example.com\n"
            b"e1,2020-03-03,e1@example.com\n"
            b"e1,2020-04-04,\n"
            b"f1,2020-05-05,\n")
    status = run_import(platform, "acme", data, kind="customers", format="csv")
    assert status["status"] == "done" and status["rowsFailed"] == 0
    # The first row of an id is the one kept, whichever path each row takes.
    assert _customer(platform, "d1")["joinDate"] == "2020-01-01" and "personal" not in _customer(platform, "d1")
    assert _customer(platform, "e1")["joinDate"] == "2020-03-03" and "email" in _customer(platform, "e1")["personal"]
    assert _customer(platform, "f1")["joinDate"] == "2020-05-05"


@pytest.mark.parametrize("at", [0, 1])
def test_a_crash_at_any_write_leaves_no_profile_without_its_index_entries(platform, tenant, clock, at) -> None:
    profiles = [_profile(f"k{n}", joined=str(date(2020, 1 + n % 12, 1 + n % 28))) for n in range(30)]
    dying = CustomerService(StoreThatDies(platform.store, at), clock, platform.vault)
    dying.occasions = platform.occasions
    with pytest.raises(Died):
        dying.register_plain("acme", profiles)
    for profile in profiles:
        if _customer(platform, profile.customer_id) is not None:
            assert _index_entries(platform, profile.customer_id), "a profile the daily run cannot find"
    # The import's retry: existing profiles are skipped, the rest registered, each filed.
    rest = [p for p in profiles if _customer(platform, p.customer_id) is None]
    assert platform.customers.register_plain("acme", rest) == [None] * len(rest)
    for profile in profiles:
        assert _customer(platform, profile.customer_id) is not None
        assert [e["occasion"] for e in _index_entries(platform, profile.customer_id)] == ["anniversary"]


def test_profiles_with_personal_fields_are_refused(platform, tenant) -> None:
    with pytest.raises(AssertionError):
        platform.customers.register_plain("acme", [_profile("p1", email="p1@example.com")])
    assert _customer(platform, "p1") is None
