"""``accrue status``: the bus backlog and the ingest lag (oldest queued order), the
projection lag (oldest unprojected change), the poison count, the last run of
every timer job (recorded by ``run_job`` whichever process ran it) and the
failing webhook endpoints, read from the platform's durable state."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from shared.app.messages import order_message
from shared.bus.port import BusMessage
from shared.domain.orders import Order
from shared.jobs import JOBS, Job, progress_of, run_job
from shared.local.__main__ import main
from shared.local.workers import FeedPoller
from shared.platform import build_platform
from shared.settings import Settings
from shared.store.layout import WEBHOOK_ENDPOINTS
from shared.telemetry import names
from shared.telemetry.status import collect
from shared.webhooks.ssrf import TestAllowance
from tests.conftest import add_customer, claimed, make_tenant


def test_status_reads_backlog_lags_poison_jobs_and_failing_endpoints(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ACCRUE_DATA_DIR", str(tmp_path / "data"))
    platform = build_platform(Settings.from_env())
    try:
        make_tenant(platform, "acme")
        add_customer(platform, "acme", "c1")
        platform.bus.publish([BusMessage("a", {"x": 1}), BusMessage("b", {"x": 2})])
        platform.poison.put("ingest", {"bad": True}, "malformed")
        platform.webhooks.allowance = TestAllowance(frozenset({"127.0.0.1"}))
        endpoint, _ = platform.webhooks.register("acme", "http://127.0.0.1:9/in", ["transaction.committed"])
        doc = platform.store.read(WEBHOOK_ENDPOINTS, "acme", endpoint["id"])
        platform.store.upsert(WEBHOOK_ENDPOINTS, dict(doc, failingSince="2026-11-01T10:00:00+00:00"))
        # A ledger change the projector has not applied yet (the checkpoint is behind it).
        order = Order(customerId="c1", orderId="o1", amount=Decimal("4.00"), currency="EUR",
                      timestamp=datetime(2026, 11, 1, tzinfo=timezone.utc))
        platform.ingest.handle([claimed(platform, order_message("acme", order, platform.clock.now()).to_body())])
        reconcile = next(job for job in JOBS if job.name == "reconcile")
        run_job(reconcile, platform)
        with pytest.raises(RuntimeError):
            run_job(Job("exports", "0 0 3 * * *", 1.0, lambda p: (_ for _ in ()).throw(RuntimeError("boom"))),
                    platform)
    finally:
        platform.close()
    time.sleep(0.05)

    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["bus"] == {"kind": "local", "backlog": 2}
    assert 0 <= status["ingestLagSeconds"] < 60
    assert status["projectionLagSeconds"] is not None and status["projectionLagSeconds"] >= 0
    assert status["poison"] == {"store": 1, "queue": 0, "total": 1}
    jobs = {job["name"]: job["lastRun"] for job in status["jobs"]}
    assert set(jobs) == {job.name for job in JOBS}
    assert jobs["reconcile"]["outcome"] == "ok" and jobs["reconcile"]["error"] is None
    assert jobs["exports"]["outcome"] == "failed" and jobs["exports"]["error"] == "RuntimeError"
    assert jobs["tiers"] is None
    assert status["webhooks"]["failing"] == [{"tenantId": "acme", "endpointId": endpoint["id"],
                                              "failingSince": "2026-11-01T10:00:00+00:00"}]
    assert status["webhooks"]["disabled"] == []

    assert main(["status"]) == 0
    text = capsys.readouterr().out
    assert "backlog 2" in text and "poison: 1" in text and "1 failing, 0 disabled" in text
    assert "reconcile      ok" in text and "tiers          never run" in text

    # Once projected, the projection lag is zero.
    platform = build_platform(Settings.from_env())
    try:
        poller = FeedPoller(platform)
        while poller.step():
            pass
        poller._save(time.monotonic(), caught_up=True)
        assert collect(platform)["projectionLagSeconds"] == 0.0
    finally:
        platform.close()


def test_job_progress_is_what_the_job_reported(platform, meter) -> None:
    assert progress_of({"scanned": 4, "released": 1, "complete": True, "tenants": ["a", "b"]}) == \
        {"scanned": 4, "released": 1, "tenants": 2}
    job = Job("reservations", "0 * * * * *", 60.0, lambda p: {"scanned": 4, "released": 1})
    run_job(job, platform)
    run_job(job, platform)
    assert meter.value(names.JOB_PROGRESS, job="reservations", item="scanned") == 8
    assert meter.value(names.JOB_PROGRESS, job="reservations", item="released") == 2
    assert meter.value(names.JOB_RUNS, job="reservations", outcome="ok") == 2
