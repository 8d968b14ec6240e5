"""End to end over real HTTP: the sandbox walkthrough, restart, and the kill test."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import LocalPlatform

pytestmark = pytest.mark.slow


def _order(order_id: str, customer: str, amount: str = "10.00") -> dict:
    return {"customerId": customer, "orderId": order_id, "amount": amount, "currency": "EUR",
            "timestamp": "2026-11-20T09:30:00+01:00", "channel": "store",
            "items": [{"sku": "LATTE-M", "category": "coffee", "quantity": 1, "unitPrice": amount}]}


def _send_until_credited(http: httpx.Client, order: dict) -> dict:
    """The order's outcome once the ingest worker has it: ``?wait=`` answers 202 while it is
    queued (a worker still starting on a loaded machine), then its status is read with
    ``?wait=`` until it is decided, for at most a minute."""
    sent = http.post("/v1/orders?wait=10", json=order)
    assert sent.status_code in (200, 202), sent.text
    view = sent.json()
    deadline = time.monotonic() + 60
    while view["status"] == "queued" and time.monotonic() < deadline:
        view = http.get(f"/v1/orders/{order['orderId']}?wait=10").json()
    return view


def test_sandbox_walkthrough_and_restart_keeps_data(local_platform: LocalPlatform, tmp_path: Path) -> None:
    assert set(local_platform.keys) == {"merchant", "tenant-admin", "platform-admin"}
    merchant = {"Authorization": f"Bearer {local_platform.keys['merchant']}"}
    with httpx.Client(base_url=local_platform.url, headers=merchant, timeout=15) as http:
        first = _send_until_credited(http, _order("walk-1", "cust-001", "12.50"))
        assert first["status"] == "credited" and first["points"] == 125
        # A rule change made through the API (this process) applies to the very next order,
        # which the ingest worker process earns: the change is announced to it. (The sandbox
        # earns under its active sample rule set, so the change is a new version of it.)
        admin = {"Authorization": f"Bearer {local_platform.keys['tenant-admin']}"}
        reason = {"code": "campaign", "text": "double points"}
        saved = http.post("/v1/rules/versions", headers=admin, json={
            "ruleSetId": "sandbox", "source": 'rule "base" then earn floor(order.total * 20) points',
            "reason": reason})
        assert saved.status_code == 201, saved.text
        activated = http.post("/v1/rules/activate", headers=admin, json={
            "target": {"ruleSetId": "sandbox", "version": saved.json()["version"]}, "reason": reason})
        assert activated.status_code == 200, activated.text
        second = _send_until_credited(http, _order("walk-2", "cust-001", "12.50"))
        assert second["status"] == "credited" and second["points"] == 250
        history = http.get("/v1/customers/cust-001/ledger").json()["items"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            balance = http.get("/v1/customers/cust-001/balance").json()
            if balance["available"] == sum(e["signedAmount"] for e in history):
                break  # the read model caught up with the ledger
            time.sleep(0.05)
        assert balance["available"] == sum(e["signedAmount"] for e in history)
        assert balance["dataAsOf"] >= history[0]["createdAt"]
        assert "walk-1" in [e["referenceOrderId"] for e in history]
    local_platform.stop()
    again = LocalPlatform(local_platform.data_dir).start()
    try:
        assert again.keys == {}, "the sandbox keys are printed once, at first start only"
        with httpx.Client(base_url=again.url, headers=merchant, timeout=15) as http:
            assert http.get("/v1/orders/walk-1").json()["status"] == "credited"
            assert http.get("/v1/customers/cust-001/balance").json()["available"] == balance["available"]
    finally:
        again.stop()


def test_kill_minus_nine_loses_no_accepted_order_and_credits_none_twice(tmp_path: Path) -> None:
    first = LocalPlatform(tmp_path / "data").start()
    merchant = {"Authorization": f"Bearer {first.keys['merchant']}"}
    customers = [f"cust-{n:03d}" for n in range(1, 6)]
    acknowledged: set[str] = set()
    stop = threading.Event()

    def send(worker: int) -> None:
        with httpx.Client(base_url=first.url, headers=merchant, timeout=5) as http:
            number = 0
            while not stop.is_set():
                number += 1
                batch = [_order(f"k{worker}-{number}-{i}", customers[(number + i) % 5], "3.00") for i in range(5)]
                try:
                    response = http.post("/v1/orders/batch", json={"orders": batch})
                except httpx.HTTPError:
                    return  # the server died under us: these were never acknowledged
                if response.status_code in (200, 202):
                    acknowledged.update(o["orderId"] for o in batch)

    senders = [threading.Thread(target=send, args=(w,)) for w in range(3)]
    for sender in senders:
        sender.start()
    deadline = time.monotonic() + 20
    while len(acknowledged) < 300 and time.monotonic() < deadline:
        time.sleep(0.02)
    first.kill()
    stop.set()
    for sender in senders:
        sender.join()
    assert len(acknowledged) >= 100, "too few orders were sent before the kill to prove anything"

    second = LocalPlatform(tmp_path / "data").start()
    try:
        with httpx.Client(base_url=second.url, headers=merchant, timeout=15) as http:
            deadline = time.monotonic() + 90
            pending = set(acknowledged)
            while pending and time.monotonic() < deadline:
                for order_id in list(pending)[:200]:
                    if http.get(f"/v1/orders/{order_id}").json().get("status") == "credited":
                        pending.discard(order_id)
                time.sleep(0.05)
            assert not pending, f"{len(pending)} acknowledged orders were lost, e.g. {sorted(pending)[:5]}"
            credited: dict[str, int] = {}
            for customer in customers:
                link, total = f"/v1/customers/{customer}/ledger?limit=200", 0
                while True:
                    page = http.get(link).json()
                    for entry in page["items"]:
                        total += entry["signedAmount"]
                        if entry["entryType"] == "EARN":
                            credited[entry["referenceOrderId"]] = credited.get(entry["referenceOrderId"], 0) + 1
                    link = page["next"]  # the next page's link, followed as given
                    if not link:
                        break
                deadline = time.monotonic() + 10
                while http.get(f"/v1/customers/{customer}/balance").json()["available"] != total:
                    assert time.monotonic() < deadline, "the balance read model never caught up with the ledger"
                    time.sleep(0.05)
            twice = {order for order, count in credited.items() if count > 1}
            assert not twice, f"orders credited twice: {sorted(twice)[:5]}"
            assert acknowledged <= set(credited)
    finally:
        second.stop()
