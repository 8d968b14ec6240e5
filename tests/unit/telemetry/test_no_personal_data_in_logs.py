"""A full scenario's log output: every line is JSON with the required keys, and none
holds a personal value the scenario used.

The scenario runs the real platform in process (SQLite store, local queue and
keyring, the ASGI app over HTTP, the consumer, the projector, the webhook worker
against loopback receivers), at DEBUG, with the JSON handler on the root logger,
so library lines (httpx, the ASGI server stack) are held to it too: a customer
registered with name, email, phone, birth date and address; orders; a refund; a
redemption; a webhook endpoint that answers and one that fails; an order whose
claim does not match (an error line); the customer's erasure.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from shared.bus.port import BusMessage
from shared.clock import iso
from shared.store.layout import customer_pk
from shared.telemetry.logs import REQUIRED_KEYS, handler
from shared.webhooks.ssrf import TestAllowance
from tests.conftest import auth, drain, order_body

PERSON = {"customerId": "z1", "joinDate": "2026-03-01", "email": "Zelda.Quuxbright@Example.org",
          "name": "Zelda Quuxbright", "phone": "+33 6 98 76 54 32", "birthDate": "1987-06-05",
          "postalAddress": {"lines": ["7 Impasse Wxyzabc"], "city": "Qorvillette", "postalCode": "QZ7-9XJ",
                            "region": "Haute Zorbanie", "country": "FR"}}
# Each personal value, and the parts a log could carry on their own.
NEEDLES = ["Zelda.Quuxbright@Example.org", "Quuxbright", "Zelda", "+33 6 98 76 54 32", "98 76 54 32",
           "1987-06-05", "Impasse Wxyzabc", "Wxyzabc", "Qorvillette", "QZ7-9XJ", "Haute Zorbanie"]


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    made = handler("api", stream)
    old_level = root.level
    root.addHandler(made)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(made)
    root.setLevel(old_level)


@pytest.fixture
def receiver() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # noqa: D401 - quiet
            pass

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(500 if self.path.startswith("/failing") else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _run_scenario(platform, client, tenant, receiver: str) -> None:  # type: ignore[no-untyped-def]
    merchant, admin = auth(tenant.merchant), auth(tenant.admin)
    platform.webhooks.allowance = TestAllowance(frozenset({"127.0.0.1"}))
    platform.webhook_worker._sender.deadline = 2.0
    events = ["transaction.committed", "customer.erased"]
    assert client.post("/v1/webhooks/endpoints", json={"url": receiver + "/ok", "eventTypes": events},
                       headers=admin).status_code == 201
    assert client.post("/v1/webhooks/endpoints", json={"url": receiver + "/failing", "eventTypes": events},
                       headers=admin).status_code == 201
    registered = client.post("/v1/customers", json=PERSON, headers=admin)
    assert registered.status_code == 201, registered.text
    assert client.get("/v1/customers/z1", headers=admin).status_code == 200
    for number in (1, 2):
        sent = client.post("/v1/orders", json=order_body("z1", f"z-{number}", "40.00"), headers=merchant)
        assert sent.status_code in (200, 202), sent.text
    drain(platform)
    refund = client.post("/v1/orders/z-1/refunds", json={"refundId": "rf-1", "amount": "10.00", "currency": "EUR"},
                         headers=merchant)
    assert refund.status_code in (200, 201, 202), refund.text
    redeemed = client.post("/v1/customers/z1/redemptions",
                           json={"idempotencyKey": "rd-1", "points": 50, "mode": "direct"}, headers=merchant)
    assert redeemed.status_code in (200, 201), redeemed.text
    # A message whose order the API never accepted (no claim): refused, with an error line.
    platform.event_bus.publish([BusMessage(customer_pk("acme", "z1"), {
        "type": "order.received", "version": 1, "tenantId": "acme", "acceptedAt": iso(platform.clock.now()),
        "order": order_body("z1", "z-unclaimed", "5.00")})])
    drain(platform)
    platform.webhook_worker.drain(max_rounds=3)
    erased = client.post("/v1/customers/z1/erasure", json={"reason": "ticket 12"}, headers=admin)
    assert erased.status_code == 200, erased.text
    drain(platform)
    platform.webhook_worker.drain(max_rounds=3)


def test_every_line_of_a_full_scenario_is_json_with_the_required_keys_and_no_personal_value(
        platform, client, tenant, receiver, captured) -> None:
    _run_scenario(platform, client, tenant, receiver)
    text = captured.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]  # every line parses, or this raises
    assert len(lines) >= 10, text
    for line in lines:
        missing = [key for key in REQUIRED_KEYS if key not in line]
        assert not missing, f"line without {missing}: {line}"
        assert line["process"] == "api" and line["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    actions = {line.get("action") for line in lines}
    assert {"webhook.endpoint.created", "customer.erased"} <= actions, actions
    assert any(line.get("job") == "webhooks" and ", 1 failed" in line["message"] for line in lines), \
        "the failing endpoint's delivery left no line"
    assert any(line.get("order_id") == "z-unclaimed" and line["tenant"] == "acme" and line["level"] == "ERROR"
               and line["error"] == "claim-missing"
               for line in lines), "the unclaimed order left no line"
    lowered = text.lower()
    found = [needle for needle in NEEDLES if needle.lower() in lowered]
    assert not found, f"personal values in the log: {found}"
