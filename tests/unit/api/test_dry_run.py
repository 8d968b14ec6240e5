"""Dry runs (issue 13, part 6): ``?dryRun=true`` on every write that moves or spends
points answers the outcome the real call then produces, marked as a dry run, and
writes nothing anywhere: the stores' bytes (SQLite db + wal, queue db + wal, the
keyring, the blob folders: every file of the data folder but the rate-limit
counter) are the same before and after. One class of test over every such route:
each case is dry-run, the bytes compared, then run for real and the two answers
compared."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
from fastapi.testclient import TestClient

from shared.app.corrections import AdjustmentRequest
from shared.platform import Platform
from shared.spend.conversions import Programme
from shared.spend.partners import PartnerConfig, PartnerReceipt, PartnerRequest
from shared.webhooks.ssrf import TestAllowance
from tests.conftest import TenantKeys, auth, drain, order_body

# Fields that differ between any two runs by construction (ids minted, instants).
VOLATILE = {"transactionId", "acceptedAt", "decidedAt", "createdAt", "expiresAt", "redemptionId", "entryId",
            "statusUrl", "partnerReference", "dryRun", "updatedAt", "settledAt", "reservedAt"}


@dataclass
class RecordingPartner:
    calls: list[PartnerRequest] = field(default_factory=list)

    def fulfil(self, request: PartnerRequest) -> PartnerReceipt:
        self.calls.append(request)
        return PartnerReceipt(partner_reference=f"P-{len(self.calls)}")


def fingerprint(platform: Platform) -> dict[str, str]:
    """Every file of the data folder and its hash; the -shm index (rebuilt by any
    reader) and the rate-limit counter (a request is charged, dry or not) aside.
    Taken with the store's log copied back and emptied first: the store checkpoints
    earlier commits on a thread of its own (shared.store.sqlite_checkpoint), which
    rewrites the database file's pages without a write of the request's; a write of
    the request's would be in the log, and so in the file after this checkpoint."""
    assert platform.store.forget_deleted(), "the store's log could not be emptied"
    data_dir = platform.settings.data_dir
    return {str(f.relative_to(data_dir)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(data_dir.rglob("*")) if f.is_file() and not f.name.endswith("-shm")
            and not f.name.startswith("ratelimits.db")}


def stable(body: Any) -> Any:
    if isinstance(body, dict):
        return {k: stable(v) for k, v in body.items() if k not in VOLATILE}
    if isinstance(body, list):
        return [stable(v) for v in body]
    return body


@pytest.fixture
def world(platform: Platform, tenant: TenantKeys, client: TestClient) -> RecordingPartner:
    """A tenant with credited orders, funds, a reward, a partner and a conversion programme."""
    for number in (1, 2):
        assert client.post("/v1/orders", json=order_body(f"c{number}", f"seed{number}", "20.00"),
                           headers=auth(tenant.merchant)).status_code == 202
    drain(platform)
    platform.corrections.adjust("acme", "c1", AdjustmentRequest(points=1000, reasonCode="goodwill", reason="funds",
                                                                idempotencyKey="fund-c1"), "test")
    drain(platform)
    partner = RecordingPartner()
    platform.spend.partners.allowance = TestAllowance(frozenset({"127.0.0.1"}))  # test-only: loopback over http
    platform.spend.partners.save("air", PartnerConfig(baseUrl="http://127.0.0.1:9/never"), "test")
    platform.spend.partners.use("air", partner)
    platform.spend.conversions.save_programme("acme", "miles", Programme(partnerId="air", name="Miles", rate="0.5"))
    assert client.post("/v1/rewards", json={"rewardId": "mug", "name": "Mug", "pointsCost": 150, "stock": 3},
                       headers=auth(tenant.admin)).status_code == 201
    return partner


def _reserve(client: TestClient, keys: TenantKeys) -> str:
    made = client.post("/v1/customers/c1/redemptions", json={"idempotencyKey": "res-1", "points": 40,
                                                             "mode": "reserve"}, headers=auth(keys.merchant))
    assert made.status_code == 201, made.text
    return made.json()["redemptionId"]


# (name, method, path or path maker, body, key role, setup before the snapshot)
CASES: list[tuple[str, str, Any, dict | None, str, Callable[[TestClient, TenantKeys], Any] | None]] = [
    ("order", "POST", "/v1/orders", order_body("c1", "dry-o1", "12.34"), "merchant", None),
    ("order-batch", "POST", "/v1/orders/batch",
     {"orders": [order_body("c1", "dry-b1", "5.00"), order_body("c1", "dry-b2", "7.00"),
                 order_body("c2", "dry-b3", "9.99")]}, "merchant", None),
    ("order-resent", "POST", "/v1/orders", order_body("c1", "seed1", "20.00"), "merchant", None),
    ("refund", "POST", "/v1/orders/seed1/refunds", {"refundId": "r1", "amount": "5.00", "currency": "EUR"},
     "merchant", None),
    ("adjustment", "POST", "/v1/customers/c2/adjustments",
     {"points": -50, "reasonCode": "correction", "reason": "double credit", "idempotencyKey": "adj-1"}, "admin", None),
    ("redeem-points", "POST", "/v1/customers/c1/redemptions", {"idempotencyKey": "red-1", "points": 300},
     "merchant", None),
    ("redeem-reward", "POST", "/v1/customers/c1/redemptions", {"idempotencyKey": "red-2", "rewardId": "mug"},
     "merchant", None),
    ("confirm", "POST", lambda rid: f"/v1/customers/c1/redemptions/{rid}/confirm", None, "merchant", _reserve),
    ("cancel", "POST", lambda rid: f"/v1/customers/c1/redemptions/{rid}/cancel", None, "merchant", _reserve),
    ("conversion", "POST", "/v1/customers/c1/conversions",
     {"idempotencyKey": "conv-1", "programmeId": "miles", "points": 101, "partnerAccount": "FF123"}, "merchant", None),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_dry_run_writes_nothing_and_tells_the_real_outcome(case: tuple, client: TestClient, platform: Platform,
                                                              tenant: TenantKeys, world: RecordingPartner) -> None:
    name, method, path, body, role, setup = case
    made = setup(client, tenant) if setup else None
    drain(platform)
    url = path(made) if callable(path) else path
    key = auth(getattr(tenant, role))
    before = fingerprint(platform)
    calls_before = len(world.calls)

    dry = client.request(method, url, params={"dryRun": "true"}, json=body, headers=key)

    assert dry.status_code == 200, dry.text
    assert dry.headers["Accrue-Dry-Run"] == "true" and "Location" not in dry.headers
    assert dry.json()["dryRun"] is True
    assert fingerprint(platform) == before, "a dry run wrote to the data folder"
    assert platform.bus.depth() == 0  # type: ignore[attr-defined]
    assert len(world.calls) == calls_before, "a dry run called the partner"

    real = client.request(method, url, json=body, headers=key)
    assert real.status_code in (200, 201, 202), real.text
    outcome = real.json()
    if url.startswith("/v1/orders") and not url.endswith("refunds"):
        drain(platform)  # orders: the outcome is decided by ingestion
        ids = [o["orderId"] for o in outcome.get("orders", [outcome])]
        decided = [client.get(f"/v1/orders/{i}", headers=key).json() for i in ids]
        outcome = {"orders": decided} if "orders" in outcome else decided[0]
    expected, predicted = stable(outcome), stable(dry.json())
    if "partnerAttempts" in predicted:  # the one thing a dry run does not do: ask the partner
        assert predicted.pop("partnerAttempts") == 0 and dry.json()["partnerReference"] == "dry-run:not-sent"
        assert expected.pop("partnerAttempts") == 1
    assert predicted == expected


def test_a_dry_run_is_refused_as_the_real_call_would_be(client: TestClient, platform: Platform,
                                                         tenant: TenantKeys, world: RecordingPartner) -> None:
    before = fingerprint(platform)
    too_much = client.post("/v1/customers/c2/redemptions", params={"dryRun": "true"},
                           json={"idempotencyKey": "big", "points": 10**6}, headers=auth(tenant.merchant))
    real = client.post("/v1/customers/c2/redemptions", json={"idempotencyKey": "big", "points": 10**6},
                       headers=auth(tenant.merchant))
    assert too_much.status_code == real.status_code == 422
    assert too_much.json()["type"] == real.json()["type"]
    unknown = client.post("/v1/orders", params={"dryRun": "true"}, json=order_body("nobody", "x1"),
                          headers=auth(tenant.merchant))
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "customerId"
    assert fingerprint(platform) == before


def test_dry_run_false_is_the_real_call(client: TestClient, platform: Platform, tenant: TenantKeys) -> None:
    answer = client.post("/v1/orders", params={"dryRun": "false"}, json=order_body("c1", "real1"),
                         headers=auth(tenant.merchant))
    assert answer.status_code == 202 and "dryRun" not in answer.json() and "Accrue-Dry-Run" not in answer.headers
    assert platform.bus.depth() == 1  # type: ignore[attr-defined]


# Each verdict the claimed intake can reach (shared/app/claims.py), against an order "seed1" claimed for real
# (customer c1, 20.00) and one claimed with the idempotency key "pos-1": (name, body, real status).
CLAIM_CASES = [
    ("new", order_body("c1", "fresh-1", "3.00"), 202),
    ("same-order-again", order_body("c1", "seed1", "20.00"), 200),
    ("same-id-other-body", order_body("c1", "seed1", "21.00"), 422),
    ("same-id-other-customer", order_body("c2", "seed1", "20.00"), 422),
    ("key-reused-for-another-order", order_body("c1", "fresh-2", "3.00", idempotencyKey="pos-1"), 409),
    ("order-id-used-as-a-key", order_body("c1", "fresh-3", "3.00", idempotencyKey="seed1"), 409),
]


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
@pytest.mark.parametrize("case", CLAIM_CASES, ids=[c[0] for c in CLAIM_CASES])
def test_a_dry_run_order_is_judged_against_the_claims_and_claims_nothing(
        case: tuple, batch: bool, client: TestClient, platform: Platform, tenant: TenantKeys,
        world: RecordingPartner) -> None:
    """A dry-run order meets the real claims (the same verdict as the real call: replay, 422, 409) and makes
    none: the real call that follows gets the verdict it would have got without the dry run."""
    from shared.app.claims import claim_key
    from shared.store.layout import ORDER_STATUS

    _, body, expected = case
    assert client.post("/v1/orders", json=order_body("c1", "keyed", "1.00", idempotencyKey="pos-1"),
                       headers=auth(tenant.merchant)).status_code == 202
    drain(platform)
    path, payload = ("/v1/orders/batch", {"orders": [body]}) if batch else ("/v1/orders", body)
    before = fingerprint(platform)

    dry = client.post(path, params={"dryRun": "true"}, json=payload, headers=auth(tenant.merchant))

    assert fingerprint(platform) == before, "a dry run wrote (a claim?) to the data folder"
    pk, order_id = claim_key("acme", body["orderId"])
    if expected == 202:
        assert platform.store.read(ORDER_STATUS, pk, order_id) is None, "a dry run left a claim"
    real = client.post(path, json=payload, headers=auth(tenant.merchant))
    assert real.status_code == expected, real.text
    if expected >= 400:
        assert dry.status_code == expected and dry.json()["type"] == real.json()["type"], dry.text
    else:
        assert dry.status_code == 200 and dry.json()["dryRun"] is True, dry.text
        answer = dry.json()["orders"][0] if batch else dry.json()
        assert answer["status"] == "credited", answer  # ingestion ran inline and matched the claim
