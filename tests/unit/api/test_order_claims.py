"""Order claims over HTTP (review issue 12): of any number of concurrent sends of one
order id exactly one wins, and every loser gets the very answer a sequential send
gets: the winner's outcome for the same order, the same 422/409 problem otherwise.

Concurrency is real: 24 threads through the ASGI app at once (the single-order
route is async: its awaits on the group commit interleave the sends on the event
loop; the batch route runs in the thread pool)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from shared.local.workers import QueueConsumer
from shared.platform import Platform
from shared.store.layout import ORDER_STATUS, order_pk
from tests.conftest import add_customer, auth, drain, order_body, run_in_threads

N = 24


@pytest.fixture
def customers(platform: Platform, tenant) -> list[str]:
    ids = [f"c{n}" for n in range(1, N + 1)]
    for customer_id in ids[3:]:  # c1..c3 come with the tenant
        add_customer(platform, "acme", customer_id)
    return ids


def send_all(client, key: str, bodies: list[dict], path: str = "/v1/orders") -> list[httpx.Response]:
    """Every body at once, one thread each; the answers in the order of the bodies."""
    answers: list[Any] = [None] * len(bodies)

    def send(index: int) -> None:
        answers[index] = client.post(path, json=bodies[index], headers=auth(key))

    run_in_threads(send, [(i,) for i in range(len(bodies))], timeout=60)
    assert all(a is not None for a in answers), "a send did not finish"
    return answers


def credited_orders(platform: Platform, customers: list[str]) -> dict[str, list[str]]:
    """Customer -> order ids of their EARN entries (what the ledger really credited)."""
    found: dict[str, list[str]] = {}
    for customer in customers:
        orders = [e["referenceOrderId"] for e in platform.ledger.entries("acme", customer, limit=500)]
        if orders:
            found[customer] = orders
    return found


def test_one_order_id_from_many_customers_at_once_is_credited_to_one(client, platform, tenant, customers) -> None:
    bodies = [order_body(customer_id=c, order_id="dup") for c in customers]
    answers = send_all(client, tenant.merchant, bodies)
    won = [i for i, a in enumerate(answers) if a.status_code == 202]
    assert len(won) == 1, [a.status_code for a in answers]
    winner = customers[won[0]]
    assert answers[won[0]].json()["customerId"] == winner and answers[won[0]].json()["status"] == "queued"
    for index, answer in enumerate(answers):
        if index == won[0]:
            continue
        # The loser's answer is the sequential one, byte for byte.
        sequential = client.post("/v1/orders", json=bodies[index], headers=auth(tenant.merchant))
        assert answer.status_code == sequential.status_code == 422, answer.text
        assert answer.json() == sequential.json()
        assert answer.json()["errors"][0]["field"] == "orderId" and "another customer" in answer.text
    assert platform.bus.depth() == 1
    drain(platform)
    assert credited_orders(platform, customers) == {winner: ["dup"]}


def test_one_order_id_with_different_bodies_at_once_credits_the_winners_body_only(
        client, platform, tenant, running) -> None:
    amounts = [f"{n}.00" for n in range(1, N + 1)]
    bodies = [order_body(order_id="same-id", amount=a) for a in amounts]
    answers = [None] * N

    def send(index: int) -> None:
        answers[index] = client.post("/v1/orders?wait=5", json=bodies[index], headers=auth(tenant.merchant))

    run_in_threads(send, [(i,) for i in range(N)], timeout=60)
    won = [i for i, a in enumerate(answers) if a.status_code in (200, 202)]
    assert len(won) == 1, [a.status_code for a in answers]
    expected_points = int(float(amounts[won[0]]) * 10)
    assert answers[won[0]].status_code == 200 and answers[won[0]].json()["points"] == expected_points
    for index, answer in enumerate(answers):
        if index != won[0]:
            # Never "200 credited" with points from a body this caller did not send.
            assert answer.status_code == 422 and "different content" in answer.text, answer.text
            sequential = client.post("/v1/orders?wait=5", json=bodies[index], headers=auth(tenant.merchant))
            assert sequential.status_code == 422 and sequential.json() == answer.json()
    assert platform.ledger.head("acme", "c1").balance == expected_points


def test_one_order_sent_many_times_at_once_is_queued_once_and_every_send_gets_the_same_answer(
        client, platform, tenant) -> None:
    body = order_body(order_id="twin", amount="7.00")
    answers = send_all(client, tenant.merchant, [body] * N)
    assert {a.status_code for a in answers} == {202}
    assert all(a.json() == answers[0].json() for a in answers), {str(a.json()) for a in answers}
    sequential = client.post("/v1/orders", json=body, headers=auth(tenant.merchant))
    assert sequential.status_code == 202 and sequential.json() == answers[0].json()
    assert platform.bus.depth() == 1
    drain(platform)
    assert credited_orders(platform, ["c1"]) == {"c1": ["twin"]}
    again = client.post("/v1/orders", json=body, headers=auth(tenant.merchant))
    assert again.status_code == 200 and again.json()["status"] == "credited" and again.json()["points"] == 70


def test_one_idempotency_key_on_many_order_ids_at_once_is_a_409_for_all_but_one(
        client, platform, tenant, customers) -> None:
    bodies = [order_body(customer_id=customers[n % 3], order_id=f"k{n}", idempotencyKey="shared-key")
              for n in range(N)]
    answers = send_all(client, tenant.merchant, bodies)
    won = [i for i, a in enumerate(answers) if a.status_code == 202]
    assert len(won) == 1, [a.status_code for a in answers]
    for index, answer in enumerate(answers):
        if index != won[0]:
            assert answer.status_code == 409, answer.text
            assert answer.json()["type"].endswith("/conflict") and f"order 'k{won[0]}'" in answer.text
            sequential = client.post("/v1/orders", json=bodies[index], headers=auth(tenant.merchant))
            assert sequential.status_code == 409 and sequential.json() == answer.json()
            # The refused order id stays free: nothing of it was written.
            assert platform.store.read(ORDER_STATUS, order_pk("acme", f"k{index}"), f"k{index}") is None
    drain(platform)
    assert sum(len(o) for o in credited_orders(platform, customers).values()) == 1


def test_a_reused_idempotency_key_is_refused_synchronously_not_queued(client, platform, tenant) -> None:
    first = client.post("/v1/orders", json=order_body(order_id="a1", idempotencyKey="pos-77"),
                        headers=auth(tenant.merchant))
    assert first.status_code == 202
    reused = client.post("/v1/orders", json=order_body(order_id="a2", idempotencyKey="pos-77"),
                         headers=auth(tenant.merchant))
    assert reused.status_code == 409 and "pos-77" in reused.text and "'a1'" in reused.text
    # Order ids and keys are one namespace per tenant (the ledger's markers are keyed by them).
    as_id = client.post("/v1/orders", json=order_body(order_id="pos-77"), headers=auth(tenant.merchant))
    assert as_id.status_code == 409 and "idempotency key of order 'a1'" in as_id.text
    as_key = client.post("/v1/orders", json=order_body(order_id="a3", idempotencyKey="a1"),
                         headers=auth(tenant.merchant))
    assert as_key.status_code == 409
    assert platform.bus.depth() == 1
    drain(platform)
    assert platform.poison.list("acme") == [] and platform.intake.status("acme", "a1")["status"] == "credited"


def test_a_key_that_cannot_be_an_order_id_is_claimed_under_a_hashed_slot(client, platform, tenant) -> None:
    key = "till/4#2026?x"
    assert client.post("/v1/orders", json=order_body(order_id="h1", idempotencyKey=key),
                       headers=auth(tenant.merchant)).status_code == 202
    again = client.post("/v1/orders", json=order_body(order_id="h2", idempotencyKey=key), headers=auth(tenant.merchant))
    assert again.status_code == 409
    resend = client.post("/v1/orders", json=order_body(order_id="h1", idempotencyKey=key),
                         headers=auth(tenant.merchant))
    assert resend.status_code == 202 and resend.json()["orderId"] == "h1"


@pytest.mark.parametrize("second, fields", [
    ({"order_id": "x1"}, ["orders[1].orderId", "orders[3].orderId"]),
    ({"order_id": "x9", "idempotencyKey": "x1"}, ["orders[1].orderId", "orders[3].idempotencyKey"]),
])
def test_one_id_twice_in_a_batch_is_a_422_naming_both_indexes(client, platform, tenant, second, fields) -> None:
    orders = [order_body(order_id="x0"), order_body(order_id="x1", amount="1.00"), order_body(order_id="x2"),
              order_body(amount="2.00", **{k: v for k, v in second.items() if k != "order_id"},
                         order_id=second["order_id"])]
    response = client.post("/v1/orders/batch", json={"orders": orders}, headers=auth(tenant.merchant))
    assert response.status_code == 422, response.text
    assert sorted(e["field"] for e in response.json()["errors"]) == fields
    assert platform.bus.depth() == 0
    assert all(platform.store.read(ORDER_STATUS, order_pk("acme", f"x{n}"), f"x{n}") is None for n in range(3))


def test_batches_racing_on_one_order_id_are_all_or_nothing(client, platform, tenant, customers) -> None:
    bodies = [{"orders": [order_body(customer_id=customers[n], order_id=f"own-{n}", amount="1.00"),
                          order_body(customer_id=customers[n], order_id="contested", amount="3.00")]}
              for n in range(N)]
    answers = send_all(client, tenant.merchant, bodies, path="/v1/orders/batch")
    won = [i for i, a in enumerate(answers) if a.status_code == 202]
    assert len(won) == 1, [a.status_code for a in answers]
    for index, answer in enumerate(answers):
        if index != won[0]:
            assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "orders[1].orderId"
    drain(platform)
    winner = customers[won[0]]
    assert {c: sorted(o) for c, o in credited_orders(platform, customers).items()} == {
        winner: sorted([f"own-{won[0]}", "contested"])}
    for index in range(N):  # a refused batch queued none of its orders
        status = platform.store.read(ORDER_STATUS, order_pk("acme", f"own-{index}"), f"own-{index}")
        assert (status is not None) == (index == won[0])


def test_a_resend_of_a_decided_order_answers_its_outcome_even_before_the_projector_ran(
        client, platform, tenant) -> None:
    assert client.post("/v1/orders", json=order_body(order_id="d1"), headers=auth(tenant.merchant)).status_code == 202
    QueueConsumer(platform, platform.bus).step()  # ingested and credited; the projector has not run
    assert platform.store.read(ORDER_STATUS, order_pk("acme", "d1"), "d1")["status"] == "queued"
    depth = platform.bus.depth()
    resend = client.post("/v1/orders", json=order_body(order_id="d1"), headers=auth(tenant.merchant))
    assert resend.status_code == 200, resend.text
    assert resend.json()["status"] == "credited" and resend.json()["points"] == 100
    assert resend.json()["transactionId"] == platform.ledger.record("acme", "c1", "order-d1")["transactionId"]
    assert platform.bus.depth() == depth  # not queued again


def test_an_idempotency_keys_claim_is_not_an_order(client, platform, tenant) -> None:
    assert client.post("/v1/orders", json=order_body(order_id="real", idempotencyKey="pos-1"),
                       headers=auth(tenant.merchant)).status_code == 202
    drain(platform)
    assert client.get("/v1/orders/pos-1", headers=auth(tenant.merchant)).status_code == 404
    refund = client.post("/v1/orders/pos-1/refunds", json={"refundId": "r1", "amount": "1", "currency": "EUR"},
                         headers=auth(tenant.merchant))
    assert refund.status_code == 404 and refund.json()["type"].endswith("not-found")


def test_an_order_the_ledger_refuses_keeps_its_claim_so_a_changed_resend_is_still_refused(
        client, platform, tenant) -> None:
    # Another kind of transaction took the key first in the customer's ledger partition
    # (only order keys are claimed per tenant): the ledger refuses the order at ingestion.
    from shared.ledger.service import Plan, TransactionRequest

    platform.ledger.append_one(TransactionRequest("acme", "c1", "shared-7", "another-request",
                                                  lambda head: Plan(entries=[], outcome={"status": "done"})))
    assert client.post("/v1/orders", json=order_body(order_id="ref-1", idempotencyKey="shared-7"),
                       headers=auth(tenant.merchant)).status_code == 202
    drain(platform)
    assert platform.intake.status("acme", "ref-1")["status"] == "rejected"
    changed = client.post("/v1/orders", json=order_body(order_id="ref-1", idempotencyKey="shared-7", amount="5.00"),
                          headers=auth(tenant.merchant))
    assert changed.status_code == 422 and "different content" in changed.text
    same = client.post("/v1/orders", json=order_body(order_id="ref-1", idempotencyKey="shared-7"),
                       headers=auth(tenant.merchant))
    assert same.status_code == 200 and same.json()["status"] == "rejected"
