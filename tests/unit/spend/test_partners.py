"""Partner redemptions and conversions against a real HTTP server on 127.0.0.1:
success, slow (timeouts), flaky (retries), refusing, down (compensation), and
the circuit breaker's closed / open / half-open cycle."""

from __future__ import annotations

import time

import pytest

from shared.spend.circuit import CircuitBreaker, CircuitState
from shared.spend.conversions import Programme, partner_amount
from tests.conftest import auth
from tests.unit.spend.conftest import FakePartner, fund, ledger_invariants, register_partner

REDEEM = "/v1/customers/{}/redemptions"
CONVERT = "/v1/customers/{}/conversions"


@pytest.fixture
def voucher(client, platform, tenant, partner: FakePartner) -> FakePartner:
    register_partner(platform, "shop", partner.url)
    response = client.post("/v1/rewards", json={"rewardId": "gift", "name": "Gift card", "pointsCost": 500,
                                                "stock": 10, "partnerId": "shop", "partnerSku": "GC-10"},
                           headers=auth(tenant.admin))
    assert response.status_code == 201, response.text
    fund(platform, "acme", "c1", 2000)
    return partner


def test_a_partner_reward_is_reserved_fulfilled_then_confirmed(client, platform, tenant, voucher) -> None:
    response = client.post(REDEEM.format("c1"), json={"idempotencyKey": "g1", "rewardId": "gift"},
                           headers=auth(tenant.merchant))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "confirmed" and body["partnerReference"] == "P-1" and body["available"] == 1500
    call = voucher.calls[0]
    assert call["idempotencyKey"] == body["redemptionId"] == call["body"]["reference"]
    assert call["body"]["sku"] == "GC-10" and call["body"]["points"] == 500
    entries = ledger_invariants(platform, "acme", "c1")
    assert [(e["entryType"], e["status"], e["signedAmount"]) for e in entries[1:]] == [
        ("REDEEM", "PENDING", -500), ("REDEEM", "COMMITTED", 0)]
    assert entries[-1]["attributes"]["partnerReference"] == "P-1"
    replay = client.post(REDEEM.format("c1"), json={"idempotencyKey": "g1", "rewardId": "gift"},
                         headers=auth(tenant.merchant))
    assert replay.status_code == 200 and replay.json()["state"] == "confirmed" and len(voucher.calls) == 1


def test_a_flaky_partner_is_retried_with_the_same_reference(client, platform, tenant, voucher) -> None:
    voucher.mode, voucher.fail_first = "flaky", 2
    response = client.post(REDEEM.format("c1"), json={"idempotencyKey": "g1", "rewardId": "gift"},
                           headers=auth(tenant.merchant))
    assert response.status_code == 201 and response.json()["partnerAttempts"] == 3
    assert len({c["body"]["reference"] for c in voucher.calls}) == 1 and len(voucher.calls) == 3


@pytest.mark.parametrize("mode, status, code", [("down", 503, "partner-unavailable"),
                                                ("slow", 503, "partner-unavailable"),
                                                ("reject", 502, "partner-rejected")])
def test_a_failing_partner_releases_the_reservation(client, platform, tenant, voucher, mode, status, code) -> None:
    voucher.mode, voucher.delay = mode, 1.0
    started = time.monotonic()
    response = client.post(REDEEM.format("c1"), json={"idempotencyKey": "g1", "rewardId": "gift"},
                           headers=auth(tenant.merchant))
    assert response.status_code == status, response.text
    problem = response.json()
    assert problem["type"].endswith(code) and problem["state"] == "released" and problem["pointsReturned"] == 500
    assert problem["available"] == 2000 and problem["redemptionId"].startswith("rd-")
    assert len(voucher.calls) == (1 if mode == "reject" else 3)
    if mode == "slow":
        assert time.monotonic() - started < 3 * 0.5 + 1.5  # bounded by the timeouts, not the partner's 1 s each
    entries = ledger_invariants(platform, "acme", "c1")
    assert [e["entryType"] for e in entries] == ["ADJUST", "REDEEM", "RELEASE"]
    assert entries[-1]["attributes"]["resolution"] == "released"
    assert client.get("/v1/rewards/gift", headers=auth(tenant.admin)).json()["claimed"] == 0
    # The same request again gives the same outcome and writes nothing.
    again = client.post(REDEEM.format("c1"), json={"idempotencyKey": "g1", "rewardId": "gift"},
                        headers=auth(tenant.merchant))
    assert again.status_code == status and again.json()["state"] == "released"
    assert len(platform.ledger.entries("acme", "c1")) == 3


