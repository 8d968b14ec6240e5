"""The email blind index under racing registrations and erasures, one interleaving at a
time (``tests.conftest.StoreThatInterleaves`` runs the racer at the named point): an
entry belongs to one customer, a registration that loses gives back only its own entry,
and a profile is never stored with an email its index entry does not name."""

from __future__ import annotations

from typing import Any

from shared.app.customers import CustomerProfile, CustomerService
from shared.privacy.personal import PersonalDataVault, _email_index_doc
from shared.store.layout import CUSTOMERS, PII_INDEX, PII_KEYS, customer_pk
from shared.store.port import Filter, Query
from tests.conftest import Died, StoreThatDies, StoreThatInterleaves

EMAIL = "shared@example.com"


def _profile(customer_id: str, email: str) -> CustomerProfile:
    return CustomerProfile.model_validate({"customerId": customer_id, "joinDate": "2021-02-03", "email": email})


def _service(platform, clock, store: Any) -> CustomerService:
    service = CustomerService(store, clock, PersonalDataVault(store, platform.vault._keys, clock, platform.audit))
    service.occasions = platform.occasions
    return service


def _entry_id(platform, email: str = EMAIL) -> str:
    return platform.vault.email_index_id("acme", email)


def test_an_entry_given_back_between_the_create_and_the_read_is_filed_again(platform, tenant, clock) -> None:
    """A racer holds the email when the registration files it (create refused), and gives
    it back (its registration lost its id) before the registration reads who holds it."""
    entry = _entry_id(platform)
    store = StoreThatInterleaves(
        platform.store, "batches", PII_INDEX,
        before=lambda: platform.store.create(PII_INDEX, _email_index_doc("acme", "racer", entry)),
        after=lambda: platform.store.delete(PII_INDEX, "acme", entry))
    _service(platform, clock, store).register("acme", _profile("newcomer", EMAIL))
    assert store.ran
    profile = platform.customers.get("acme", "newcomer")
    assert profile["emailIndex"] == entry
    assert platform.vault.find_by_email("acme", EMAIL) == "newcomer", "a profile its email index does not name"


def test_a_registration_that_lost_its_id_gives_back_only_its_own_entry(platform, tenant, clock) -> None:
    """While it was writing, the id was registered with another email, and the email it
    had filed was given back (by another loser of the id) and taken by another customer:
    that customer's entry stays."""
    entry = _entry_id(platform)

    def racers() -> None:
        platform.customers.register("acme", _profile("contested", "winner@example.com"))
        platform.store.delete(PII_INDEX, "acme", entry)  # another loser of the id gives it back
        platform.customers.register("acme", _profile("third", EMAIL))

    store = StoreThatInterleaves(platform.store, "batches", CUSTOMERS, before=racers)
    outcome = _service(platform, clock, store).register_many("acme", [_profile("contested", EMAIL)])
    assert store.ran and outcome[0] is not None and "already exists" in outcome[0].message
    assert platform.vault.find_by_email("acme", EMAIL) == "third"
    assert platform.vault.find_by_email("acme", "winner@example.com") == "contested"


def test_an_erasure_retried_after_its_email_was_registered_again_keeps_the_new_owners_entry(
        platform, tenant, clock) -> None:
    platform.customers.register("acme", _profile("leaving", EMAIL))
    dying = PersonalDataVault(StoreThatDies(platform.store, 1), platform.vault._keys, clock, platform.audit)
    try:
        dying.erase("acme", "leaving", None, "asked")  # dies after giving the email back
    except Died:
        pass
    else:
        raise AssertionError("the erasure was to die after its first write")
    platform.customers.register("acme", _profile("arriving", EMAIL))
    platform.vault.erase("acme", "leaving", None, "asked")  # the erasure's retry
    assert platform.store.read(CUSTOMERS, customer_pk("acme", "leaving"), "leaving")["erasedAt"]
    assert platform.vault.find_by_email("acme", EMAIL) == "arriving"


def test_a_registration_that_lost_its_id_to_a_customer_erased_meanwhile_leaves_nothing_personal(
        platform, tenant, clock) -> None:
    """Its check for the id ran before the winner's profile existed; the winner registered
    and was erased while it sealed: the data key it made and the birthday entry it filed
    must not outlive that erasure (nor its email index entry)."""
    person = {"email": EMAIL, "birthDate": "1990-04-05", "name": "Ann"}

    def winner_registers_and_is_erased() -> None:
        platform.customers.register("acme", CustomerProfile.model_validate(
            {"customerId": "contested", "joinDate": "2021-02-03", **person}))
        platform.erasures.erase("acme", "contested", None, "asked")

    store = StoreThatInterleaves(platform.store, "batches", PII_INDEX, before=winner_registers_and_is_erased)
    outcome = _service(platform, clock, store).register_many("acme", [CustomerProfile.model_validate(
        {"customerId": "contested", "joinDate": "2022-03-04", **person})])
    assert store.ran and outcome[0] is not None and "already exists" in outcome[0].message
    assert platform.store.read(PII_KEYS, customer_pk("acme", "contested"), "dek") is None, "a data key survived"
    left = platform.store.query(PII_INDEX, Query(pk=None, filters=(Filter("customerId", "=", "contested"),),
                                                 limit=100))
    assert sorted(d.get("occasion") for d in left) == ["anniversary"], left  # the winner's join date only
    assert left[0]["since"] == 2021
    assert platform.vault.find_by_email("acme", EMAIL) is None
