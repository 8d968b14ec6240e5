"""Personal fields through the API: encrypted at rest, blind-index lookup, erasure, access export."""

from __future__ import annotations

import gzip
import logging
from datetime import timedelta

import pytest

from shared.privacy.crypto import CiphertextInvalid, WrongDataKey
from shared.privacy.personal import PersonalDataDestroyed
from shared.store.layout import CUSTOMERS, PII_INDEX, PII_KEYS, customer_pk
from tests.conftest import auth, drain, order_body
from tests.erasure_scan import ErasureScan, needles_of

JANE = {"customerId": "p1", "joinDate": "2026-03-01", "email": "Jane.Doe@Example.com", "name": "Jane Zyxwvut",
        "phone": "+33 6 12 34 56 78", "birthDate": "1990-04-05",
        "postalAddress": {"lines": ["12 rue Quelquepart"], "city": "Villeplume", "postalCode": "75099",
                          "country": "FR"}}
SECRETS = [b"Jane.Doe@Example.com", b"jane.doe@example.com", b"Zyxwvut", b"12 34 56 78", b"1990-04-05",
           b"Quelquepart", b"Villeplume"]


def register(client, tenant, body=JANE):
    return client.post("/v1/customers", json=body, headers=auth(tenant.merchant))


def test_personal_fields_are_stored_encrypted_and_read_back_by_allowed_roles(client, platform, tenant) -> None:
    created = register(client, tenant)
    assert created.status_code == 201, created.text
    assert "email" not in created.json() and "personalData" not in created.json()
    doc = platform.store.read(CUSTOMERS, customer_pk("acme", "p1"), "p1")
    assert set(doc["personal"]) == {"email", "name", "phone", "birthDate", "postalAddress"}
    assert all(v.startswith("acr1.A256GCM.") for v in doc["personal"].values())
    assert not any(s.decode() in str(doc) for s in SECRETS)
    merchant = client.get("/v1/customers/p1", headers=auth(tenant.merchant)).json()
    assert merchant["personalData"]["email"] == "Jane.Doe@Example.com"
    assert merchant["personalData"]["postalAddress"]["city"] == "Villeplume"
    analyst = client.get("/v1/customers/p1", headers=auth(tenant.analyst)).json()
    assert "personalData" not in analyst and analyst["customerId"] == "p1"


def test_lookup_by_email_uses_the_normalised_blind_index(client, platform, tenant, other_tenant) -> None:
    register(client, tenant)
    found = client.post("/v1/customers/lookup", json={"email": "  JANE.doe@example.COM "[2:-1]},
                        headers=auth(tenant.merchant))
    assert found.status_code == 200 and found.json() == {"customerId": "p1"}
    assert client.post("/v1/customers/lookup", json={"email": "jane.doe@example.com"},
                       headers=auth(other_tenant.merchant)).status_code == 404
    assert client.post("/v1/customers/lookup", json={"email": "x@example.com"},
                       headers=auth(tenant.analyst)).status_code == 403
    duplicate = register(client, tenant, dict(JANE, customerId="p2", email="jane.doe@EXAMPLE.com"))
    assert duplicate.status_code == 409
    assert platform.customers.find("acme", "p2") is None
    assert platform.store.read(PII_KEYS, customer_pk("acme", "p2"), "dek") is None


def test_a_profile_field_moved_to_another_customer_or_field_does_not_decrypt(client, platform, tenant) -> None:
    register(client, tenant)
    register(client, tenant, dict(JANE, customerId="p2", email="john@example.com"))
    one = platform.store.read(CUSTOMERS, customer_pk("acme", "p1"), "p1")
    two = platform.store.read(CUSTOMERS, customer_pk("acme", "p2"), "p2")
    moved = dict(two, personal=dict(two["personal"], email=one["personal"]["email"]))
    with pytest.raises(WrongDataKey):
        platform.vault.open(moved)
    swapped = dict(one, personal=dict(one["personal"], name=one["personal"]["email"]))
    with pytest.raises(CiphertextInvalid):
        platform.vault.open(swapped)
    wrong_dek = dict(two, dekId=one["dekId"])  # a profile pointing at another customer's DEK
    platform.vault.cache.clear()
    with pytest.raises(WrongDataKey):
        platform.vault.open(wrong_dek)


