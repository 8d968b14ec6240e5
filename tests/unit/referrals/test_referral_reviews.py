"""A referral whose qualification passes through a review ends as it would without one:
both rewards at most once, within the referrer's cap, nothing paid for an order refunded in
full. Two reviews meet referrals: the referral's own velocity hold (kind ``referral``) and
the fraud controls' hold of the qualifying order (kind ``earn``). Found by an outside review:
a held referral's approval paid past the cap and paid for a fully refunded order, and an
order credited by its fraud review never qualified its referral."""

from __future__ import annotations

from tests.conftest import auth, drain, order_body
from tests.unit.referrals.test_referrals_api import _order, _referral_points, _register, _setup


def _held_referral(client, platform, tenant, **programme) -> dict:  # type: ignore[no-untyped-def]
    """bob qualifies; cid's qualifying order finds the referrer over the velocity limit: held."""
    code = _setup(client, tenant, velocityPerDay=1, **programme)
    for name in ("bob", "cid"):
        assert _register(client, tenant, name, code).status_code == 201
        _order(client, platform, tenant, name, f"o-{name}")
    assert platform.referrals.get("acme", "cid")["status"] == "held"
    [review] = client.get("/v1/reviews?kind=referral", headers=auth(tenant.admin)).json()["items"]
    return review


def test_a_held_referral_whose_order_is_refunded_in_full_pays_nothing(client, platform, tenant) -> None:  # type: ignore
    review = _held_referral(client, platform, tenant)
    refund = client.post("/v1/orders/o-cid/refunds", json={"refundId": "r1", "amount": "40.00", "currency": "EUR"},
                         headers=auth(tenant.merchant))
    assert refund.status_code == 201, refund.text
    drain(platform)
    assert platform.referrals.get("acme", "cid")["status"] == "rejected"
    approve = client.post(f"/v1/reviews/{review['reviewId']}/approve", headers=auth(tenant.admin))
    assert approve.status_code == 409, "the review was withdrawn: nothing is left to approve"
    drain(platform)
    assert _referral_points(platform, "cid") == [] and _referral_points(platform, "ann") == [500]


def test_a_held_referral_partly_refunded_is_still_the_reviews(client, platform, tenant) -> None:  # type: ignore
    review = _held_referral(client, platform, tenant)
    assert client.post("/v1/orders/o-cid/refunds", json={"refundId": "r1", "amount": "10.00", "currency": "EUR"},
                       headers=auth(tenant.merchant)).status_code == 201
    drain(platform)
    assert client.post(f"/v1/reviews/{review['reviewId']}/approve", headers=auth(tenant.admin)).status_code == 200
    drain(platform)
    assert _referral_points(platform, "cid") == [250] and _referral_points(platform, "ann") == [500, 500]


def test_approving_a_held_referral_takes_a_place_under_the_cap(client, platform, tenant) -> None:  # type: ignore
    review = _held_referral(client, platform, tenant, capPerPeriod=1)  # bob took the only place
    assert client.post(f"/v1/reviews/{review['reviewId']}/approve", headers=auth(tenant.admin)).status_code == 200
    drain(platform)
    assert platform.referrals.get("acme", "cid")["status"] == "capped"
    assert _referral_points(platform, "ann") == [500] and _referral_points(platform, "cid") == []


def test_an_order_credited_by_its_fraud_review_qualifies_the_referral(client, platform, tenant) -> None:  # type: ignore
    code = _setup(client, tenant)
    assert _register(client, tenant, "bob", code).status_code == 201
    assert _register(client, tenant, "cid", code).status_code == 201
    policy = client.put("/v1/fraud/policy", json={"customer": {"pointsPerHour": 50}}, headers=auth(tenant.admin))
    assert policy.status_code == 200, policy.text
    for name in ("bob", "cid"):
        sent = client.post("/v1/orders", json=order_body(name, f"o-{name}", "40.00"), headers=auth(tenant.merchant))
        assert sent.status_code == 202, sent.text
    drain(platform)
    held = client.get("/v1/reviews?kind=earn", headers=auth(tenant.admin)).json()["items"]
    reviews = {r["customerId"]: r["reviewId"] for r in held}
    assert set(reviews) == {"bob", "cid"}
    for name, decision in (("bob", "approve"), ("cid", "reject")):
        decided = client.post(f"/v1/reviews/{reviews[name]}/{decision}", headers=auth(tenant.admin))
        assert decided.status_code == 200, decided.text
    drain(platform)
    drain(platform)  # a redelivered decision pays nothing twice
    assert platform.referrals.get("acme", "bob")["status"] == "qualified"
    assert platform.referrals.get("acme", "cid")["status"] == "pending", "a rejected order qualifies nothing"
    assert _referral_points(platform, "bob") == [250] and _referral_points(platform, "ann") == [500]
