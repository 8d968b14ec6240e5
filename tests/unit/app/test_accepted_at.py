"""An order's acceptedAt reads the same in every answer (queued, credited, resent)."""

from __future__ import annotations

from tests.conftest import auth, drain, order_body


def test_accepted_at_is_spelled_the_same_in_every_answer(platform, tenant, client, clock) -> None:  # type: ignore
    """docs/orders.md: acceptedAt is "the same in every answer"; the credited order's record
    spelled it ``+00:00`` while the queued answer said ``Z`` (an outside review)."""
    from datetime import timedelta

    clock.advance(timedelta(microseconds=123456))
    queued = client.post("/v1/orders", json=order_body("c1", "o-at"), headers=auth(tenant.merchant)).json()
    drain(platform)
    credited = client.get("/v1/orders/o-at", headers=auth(tenant.merchant)).json()
    resent = client.post("/v1/orders", json=order_body("c1", "o-at"), headers=auth(tenant.merchant)).json()
    assert queued["acceptedAt"] == credited["acceptedAt"] == resent["acceptedAt"], (queued, credited, resent)
    assert credited["acceptedAt"].endswith("Z") and credited["decidedAt"].endswith("Z")