def test_the_circuit_opens_fails_fast_then_half_opens(client, platform, tenant, voucher) -> None:
    register_partner(platform, "shop", voucher.url, failureThreshold=3, cooldownSeconds=0.3, maxAttempts=1)
    voucher.mode = "down"
    for number in range(3):
        response = client.post(REDEEM.format("c1"), json={"idempotencyKey": f"g{number}", "rewardId": "gift"},
                               headers=auth(tenant.merchant))
        assert response.status_code == 503
    calls = len(voucher.calls)
    fast = client.post(REDEEM.format("c1"), json={"idempotencyKey": "g9", "rewardId": "gift"},
                       headers=auth(tenant.merchant))
    assert fast.status_code == 503 and fast.json()["circuit"] == "open" and len(voucher.calls) == calls
    assert platform.ledger.head("acme", "c1").balance == 2000
    time.sleep(0.35)
    voucher.mode = "ok"
    trial = client.post(REDEEM.format("c1"), json={"idempotencyKey": "g10", "rewardId": "gift"},
                        headers=auth(tenant.merchant))
    assert trial.status_code == 201 and len(voucher.calls) == calls + 1


def test_circuit_breaker_states() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=2, cooldown_seconds=10, now=lambda: now[0])
    assert breaker.allow() and breaker.state is CircuitState.CLOSED
    breaker.record_failure()
    assert breaker.state is CircuitState.CLOSED
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN and not breaker.allow() and breaker.retry_after() == 10
    now[0] = 10
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.allow() and not breaker.allow()  # one trial at a time
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN and not breaker.allow()
    now[0] = 20.5
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED and breaker.allow() and breaker.allow()


def test_an_unexpected_error_in_the_half_open_trial_does_not_wedge_the_breaker() -> None:
    from shared.spend.partners import PartnerRequest, ResilientPartner

    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=10, now=lambda: now[0])
    breaker.record_failure()
    now[0] = 10  # half-open: one trial allowed

    class Broken:
        def fulfil(self, request):  # type: ignore[no-untyped-def]
            raise KeyError("a port bug, not a partner answer")

    partner = ResilientPartner("air", Broken(), breaker, sleep=lambda seconds: None)
    request = PartnerRequest(partner_id="air", kind="reward", reference="r1", tenant_id="t", customer_id="c",
                             points=1)
    with pytest.raises(KeyError):
        partner.fulfil(request)
    assert breaker.state is CircuitState.OPEN  # the trial counted as a failure, not left in flight
    now[0] = 20.5
    assert breaker.allow()  # so the next cooldown gives a new trial


@pytest.mark.parametrize("rate, rounding, points, expected", [
    ("0.5", "down", 1001, 500), ("0.5", "up", 1001, 501), ("0.5", "half-up", 1001, 501),
    ("0.5", "half-even", 1001, 500), ("1.25", "down", 3, 3), ("2", "down", 7, 14)])
def test_conversion_amounts(rate, rounding, points, expected) -> None:
    programme = Programme(partnerId="air", name="Miles", rate=rate, rounding=rounding)
    assert partner_amount(programme, points) == expected


def test_conversions_through_the_partner(client, platform, tenant, partner) -> None:
    register_partner(platform, "air", partner.url)
    put = client.put("/v1/conversion-programmes/miles", json={"partnerId": "air", "name": "Air miles", "rate": "0.5",
                                                              "rounding": "down", "minimumPoints": 1000},
                     headers=auth(tenant.admin))
    assert put.status_code == 200, put.text
    assert client.put("/v1/conversion-programmes/bad", json={"partnerId": "nobody", "name": "x", "rate": "1"},
                      headers=auth(tenant.admin)).status_code == 422
    assert client.put("/v1/conversion-programmes/bad", json={"partnerId": "air", "name": "x", "rate": "0"},
                      headers=auth(tenant.admin)).status_code == 422
    fund(platform, "acme", "c1", 5000)
    body = {"idempotencyKey": "v1", "programmeId": "miles", "points": 1001, "partnerAccount": "FF123"}
    done = client.post(CONVERT.format("c1"), json=body, headers=auth(tenant.merchant))
    assert done.status_code == 201, done.text
    assert done.json()["status"] == "confirmed" and done.json()["partnerAmount"] == 500
    assert partner.calls[0]["body"] | {"amount": 500, "partnerAccount": "FF123", "kind": "conversion"} \
        == partner.calls[0]["body"]
    entries = ledger_invariants(platform, "acme", "c1")
    assert [(e["entryType"], e["status"], e["signedAmount"]) for e in entries[1:]] == [
        ("CONVERT", "PENDING", -1001), ("CONVERT", "COMMITTED", 0)]
    assert "FF123" not in repr(platform.ledger.entries("acme", "c1")) + repr(
        platform.store.query("ledger", __import__("shared.store.port", fromlist=["Query"]).Query(pk="acme:c1")))
    assert client.post(CONVERT.format("c1"), json=body, headers=auth(tenant.merchant)).status_code == 200
    small = client.post(CONVERT.format("c1"), json=dict(body, idempotencyKey="v2", points=999),
                        headers=auth(tenant.merchant))
    assert small.status_code == 422 and small.json()["errors"][0]["field"] == "points"
    too_much = client.post(CONVERT.format("c1"), json=dict(body, idempotencyKey="v3", points=4000),
                           headers=auth(tenant.merchant))
    assert too_much.status_code == 422 and too_much.json()["available"] == 3999
    partner.mode = "down"
    failed = client.post(CONVERT.format("c1"), json=dict(body, idempotencyKey="v4", points=2000),
                         headers=auth(tenant.merchant))
    assert failed.status_code == 503 and failed.json()["state"] == "released" and failed.json()["available"] == 3999
    ledger_invariants(platform, "acme", "c1")


