"""Imported credits follow the tenant's expiry policy, as credits written live do
(docs/expiry.md: the policy is stamped on an entry when it is written): an imported
order's earn, an award and an opening balance each carry ``expiresAt`` counted from the
import, show in the customer's upcoming expiries and expire with the job. Before, they
never expired (found by an outside review), so customers spent their live, expiring
points first and kept the imported ones for ever."""

from __future__ import annotations

from datetime import timedelta

from shared.expiry.policy import ExpiryPolicy, policy_stamp
from tests.conftest import drain
from tests.unit.imports.conftest import ledger_docs, ndjson, run_import

POLICY = {"kind": "rolling", "months": 12}


def test_imported_credits_are_stamped_by_the_policy_and_expire(platform, tenant, clock) -> None:  # type: ignore
    settings = platform.tenants.get("acme")
    platform.tenants.save(settings.model_copy(update={"expiry_policy": ExpiryPolicy.model_validate(POLICY)}))
    imported = clock.now()
    files = {
        "orders": [{"orderId": "h1", "customerId": "c1", "amount": "10.00", "currency": "EUR",
                    "timestamp": "2024-03-01T10:00:00Z", "points": 100}],
        "awards": [{"awardId": "a1", "customerId": "c2", "points": 40, "reason": "goodwill",
                    "awardedAt": "2024-03-01T10:00:00Z"}, {"awardId": "a2", "customerId": "c2", "points": 2,
                                                           "reason": "now"}],
        "opening-balances": [{"customerId": "c3", "points": 70, "asOf": "2024-03-01T10:00:00Z"}],
    }
    for kind, rows in files.items():
        assert run_import(platform, "acme", ndjson(rows), kind=kind)["rowsFailed"] == 0
    drain(platform)
    credits = [d for d in ledger_docs(platform, "acme") if d.get("docType") == "entry"]
    assert len(credits) == 4
    tenant_now = platform.tenants.get("acme")
    # Counted from the import (the clock when it was created), not from the rows' 2024 dates.
    expected = policy_stamp(tenant_now.expiry_policy, tenant_now.time_zone, imported)
    assert {d["attributes"].get("expiresAt") for d in credits} == {expected}
    assert platform.expiry.book("acme", "c1").lots  # a lot with an expiry, not "never expiring"
    assert all(lot.expires_at is not None for c in ("c1", "c2", "c3")
               for lot in platform.expiry.book("acme", c).lots.values())
    # A re-run changes nothing (the stamp is not part of the rows' fingerprints).
    before = ledger_docs(platform, "acme")
    for kind, rows in files.items():
        assert run_import(platform, "acme", ndjson(rows), kind=kind)["rowsFailed"] == 0
    assert [d for d in ledger_docs(platform, "acme") if d["docType"] == "entry"] == \
        [d for d in before if d["docType"] == "entry"]
    # A year and a bit later the job expires every imported lot.
    clock.advance(timedelta(days=400))
    report = platform.expiry.run()
    assert report.points_expired == 100 + 40 + 2 + 70
    assert [platform.ledger.head("acme", c).balance for c in ("c1", "c2", "c3")] == [0, 0, 0]
