"""The local platform as a user runs it (the API process and its ingest and project
worker processes), at DEBUG: every line the three processes log is JSON with the
required keys, named by its process, and none holds a personal value of the
scenario (registration with personal data, orders, a refund, a redemption, an
erasure). Only loopback: webhooks are covered in process (tests/unit/telemetry)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from shared.telemetry.logs import REQUIRED_KEYS
from tests.e2e.conftest import LocalPlatform
from tests.unit.telemetry.test_no_personal_data_in_logs import NEEDLES, PERSON

pytestmark = pytest.mark.slow


def test_the_three_processes_log_json_lines_without_personal_data(tmp_path: Path) -> None:
    platform = LocalPlatform(tmp_path / "data", env={"ACCRUE_LOG_LEVEL": "DEBUG"},
                             log_path=tmp_path / "platform.log").start()
    try:
        merchant = {"Authorization": f"Bearer {platform.keys['merchant']}"}
        admin = {"Authorization": f"Bearer {platform.keys['tenant-admin']}"}
        with httpx.Client(base_url=platform.url, timeout=15) as http:
            assert http.post("/v1/customers", json=PERSON, headers=admin).status_code == 201
            for number in (1, 2):
                order = {"customerId": "z1", "orderId": f"z-{number}", "amount": "40.00", "currency": "EUR",
                         "timestamp": "2026-11-20T09:30:00+01:00", "channel": "store",
                         "items": [{"sku": "LATTE-M", "category": "coffee", "quantity": 1, "unitPrice": "40.00"}]}
                assert http.post("/v1/orders?wait=5", json=order, headers=merchant).status_code in (200, 202)
            assert http.post("/v1/orders/z-1/refunds", json={"refundId": "rf-1", "amount": "10.00",
                                                            "currency": "EUR"}, headers=merchant).status_code < 300
            assert http.post("/v1/customers/z1/redemptions", json={"idempotencyKey": "rd-1", "points": 50,
                                                                   "mode": "direct"},
                             headers=merchant).status_code < 300
            assert http.get("/v1/customers/z1", headers=admin).status_code == 200
            assert http.post("/v1/customers/z1/erasure", json={"reason": "ticket 12"},
                             headers=admin).status_code == 200
            assert http.get("/v1/customers/nobody", headers=admin).status_code == 404
        deadline = time.monotonic() + 30  # each worker process logs its start
        while time.monotonic() < deadline and not all(
                f'"process": "{role}"' in platform.log_path.read_text() for role in ("ingest", "project")):
            time.sleep(0.1)
    finally:
        platform.stop()
    text = platform.log_path.read_text()
    lines = []
    for raw in text.splitlines():
        try:
            lines.append(json.loads(raw))
        except json.JSONDecodeError:
            raise AssertionError(f"a log line that is not JSON: {raw!r}") from None
    for line in lines:
        missing = [key for key in REQUIRED_KEYS if key not in line]
        assert not missing, f"line without {missing}: {line}"
    processes = {line["process"] for line in lines}
    assert processes == {"api", "ingest", "project"}, processes
    assert any(line.get("action") == "customer.erased" and line["tenant"] == "sandbox" for line in lines)
    found = [needle for needle in NEEDLES if needle.lower() in text.lower()]
    assert not found, f"personal values in the log: {found}"
