"""The per-tenant endpoint cap holds under concurrent registrations.

The outside review: 20 registrations sent at once to a tenant with 45 endpoints all
counted 45 and all succeeded (65 endpoints). The cap is now held by slot documents
created in the endpoint's own partition batch; this module's check runs on SQLite here
and on Cosmos DB in tests/integration/webhooks."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

from shared.errors import Conflict
from shared.webhooks.service import MAX_ENDPOINTS_PER_TENANT, SLOT_DOC, WebhookService
from shared.store.layout import WEBHOOK_ENDPOINTS
from shared.store.port import Query

URL = "https://hooks.example.test/accrue"
WRITERS = 20


def resolve_publicly(host: str, port: int) -> list[str]:
    """Registration resolves the host (the SSRF guard); nothing is ever sent in these tests."""
    return ["93.184.216.34"]


def fill_then_race(webhooks: WebhookService, store, tenant_id: str, already: int) -> None:  # type: ignore[no-untyped-def]
    webhooks.resolver = resolve_publicly
    for number in range(already):
        webhooks.register(tenant_id, f"{URL}/{number}", ["ruleset.activated"])
    barrier = Barrier(WRITERS)

    def register(number: int) -> str:
        barrier.wait()
        try:
            webhooks.register(tenant_id, f"{URL}/race/{number}", ["ruleset.activated"])
            return "created"
        except Conflict:
            return "refused"

    with ThreadPoolExecutor(WRITERS) as pool:
        outcomes = list(pool.map(register, range(WRITERS)))
    endpoints = webhooks.list(tenant_id)
    assert len(endpoints) == MAX_ENDPOINTS_PER_TENANT
    assert outcomes.count("created") == MAX_ENDPOINTS_PER_TENANT - already
    # Every endpoint holds exactly one slot, and no slot is held twice or left without its endpoint.
    docs = store.query(WEBHOOK_ENDPOINTS, Query(pk=tenant_id, limit=1000))
    slots = {d["slot"]: d["endpointId"] for d in docs if d.get("docType") == SLOT_DOC}
    assert sorted(slots) == sorted(e["slot"] for e in endpoints)
    assert {e["id"] for e in endpoints} == set(slots.values())
    # Deleting frees a slot: one more registration fits, and then the cap refuses again.
    webhooks.delete(tenant_id, endpoints[0]["id"])
    webhooks.register(tenant_id, f"{URL}/after-delete", ["ruleset.activated"])
    try:
        webhooks.register(tenant_id, f"{URL}/one-too-many", ["ruleset.activated"])
    except Conflict:
        pass
    else:
        raise AssertionError("a registration beyond the cap was accepted")


def test_twenty_concurrent_registrations_never_exceed_the_cap_on_sqlite(platform, tenant) -> None:
    fill_then_race(platform.webhooks, platform.store, "acme", MAX_ENDPOINTS_PER_TENANT - 5)


def test_endpoints_registered_before_slots_existed_still_count(platform, tenant) -> None:
    """An endpoint written by an earlier release (no slot) is given one before any new endpoint."""
    webhooks = platform.webhooks
    webhooks.resolver = resolve_publicly
    for number in range(MAX_ENDPOINTS_PER_TENANT - 1):
        view, _ = webhooks.register("acme", f"{URL}/{number}", ["ruleset.activated"])
    legacy = [d for d in platform.store.query(WEBHOOK_ENDPOINTS, Query(pk="acme", limit=1000))]
    for doc in legacy:  # back to the old shape: endpoints only, no slot anywhere
        if doc.get("docType") == SLOT_DOC:
            platform.store.delete(WEBHOOK_ENDPOINTS, "acme", doc["id"])
        else:
            platform.store.upsert(WEBHOOK_ENDPOINTS, {k: v for k, v in doc.items() if k != "slot"})
    webhooks.register("acme", f"{URL}/last", ["ruleset.activated"])
    try:
        webhooks.register("acme", f"{URL}/beyond", ["ruleset.activated"])
    except Conflict:
        pass
    else:
        raise AssertionError("legacy endpoints were not counted")
    assert all("slot" in e for e in webhooks.list("acme"))


def test_a_slot_document_is_never_listed_or_read_as_an_endpoint(platform, tenant) -> None:
    platform.webhooks.resolver = resolve_publicly
    view, _ = platform.webhooks.register("acme", URL, ["ruleset.activated"])
    assert [e["id"] for e in platform.webhooks.list("acme")] == [view["id"]]
    slot = next(d for d in platform.store.query(WEBHOOK_ENDPOINTS, Query(pk="acme", limit=10))
                if d.get("docType") == SLOT_DOC)
    try:
        platform.webhooks.get("acme", slot["id"])
    except Exception as error:  # noqa: BLE001 - the type is what is asserted
        assert type(error).__name__ == "NotFound"
    else:
        raise AssertionError("a slot was read as an endpoint")
