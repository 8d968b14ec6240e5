"""One order sent over HTTP to the live local platform is one connected trace
across its three processes: the API (request, intake, publish), the ingest worker
(the batch, the order's ledger append) and the project worker (its projection).
The processes append their spans to one JSON-lines file (``ACCRUE_TRACE_FILE``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import LocalPlatform

pytestmark = pytest.mark.slow


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_one_order_over_http_is_one_trace_across_the_three_processes(tmp_path: Path) -> None:
    trace_file = tmp_path / "traces.jsonl"
    platform = LocalPlatform(tmp_path / "data", env={"ACCRUE_TRACE_FILE": str(trace_file)}).start()
    try:
        merchant = {"Authorization": f"Bearer {platform.keys['merchant']}"}
        order = {"customerId": "cust-001", "orderId": "traced-1", "amount": "10.00", "currency": "EUR",
                 "timestamp": "2026-11-20T09:30:00+01:00", "channel": "store",
                 "items": [{"sku": "LATTE-M", "category": "coffee", "quantity": 1, "unitPrice": "10.00"}]}
        with httpx.Client(base_url=platform.url, headers=merchant, timeout=15) as http:
            sent = http.post("/v1/orders", json=order)
            assert sent.status_code == 202, sent.text
        deadline = time.monotonic() + 20
        while True:
            spans = read_spans(trace_file)
            [request] = [s for s in spans if s["name"] == "POST /v1/orders"] or [None]
            ours = [s for s in spans if request is not None and s["traceId"] == request["traceId"]]
            if {"projection", "ledger append"} <= {s["name"] for s in ours}:
                break
            assert time.monotonic() < deadline, f"the trace did not complete: {[s['name'] for s in ours]}"
            time.sleep(0.2)
    finally:
        platform.stop()

    assert request is not None
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in ours:
        by_name.setdefault(span["name"], []).append(span)
    [intake], [publish], [append], [projection] = (by_name[n] for n in ("intake", "publish", "ledger append",
                                                                          "projection"))
    assert request["parentSpanId"] is None and request["kind"] == "SERVER"
    assert request["attributes"]["http.route"] == "/v1/orders"
    assert request["attributes"]["http.response.status_code"] == 202
    for child, parent in ((intake, request), (publish, intake), (append, publish), (projection, append)):
        assert child["parentSpanId"] == parent["spanId"], (child["name"], parent["name"])
    assert publish["kind"] == "PRODUCER"
    assert append["attributes"]["accrue.order_id"] == "traced-1"
    assert append["attributes"]["accrue.outcome"] == "credited"
    # Three processes, one trace.
    assert (request["process"], publish["process"], append["process"], projection["process"]) == \
        ("api", "api", "ingest", "project")
    assert len({request["pid"], append["pid"], projection["pid"]}) == 3
    # The consumer's batch span (its own trace) links to the producer span.
    batches = [s for s in read_spans(trace_file) if s["name"] == "ingest batch"
               and {"traceId": publish["traceId"], "spanId": publish["spanId"]} in s["links"]]
    assert len(batches) == 1 and batches[0]["kind"] == "CONSUMER" and batches[0]["process"] == "ingest"
    assert append["attributes"].get("accrue.tenant") == request["attributes"]["accrue.tenant"]
