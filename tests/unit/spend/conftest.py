"""Fixtures of the spending tests: a fake partner (a real HTTP server on
127.0.0.1 that can be made slow, flaky, refusing or down), and helpers to fund a
customer and register the partner."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from shared.app.corrections import AdjustmentRequest
from shared.platform import Platform
from shared.spend.partners import PartnerConfig
from shared.webhooks.ssrf import TestAllowance


@dataclass
class FakePartner:
    """Behaviour is switched by the test: ``mode`` in ok | slow | flaky | reject | down."""

    url: str = ""
    mode: str = "ok"
    delay: float = 0.0
    fail_first: int = 0  # flaky: this many calls fail with 503 before the partner recovers
    calls: list[dict] = field(default_factory=list)
    hosts: list[str | None] = field(default_factory=list)  # the Host header of each call
    fulfilled: dict[str, str] = field(default_factory=dict)  # reference -> partnerReference (de-duplicated)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, body: dict, key: str | None) -> tuple[int, dict]:
        with self.lock:
            self.calls.append({"body": body, "idempotencyKey": key})
            count = len(self.calls)
        if self.mode == "slow":
            time.sleep(self.delay)
        if self.mode == "down":
            return 500, {"error": "down"}
        if self.mode == "flaky" and count <= self.fail_first:
            return 503, {"error": "busy"}
        if self.mode == "reject":
            return 422, {"error": "unknown account"}
        with self.lock:
            reference = self.fulfilled.setdefault(body["reference"], f"P-{len(self.fulfilled) + 1}")
        return 201, {"partnerReference": reference}


def _handler(partner: FakePartner) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            partner.hosts.append(self.headers.get("Host"))
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            status, answer = partner.answer(body, self.headers.get("Idempotency-Key"))
            data = json.dumps(answer).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and hung up: that is the point of "slow"

        def log_message(self, *args) -> None:
            pass

    return Handler


@pytest.fixture
def partner(platform: Platform) -> Iterator[FakePartner]:
    # The fake partner listens on loopback, which the address guard refuses: the test-only
    # allowance (the webhook tests' TestAllowance) lets this platform reach 127.0.0.1 over http.
    platform.spend.partners.allowance = TestAllowance(frozenset({"127.0.0.1"}))
    fake = FakePartner()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


def register_partner(platform: Platform, partner_id: str, url: str, **config) -> None:
    settings = {"baseUrl": url, "timeoutSeconds": 0.5, "maxAttempts": 3, "failureThreshold": 3,
                "cooldownSeconds": 30, **config}
    platform.spend.partners.save(partner_id, PartnerConfig.model_validate(settings), "test")


def fund(platform: Platform, tenant_id: str, customer_id: str, points: int, key: str | None = None) -> None:
    platform.corrections.adjust(tenant_id, customer_id, AdjustmentRequest(
        points=points, reasonCode="goodwill", reason="test funds",
        idempotencyKey=key or f"fund-{customer_id}-{points}-{time.monotonic_ns()}"), "test")


def ledger_invariants(platform: Platform, tenant_id: str, customer_id: str) -> list[dict]:
    """Every running total recomputed from the entries; returns the entries (oldest first)."""
    entries = platform.ledger.entries(tenant_id, customer_id, newest_first=False, limit=10_000)
    balance = reserved = 0
    for number, entry in enumerate(entries, start=1):
        assert entry["seq"] == number
        if entry["status"] == "COMMITTED" or entry["signedAmount"] < 0:
            balance += entry["signedAmount"]
        if entry["status"] == "PENDING" and entry["signedAmount"] < 0:
            reserved -= entry["signedAmount"]
        if entry.get("settlesEntryId") and entry["entryType"] in ("REDEEM", "CONVERT", "RELEASE"):
            settled = entries[int(entry["settlesEntryId"][2:]) - 1]
            reserved += settled["signedAmount"]
        assert entry["runningBalance"] == balance >= 0, entry
        assert entry["runningReserved"] == reserved >= 0, entry
    return entries
