"""The review's reproduction (issue 12) against the local platform as users run it:
20 concurrent ``POST /v1/orders`` of one order id over real HTTP on loopback, the
API, the ingest workers and the projector in their own processes. Exactly one
send wins and exactly one customer is credited, once."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import LocalPlatform

pytestmark = pytest.mark.slow

N = 20
CUSTOMERS = [f"cust-{n:03d}" for n in range(1, 6)]


def _order(order_id: str, customer: str, amount: str = "10.00", **extra: Any) -> dict:
    return {"customerId": customer, "orderId": order_id, "amount": amount, "currency": "EUR",
            "timestamp": "2026-11-20T09:30:00+01:00", "channel": "store", **extra}


def _race(http: httpx.Client, bodies: list[dict]) -> list[httpx.Response]:
    answers: list[Any] = [None] * len(bodies)
    start = threading.Barrier(len(bodies))

    def send(index: int) -> None:
        start.wait(timeout=10)
        answers[index] = http.post("/v1/orders", json=bodies[index])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(a is not None for a in answers)
    return answers


def _credits(http: httpx.Client, order_id: str) -> list[tuple[str, int]]:
    found = []
    for customer in CUSTOMERS:
        for entry in http.get(f"/v1/customers/{customer}/ledger", params={"limit": 200}).json()["items"]:
            if entry["referenceOrderId"] == order_id:
                found.append((customer, entry["signedAmount"]))
    return found


def test_concurrent_sends_of_one_order_id_credit_exactly_one_customer_once(local_platform: LocalPlatform) -> None:
    merchant = {"Authorization": f"Bearer {local_platform.keys['merchant']}"}
    limits = httpx.Limits(max_connections=N, max_keepalive_connections=N)
    with httpx.Client(base_url=local_platform.url, headers=merchant, timeout=30, limits=limits) as http:
        # Another customer or another amount each time: one may win, the rest are refused.
        bodies = [_order("race-1", CUSTOMERS[n % 5], f"{1 + n}.00") for n in range(N)]
        answers = _race(http, bodies)
        won = [i for i, a in enumerate(answers) if a.status_code == 202]
        assert len(won) == 1, [a.status_code for a in answers]
        assert all(a.status_code == 422 for i, a in enumerate(answers) if i != won[0])
        outcome = http.get("/v1/orders/race-1", params={"wait": 10}).json()
        assert outcome["status"] == "credited" and outcome["customerId"] == bodies[won[0]]["customerId"]
        assert _credits(http, "race-1") == [(bodies[won[0]]["customerId"], (1 + won[0]) * 10)]

        # The same order twenty times at once: every send is answered with the order's
        # state when it was answered (queued, the winner's answer; or already credited, as
        # a sequential resend would be), and it is credited once.
        twins = _race(http, [_order("race-2", "cust-002", "4.00")] * N)
        assert {a.status_code for a in twins} <= {200, 202} and 202 in {a.status_code for a in twins}
        assert len({a.text for a in twins if a.status_code == 202}) == 1
        assert len({a.text for a in twins if a.status_code == 200}) <= 1
        assert all(a.json()["status"] == "credited" for a in twins if a.status_code == 200)
        assert http.get("/v1/orders/race-2", params={"wait": 10}).json()["status"] == "credited"
        assert _credits(http, "race-2") == [("cust-002", 40)]
        resend = http.post("/v1/orders", json=_order("race-2", "cust-002", "4.00"))
        assert resend.status_code == 200 and resend.json()["points"] == 40

        # One idempotency key on twenty order ids: one is accepted, the others 409 at once.
        keyed = _race(http, [_order(f"race-k{n}", CUSTOMERS[n % 5], idempotencyKey="till-9") for n in range(N)])
        assert sorted(a.status_code for a in keyed) == [202] + [409] * (N - 1)
