"""Customers are imported a run of rows at a time (``CustomerService.register_many`` and
``PersonalDataVault.seal_new_many``): the documents ``register`` writes, personal fields
sealed as through the API, file order kept, and a crash at any write leaves what an
interrupted ``register`` leaves, which a retry completes."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from shared.app.customers import CustomerProfile, CustomerService
from shared.errors import Conflict
from shared.privacy.personal import PersonalDataVault
from shared.store.layout import CUSTOMERS, PII_INDEX, PII_KEYS, customer_pk
from shared.store.port import Filter, Query
from tests.conftest import Died, StoreThatDies, run_in_threads
from tests.unit.imports.conftest import run_import

VOLATILE = ("_etag", "_ts", "id", "pk", "customerId")
SEALED = ("personal", "dekId", "emailIndex")


def _profile(customer_id: str, joined: str = "2021-02-03", **fields: Any) -> CustomerProfile:
    return CustomerProfile.model_validate({"customerId": customer_id, "joinDate": joined, **fields})


def _index_entries(platform, customer_id: str) -> list[dict[str, Any]]:
    docs = platform.store.query(PII_INDEX, Query(pk=None, filters=(Filter("customerId", "=", customer_id),
                                                                   Filter("docType", "=", "occasionIndex")),
                                                 limit=100))
    return sorted(({k: v for k, v in d.items() if k not in VOLATILE} for d in docs), key=lambda d: d["occasion"])


def _customer(platform, customer_id: str) -> dict[str, Any] | None:
    return platform.store.read(CUSTOMERS, customer_pk("acme", customer_id), customer_id)


def _without(doc: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in fields}


def test_a_run_of_plain_profiles_writes_what_register_writes(platform, tenant) -> None:
    platform.customers.register("acme", _profile("one", tags=["vip", "gold", "vip"], tier="silver"))
    outcomes = platform.customers.register_many("acme", [_profile("two", tags=["vip", "gold", "vip"],
                                                                  tier="silver"), _profile("three")])
    assert outcomes == [None, None]
    one, two = _customer(platform, "one"), _customer(platform, "two")
    assert _without(two, VOLATILE) == _without(one, VOLATILE)
    assert two["id"] == two["customerId"] == "two" and two["pk"] == customer_pk("acme", "two")
    # Filed under the same anniversary partition as through register (same join date).
    assert _index_entries(platform, "two") == _index_entries(platform, "one") != []
    assert _customer(platform, "three")["tags"] == []


def test_personal_fields_are_sealed_as_register_seals_them(platform, tenant) -> None:
    person = {"email": "Ann@Example.com", "name": "Ann", "birthDate": "1990-04-05",
              "postalAddress": {"lines": ["1 Rue A"], "city": "Paris", "country": "FR"}}
    platform.customers.register("acme", _profile("one", **person))
    assert platform.customers.register_many("acme", [_profile("two", **dict(person, email="bob@example.com"))]) \
        == [None]
    one, two = _customer(platform, "one"), _customer(platform, "two")
    assert _without(two, VOLATILE + SEALED) == _without(one, VOLATILE + SEALED)
    assert set(two["personal"]) == set(one["personal"]) and "Paris" not in str(two)
    assert platform.vault.open(two) == dict(platform.vault.open(one), email="bob@example.com")
    assert platform.vault.find_by_email("acme", "BOB@example.com") == "two"
    key = platform.store.read(PII_KEYS, customer_pk("acme", "two"), "dek")
    assert key is not None and key["dekId"] == two["dekId"] != one["dekId"]
    assert _index_entries(platform, "two") == _index_entries(platform, "one")
    assert [e["occasion"] for e in _index_entries(platform, "two")] == ["anniversary", "birthday"]


def test_an_email_another_customer_has_refuses_that_profile_only(platform, tenant) -> None:
    platform.customers.register("acme", _profile("owner", email="taken@example.com"))
    outcomes = platform.customers.register_many("acme", [
        _profile("p1", email="taken@example.com"), _profile("p2", email="new@example.com"),
        _profile("p3", email="NEW@example.com"), _profile("c1"), _profile("p4")])
    assert isinstance(outcomes[0], Conflict) and "email" in outcomes[0].message
    assert outcomes[1] is None and outcomes[4] is None
    assert isinstance(outcomes[2], Conflict) and "email" in outcomes[2].message
    assert isinstance(outcomes[3], Conflict) and "already exists" in outcomes[3].message
    for refused in ("p1", "p3"):
        assert _customer(platform, refused) is None
        assert platform.store.read(PII_KEYS, customer_pk("acme", refused), "dek") is None
        assert not _index_entries(platform, refused)
    assert platform.vault.find_by_email("acme", "taken@example.com") == "owner"
    assert platform.vault.find_by_email("acme", "new@example.com") == "p2"


def test_file_order_holds_for_an_ids_repeated_rows(platform, tenant) -> None:
    platform.customers.register("acme", _profile("owner", email="taken@example.com"))
    data = (b"customerId,joinDate,email\n"
            b"d1,2020-01-01,\n"
            b"d1,2020-02-02,d1@example.com\n"
            b"e1,2020-03-03,e1@example.com\n"
            b"e1,2020-04-04,\n"
            b"g1,2020-05-05,taken@example.com\n"
            b"g1,2020-06-06,g1@example.com\n")
    status = run_import(platform, "acme", data, kind="customers", format="csv")
    assert status["status"] == "done" and status["rowsFailed"] == 1
    assert [e["line"] for e in platform.imports.errors("acme", status["importId"])] == [6]
    # An id's first row that registers is the one kept, as one by one.
    assert _customer(platform, "d1")["joinDate"] == "2020-01-01" and "personal" not in _customer(platform, "d1")
    assert _customer(platform, "e1")["joinDate"] == "2020-03-03" and "email" in _customer(platform, "e1")["personal"]
    assert _customer(platform, "g1")["joinDate"] == "2020-06-06"
    assert platform.vault.find_by_email("acme", "g1@example.com") == "g1"
    assert [e["since"] for e in _index_entries(platform, "d1")] == [2020] and len(_index_entries(platform, "e1")) == 1


@pytest.mark.parametrize("at", [0, 1, 2, 3])
def test_a_crash_at_any_write_is_completed_by_the_retry(platform, tenant, clock, at) -> None:
    """Writes: email index entries, data keys, occasion index entries, profiles."""
    profiles = [_profile(f"k{n}", joined=f"2020-{1 + n % 12:02d}-{1 + n % 28:02d}",
                         **({"email": f"k{n}@example.com", "birthDate": "1991-07-08"} if n % 2 else {}))
                for n in range(30)]
    store = StoreThatDies(platform.store, at)  # one count for the vault's writes and the profiles'
    dying = CustomerService(store, clock, PersonalDataVault(store, platform.vault._keys, clock, platform.audit))
    dying.occasions = platform.occasions
    with pytest.raises(Died):
        dying.register_many("acme", profiles)
    keys_left = {p.customer_id: platform.store.read(PII_KEYS, customer_pk("acme", p.customer_id), "dek")
                 for p in profiles}
    for profile in profiles:
        if _customer(platform, profile.customer_id) is not None:
            assert _index_entries(platform, profile.customer_id), "a profile the daily run cannot find"
    # The import's retry: the profiles registered are skipped, the rest registered.
    rest = [p for p in profiles if _customer(platform, p.customer_id) is None]
    assert platform.customers.register_many("acme", rest) == [None] * len(rest)
    for n, profile in enumerate(profiles):
        doc = _customer(platform, profile.customer_id)
        assert doc is not None and _index_entries(platform, profile.customer_id)
        if n % 2:
            assert platform.vault.open(doc)["email"] == f"k{n}@example.com"
            assert platform.vault.find_by_email("acme", f"k{n}@example.com") == profile.customer_id
            if keys_left[profile.customer_id] is not None:  # the interrupted run's key is reused
                assert doc["dekId"] == keys_left[profile.customer_id]["dekId"]
        else:
            assert "personal" not in doc


def test_an_id_repeated_in_one_run_is_refused(platform, tenant) -> None:
    with pytest.raises(AssertionError):
        platform.customers.register_many("acme", [_profile("x1"), _profile("x1")])
    assert _customer(platform, "x1") is None


def test_twenty_racing_registrations_of_the_same_ids_and_emails_leave_one_profile_each(platform, tenant) -> None:
    """Imports' runs and single registrations race on the same ids and the same emails:
    each id is created once, by a caller that was told so; no email is on two profiles;
    every email index entry belongs to the profile that holds it (no loser's entry is left
    to refuse that email later); every profile opens with its own data key. (The
    interleavings behind each of these, one by one: tests/unit/privacy/test_email_index_races.py.)"""
    barrier = threading.Barrier(20, timeout=30)
    told: list[tuple[str, str]] = []  # (customer id, email) of each caller told "created"
    lock = threading.Lock()

    def attempt(k: int) -> None:
        run = [("a", f"e{k % 3}@example.com"), ("b", f"e{(k + 1) % 3}@example.com"),
               (f"own{k}", "e0@example.com")]
        profiles = [_profile(c, joined=f"2020-0{1 + k % 9}-10", email=e, birthDate="1991-05-06") for c, e in run]
        barrier.wait()
        if k % 4 == 0:  # the API's single registration, one profile after the other
            outcomes: list[Any] = []
            for p in profiles:
                try:
                    platform.customers.register("acme", p)
                    outcomes.append(None)
                except Conflict as exc:
                    outcomes.append(exc)
        else:
            outcomes = platform.customers.register_many("acme", profiles)
        assert all(o is None or isinstance(o, Conflict) for o in outcomes), outcomes
        with lock:
            told.extend((c, e) for (c, e), outcome in zip(run, outcomes) if outcome is None)

    run_in_threads(attempt, [(k,) for k in range(20)], timeout=60)
    created = [c for c, _ in told]
    assert len(created) == len(set(created)), f"an id told 'created' twice: {sorted(created)}"
    # (An id may end up with no profile: each of its registrations can be refused for an
    # email a racer held at that moment, and lose nothing but that attempt.)
    emails: dict[str, str] = {}
    for customer_id, email in told:
        profile = _customer(platform, customer_id)
        assert profile is not None, f"{customer_id} was told 'created' and has no profile"
        opened = platform.vault.open(profile)  # its data key is the one stored for it
        assert opened["email"] == email, f"{customer_id}: stored {opened['email']}, its creator sent {email}"
        assert email not in emails, f"{email} on {emails.get(email)} and {customer_id}"
        emails[email] = customer_id
        assert platform.vault.find_by_email("acme", email) == customer_id
    profiles = platform.store.query(CUSTOMERS, Query(pk=None, filters=(Filter("tenantId", "=", "acme"),),
                                                     limit=1000))
    assert {p["customerId"] for p in profiles} == set(created) | {"c1", "c2", "c3"}
    entries = platform.store.query(PII_INDEX, Query(pk="acme", filters=(Filter("docType", "=", "emailIndex"),),
                                                    limit=1000))
    assert sorted(e["customerId"] for e in entries) == sorted(emails.values()), \
        "an email index entry left by a registration that lost"
