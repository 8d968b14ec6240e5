"""The live local platform's /metrics covers its three processes: orders accepted
by the API process, credited by the ingest process and projected by the project
process appear in one exposition, with the values of what was sent; and
``accrue status`` reads the same platform from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import ROOT, LocalPlatform

pytestmark = pytest.mark.slow


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_one_exposition_for_three_processes(local_platform: LocalPlatform) -> None:
    merchant = {"Authorization": f"Bearer {local_platform.keys['merchant']}"}
    with httpx.Client(base_url=local_platform.url, headers=merchant, timeout=15) as http:
        for number in range(3):
            sent = http.post("/v1/orders", json={
                "customerId": "cust-001", "orderId": f"m-{number}", "amount": "10.00", "currency": "EUR",
                "timestamp": "2026-11-20T09:30:00+01:00", "channel": "store",
                "items": [{"sku": "LATTE-M", "category": "coffee", "quantity": 1, "unitPrice": "10.00"}]})
            assert sent.status_code == 202, sent.text
        expected = 10 + 3  # the sandbox's ten sample orders, and ours
        deadline, samples = time.monotonic() + 60, {}  # a busy machine: the sandbox's start is slow
        while time.monotonic() < deadline:
            answer = http.get("/metrics")  # loopback: no key needed
            assert answer.status_code == 200, answer.text
            samples = _samples(answer.text)
            # Each worker process writes its snapshot every second: wait for all three.
            if all(samples.get((name, ())) == expected for name in (
                    "accrue_orders_accepted_total", "accrue_orders_credited_total", "accrue_projection_lag_count")):
                break
            time.sleep(0.2)
    assert samples[("accrue_orders_accepted_total", ())] == expected  # the API process
    assert samples[("accrue_orders_credited_total", ())] == expected  # the ingest process
    assert samples[("accrue_ingest_lag_count", ())] == expected
    assert samples[("accrue_projection_lag_count", ())] == expected  # the project process
    assert 1 <= samples[("accrue_rules_evaluation_duration_count", (("evaluator", "closure"),))] <= expected
    assert samples[("accrue_bus_backlog", (("process", "api"),))] == 0
    assert samples[("accrue_poison_pending", (("process", "api"),))] == 0
    snapshots = sorted(p.name for p in (local_platform.data_dir / "metrics").glob("*.json"))
    assert snapshots == ["api.json", "ingest.json", "project.json"]

    env = {**os.environ, "ACCRUE_DATA_DIR": str(local_platform.data_dir)}
    status = subprocess.run([sys.executable, "-m", "shared.local", "status", "--json"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    reading = json.loads(status.stdout)
    assert reading["bus"] == {"kind": "local", "backlog": 0} and reading["poison"]["total"] == 0
    assert reading["webhooks"] == {"failing": [], "disabled": []}