def test_partner_registration_is_platform_admin_only_and_audited(client, platform, tenant, partner,
                                                                 ceremony) -> None:
    operator = ceremony.operators[0].api_key
    body = {"baseUrl": partner.url, "timeoutSeconds": 1}
    assert client.put("/v1/platform/partners/air", json=body, headers=auth(tenant.admin)).status_code == 403
    assert client.put("/v1/platform/partners/air", json={"baseUrl": "ftp://x.example"},
                      headers=auth(operator)).status_code == 422
    malformed = client.put("/v1/platform/partners/air", json={"baseUrl": "http://[::1/x"}, headers=auth(operator))
    assert malformed.status_code == 422 and "baseUrl" in malformed.text
    filed = client.put("/v1/platform/partners/air", json=body, headers=auth(operator))
    assert filed.status_code == 202 and platform.spend.partners.list() == []  # two operators approve it
    saved = ceremony.act("PUT", "/v1/platform/partners/air", body)
    assert saved.status_code == 200 and saved.json()["partner"]["baseUrl"] == partner.url
    assert [p["partnerId"] for p in client.get("/v1/platform/partners", headers=auth(operator)).json()["items"]] \
        == ["air"]
    assert [r["action"] for r in platform.audit.records("_platform", 0, 50)][-2:] == \
        ["partner.saved", "partner.save.executed"]


def test_a_partner_failure_on_review_approval_closes_the_review(client, platform, tenant, voucher) -> None:
    client.put("/v1/spend/policy", json={"reviewThresholdPoints": 500}, headers=auth(tenant.admin))
    held = client.post(REDEEM.format("c1"), json={"idempotencyKey": "r1", "rewardId": "gift"},
                       headers=auth(tenant.merchant))
    assert held.status_code == 202 and held.json()["status"] == "in-review"
    [review] = platform.reviews.list("acme", status="open")
    voucher.mode = "reject"
    approved = client.post(f"/v1/reviews/{review['reviewId']}/approve", json={}, headers=auth(tenant.admin))
    assert approved.status_code == 502 and approved.json()["state"] == "released"
    assert platform.reviews.list("acme", status="open") == []  # closed, not stuck open on a released reservation
    assert platform.reviews.get("acme", review["reviewId"])["status"] == "withdrawn"
    assert platform.ledger.head("acme", "c1").balance == 2000


def test_one_key_used_by_two_customers_and_two_tenants_is_three_partner_references(client, platform, tenant,
                                                                                   partner) -> None:  # type: ignore
    """Keys are per customer, and a partner de-duplicates on the redemption id it is sent: that
    id was once derived from the key alone, so the second and third conversions below were
    debited and answered by the partner as replays of the first (found by an outside review)."""
    from tests.conftest import add_customer, make_tenant

    register_partner(platform, "air", partner.url)
    other = make_tenant(platform, "globex")
    add_customer(platform, "globex", "g1")
    for keys in (tenant, other):
        assert client.put("/v1/conversion-programmes/miles", json={"partnerId": "air", "name": "Air miles",
                          "rate": "1", "rounding": "down"}, headers=auth(keys.admin)).status_code == 200
    answers = []
    for tenant_id, customer, keys, account in (("acme", "c1", tenant, "FF-A"), ("acme", "c2", tenant, "FF-B"),
                                               ("globex", "g1", other, "FF-C")):
        fund(platform, tenant_id, customer, 1000)
        sent = client.post(f"/v1/customers/{customer}/conversions", headers=auth(keys.merchant), json={
            "idempotencyKey": "order-1", "programmeId": "miles", "points": 100, "partnerAccount": account})
        assert sent.status_code in (200, 201), sent.text
        answers.append(sent.json())
    assert len({a["redemptionId"] for a in answers}) == 3
    assert len(partner.fulfilled) == 3 and len({a["partnerReference"] for a in answers}) == 3