def test_erasure_destroys_the_key_keeps_the_ledger_and_is_idempotent(client, platform, tenant) -> None:
    register(client, tenant)
    client.post("/v1/orders", json=order_body("p1", "o1"), headers=auth(tenant.merchant))
    drain(platform)
    ledger_before = client.get("/v1/customers/p1/ledger", headers=auth(tenant.admin)).json()
    assert client.post("/v1/customers/p1/erasure", json={"reason": "ticket 42"},
                       headers=auth(tenant.merchant)).status_code == 403
    first = client.post("/v1/customers/p1/erasure", json={"reason": "ticket 42"}, headers=auth(tenant.admin))
    assert first.status_code == 200 and first.json()["erased"] and not first.json()["alreadyErased"]
    again = client.post("/v1/customers/p1/erasure", json={"reason": "ticket 42"}, headers=auth(tenant.admin))
    assert again.json()["alreadyErased"] and again.json()["erasedAt"] == first.json()["erasedAt"]
    assert [r["action"] for r in platform.audit.records("acme")].count("customer.erased") == 1
    record = [r for r in platform.audit.records("acme") if r["action"] == "customer.erased"][0]
    assert record["target"] == "customer:p1" and "Jane" not in str(record)
    assert platform.store.read(PII_KEYS, customer_pk("acme", "p1"), "dek") is None
    assert platform.vault.cache.get("acme", "p1", "anything") is None
    profile = client.get("/v1/customers/p1", headers=auth(tenant.merchant))
    assert profile.status_code == 200 and profile.json()["erased"] is True and "personalData" not in profile.json()
    assert client.post("/v1/customers/lookup", json={"email": "jane.doe@example.com"},
                       headers=auth(tenant.merchant)).status_code == 404
    assert client.get("/v1/customers/p1/ledger", headers=auth(tenant.admin)).json() == ledger_before
    balance = client.get("/v1/customers/p1/balance", headers=auth(tenant.admin)).json()
    assert balance["available"] == 100
    export = client.get("/v1/customers/p1/data-export", headers=auth(tenant.admin)).json()
    assert export["profile"]["erased"] and export["profile"]["personalData"] == {} and len(export["ledger"]) == 1


def test_erasure_of_an_unknown_customer_is_404_and_changes_nothing(client, platform, tenant) -> None:
    head = platform.audit.head("acme")
    response = client.post("/v1/customers/nobody/erasure", json={"reason": "x"}, headers=auth(tenant.admin))
    assert response.status_code == 404 and "nothing was erased" in response.json()["detail"]
    assert platform.audit.head("acme") == head


def test_the_old_dek_cannot_be_used_after_erasure(platform, tenant) -> None:
    from datetime import date

    from shared.app.customers import CustomerProfile

    platform.customers.register("acme", CustomerProfile(customerId="p9", joinDate=date(2026, 1, 1), email="a@b.co"))
    doc = platform.customers.get("acme", "p9")
    platform.vault.erase("acme", "p9", None, "test")
    with pytest.raises(PersonalDataDestroyed):
        platform.vault.open(dict(doc, erasedAt=None))  # an old copy of the profile: its key is gone


def test_access_export_holds_profile_ledger_and_tier_history(client, platform, tenant) -> None:
    register(client, tenant)
    client.post("/v1/orders", json=order_body("p1", "o1"), headers=auth(tenant.merchant))
    drain(platform)
    response = client.get("/v1/customers/p1/data-export", headers=auth(tenant.admin))
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["profile"]["personalData"]["name"] == "Jane Zyxwvut"
    assert body["ledger"][0]["referenceOrderId"] == "o1" and body["balance"]["available"] == 100
    assert body["tierHistory"] == []
    assert client.get("/v1/customers/p1/data-export", headers=auth(tenant.merchant)).status_code == 403
    assert platform.audit.head("acme")["action"] == "customer.data-exported"


def test_after_erasure_no_byte_of_the_personal_data_is_anywhere(client, platform, tenant, caplog, clock,
                                                                monkeypatch) -> None:
    """The export made before the erasure too, and no checkpoint by the test: the platform's
    own erasure must leave the store's files clean (tests/erasure_scan.py; the class of these
    tests is tests/unit/privacy/test_erasure.py). NDJSON here, so the test reads the rows
    itself; the Parquet stages are scanned in tests/unit/exports/test_parquet_exports.py."""
    from shared.exports import service

    monkeypatch.setattr(service, "DEFAULT_FORMAT", "ndjson")
    caplog.set_level(logging.DEBUG)
    platform.exports.save_settings("acme", [])  # the worst case: this tenant exports every personal field
    register(client, tenant)
    client.post("/v1/orders", json=order_body("p1", "o1"), headers=auth(tenant.merchant))
    drain(platform)
    clock.advance(timedelta(minutes=5))
    platform.exports.run("acme")
    pk = customer_pk("acme", "p1")
    needles = needles_of(JANE, platform.store.read(CUSTOMERS, pk, "p1"), platform.store.read(PII_KEYS, pk, "dek"))
    index_id = platform.store.read(CUSTOMERS, pk, "p1")["emailIndex"]
    assert client.post("/v1/customers/p1/erasure", json={"reason": "ticket 7"},
                       headers=auth(tenant.admin)).status_code == 200
    drain(platform)
    assert platform.store.read(PII_INDEX, "acme", index_id) is None
    clock.advance(timedelta(minutes=5))
    manifest = platform.exports.run("acme")
    exported = b"".join(
        gzip.decompress(b"".join(platform.exports.file_plaintext("acme", manifest, f)))
        for f in manifest["files"])
    assert b'"p1"' in exported  # the customer is still exported, by id, as erased
    read_models = (str(platform.store.read("balances", pk, "balance"))
                   + str(platform.store.read("orderstatus", "acme:o1", "o1"))
                   + str(platform.poison.list("acme")))
    ErasureScan(platform.settings.data_dir, platform.key_provider).assert_clean(needles, {
        "log records": "\n".join(r.getMessage() for r in caplog.records), "read models": read_models})
