"""Every item of a list, however long: no list route reads its items with one read capped at
a fixed ``limit`` and then pages in memory (that ended the walk at the cap with ``next:
null``, the items past it unreachable: 1,009 API keys listed 1,000; 505 imports listed 500).
Each case seeds its list straight into the store, past the read's old cap, and walks it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable

import pytest
from fastapi.testclient import TestClient

from shared.clock import iso
from shared.imports.service import import_pk
from shared.platform import Platform
from shared.store.layout import API_KEYS, REVIEWS, SYSTEM
from tests.conftest import TenantKeys, auth


def _keys(p: Platform, clock: Any, n: int) -> set[str]:
    for i in range(n):
        key_id = f"{i:012d}".translate(str.maketrans("0123456789", "abcdefghij"))
        p.store.create(API_KEYS, {"id": key_id, "pk": key_id, "docType": "apiKey", "keyId": key_id,
                                  "tenantId": "acme", "role": "merchant", "label": "seeded", "hash": "x",
                                  "createdAt": iso(clock.now() + timedelta(seconds=i)), "createdBy": None,
                                  "revokedAt": None})
    return {f"{i:012d}".translate(str.maketrans("0123456789", "abcdefghij")) for i in range(n)}


def _imports(p: Platform, clock: Any, n: int) -> set[str]:
    for i in range(n):
        p.store.create(SYSTEM, {"id": f"imp-{i:016x}", "pk": import_pk("acme"), "docType": "import",
                                "tenantId": "acme", "importId": f"imp-{i:016x}", "kind": "customers",
                                "format": "ndjson", "mode": "upsert", "evaluate": False, "status": "awaiting-upload",
                                "path": "x", "bytes": None, "createdAt": iso(clock.now() + timedelta(seconds=i)),
                                "startedAt": None, "finishedAt": None, "result": None})
    return {f"imp-{i:016x}" for i in range(n)}


def _reviews(p: Platform, clock: Any, n: int) -> set[str]:
    for i in range(n):
        rid = f"rev-{i:06d}"
        p.store.create(REVIEWS, {"id": rid, "pk": "acme", "docType": "review", "reviewId": rid, "tenantId": "acme",
                                 "kind": "redemption", "customerId": "c1", "entryId": f"e{i}", "reasons": [],
                                 "details": {}, "status": "open",
                                 "createdAt": iso(clock.now() + timedelta(seconds=i))})
    return {f"rev-{i:06d}" for i in range(n)}


def _terms(p: Platform, clock: Any, n: int) -> set[str]:
    p.agents.knowledge.save_terms("acme", "aaa", "Terms", "# first", "seed", "admin")
    for i in range(n):  # newer versions of another document, past the old read's 200
        p.agents.knowledge.save_terms("acme", "zzz", "Terms", f"# v{i}", "seed", "admin")
    return {"aaa", "zzz"}


# route -> (seed, how many, the item's id field, page size): each count is past the old cap
CASES: dict[str, tuple[Callable[[Platform, Any, int], set[str]], int, str, int]] = {
    "/v1/api-keys": (_keys, 1009, "keyId", 200),          # read capped at 1000
    "/v1/imports": (_imports, 505, "importId", 200),      # read capped at 500
    "/v1/reviews": (_reviews, 505, "reviewId", 200),      # read capped at MAX_LIST (500)
    "/v1/redemption-reviews": (_reviews, 505, "reviewId", 200),
    "/v1/agent-terms": (_terms, 201, "docId", 1),         # the newest 200 versions read
}


@pytest.mark.parametrize("route", sorted(CASES))
def test_paging_reaches_every_item_past_the_old_cap(client: TestClient, platform: Platform, tenant: TenantKeys,
                                                    clock: Any, route: str) -> None:
    seed, count, field, limit = CASES[route]
    expected = seed(platform, clock, count)
    seen: list[str] = []
    link: str | None = f"{route}?limit={limit}"
    while link:
        page = client.get(link, headers=auth(tenant.admin))
        assert page.status_code == 200, page.text
        seen += [item[field] for item in page.json()["items"]]
        link = page.json()["next"]
    assert len(seen) == len(set(seen)), "an item came twice"
    assert expected <= set(seen), f"{len(expected - set(seen))} items never listed"
