"""kill -9 with transfers in flight (shared/transfers/saga.py), over real HTTP.

Three clients send transfers in a ring of five sandbox customers; the platform is
killed mid-flight. After a restart every transfer request is sent again with its
key (as a client retries an unanswered request): each transfer stopped between
its steps is driven to its end, none moves twice, the points of the ring add up
to what they were, no balance is negative, and the ledger's hash chains and
running totals verify."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import LocalPlatform

pytestmark = pytest.mark.slow

RING = [f"cust-{n:03d}" for n in range(1, 6)]


def _order(order_id: str, customer: str, amount: str) -> dict:
    return {"customerId": customer, "orderId": order_id, "amount": amount, "currency": "EUR",
            "timestamp": "2026-11-20T09:30:00+01:00", "channel": "store",
            "items": [{"sku": "LATTE-M", "category": "coffee", "quantity": 1, "unitPrice": amount}]}


def _ledger_balance(http: httpx.Client, customer: str) -> int:
    return http.get(f"/v1/customers/{customer}/balance", params={"asOf": "2100-01-01T00:00:00Z"}).json()["available"]


def _transfer_entries(http: httpx.Client, customer: str) -> list[dict]:
    link, found = f"/v1/customers/{customer}/ledger?limit=200&entryType=TRANSFER_OUT&entryType=TRANSFER_IN", []
    while link:
        page = http.get(link).json()
        found += page["items"]
        link = page["next"]
    return found


def test_kill_minus_nine_with_transfers_in_flight(tmp_path: Path) -> None:
    first = LocalPlatform(tmp_path / "data").start()
    merchant = {"Authorization": f"Bearer {first.keys['merchant']}"}
    admin = {"Authorization": f"Bearer {first.keys['tenant-admin']}"}
    with httpx.Client(base_url=first.url, headers=merchant, timeout=15) as http:
        for customer in RING:
            assert http.post("/v1/orders", json=_order(f"seed-{customer}", customer, "50.00")).status_code in (200, 202)
        deadline = time.monotonic() + 60
        for customer in RING:
            while http.get(f"/v1/orders/seed-{customer}").json().get("status") != "credited":
                assert time.monotonic() < deadline, "the seed orders were not credited"
                time.sleep(0.1)
        before = {c: _ledger_balance(http, c) for c in RING}
    attempted: dict[str, dict] = {}
    acknowledged: set[str] = set()
    stop = threading.Event()
    lock = threading.Lock()

    def send(worker: int) -> None:
        with httpx.Client(base_url=first.url, headers=merchant, timeout=5) as http:
            number = 0
            while not stop.is_set():
                number += 1
                sender = RING[(worker + number) % 5]
                body = {"toCustomerId": RING[(worker + number + 1) % 5], "points": 1 + number % 9,
                        "idempotencyKey": f"w{worker}-{number}"}
                with lock:
                    attempted[body["idempotencyKey"]] = {"from": sender, "body": body}
                try:
                    response = http.post(f"/v1/customers/{sender}/transfers", json=body)
                except httpx.HTTPError:
                    return  # the server died under us
                if response.status_code == 201:
                    with lock:
                        acknowledged.add(body["idempotencyKey"])

    senders = [threading.Thread(target=send, args=(w,)) for w in range(3)]
    for sender in senders:
        sender.start()
    deadline = time.monotonic() + 20
    while len(acknowledged) < 80 and time.monotonic() < deadline:
        time.sleep(0.02)
    first.kill()
    stop.set()
    for sender in senders:
        sender.join()
    assert len(acknowledged) >= 20, "too few transfers before the kill to prove anything"

    second = LocalPlatform(tmp_path / "data").start()
    try:
        with httpx.Client(base_url=second.url, headers=merchant, timeout=15) as http:
            outcomes: dict[str, int] = {}
            for key, sent in attempted.items():
                retry = http.post(f"/v1/customers/{sent['from']}/transfers", json=sent["body"])
                outcomes[key] = retry.status_code
                assert retry.status_code in (200, 201, 422), retry.text
            # An acknowledged transfer answers its first outcome again, never a second move.
            assert all(outcomes[key] == 200 for key in acknowledged)
            after = {c: _ledger_balance(http, c) for c in RING}
            assert sum(after.values()) == sum(before.values())
            assert min(after.values()) >= 0
            outs: dict[str, int] = {}
            ins: dict[str, int] = {}
            for customer in RING:
                for entry in _transfer_entries(http, customer):
                    tid = entry["attributes"]["transferId"]
                    if entry["entryType"] == "TRANSFER_OUT":
                        assert tid not in outs, f"transfer {tid} debited twice"
                        outs[tid] = -entry["signedAmount"]
                    else:
                        ins[tid] = ins.get(tid, 0) + entry["signedAmount"]
            assert outs == ins, "a transfer debited without its credit, or credited without its debit"
            moved = sum(1 for code in outcomes.values() if code in (200, 201))
            assert len(outs) == moved
            verify = http.get("/v1/ledger/verify", headers=admin).json()
            assert verify["ok"] is True, verify
            assert http.get("/v1/reconciliation", headers=admin).json()["ok"] is True
    finally:
        second.stop()
