"""The maturation job killed with SIGKILL mid-run, then run again: every due pending
earn is matured exactly once (the idempotency key ``mature:<entryId>`` and the
``settled-<entryId>`` record, written in the same atomic batch as the entry). And
the timer path: the hourly job fans out a work item per tenant that matures them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import date, datetime, timezone
from pathlib import Path

from shared.app.customers import CustomerProfile
from shared.app.reconcile import reconcile
from shared.clock import ManualClock
from shared.domain.tenants import TenantSettings
from shared.jobs import BY_NAME, run_job
from shared.ledger.entries import EntryDraft, EntryStatus, EntryType
from shared.ledger.service import Plan, TransactionRequest
from shared.platform import build_platform
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
EARNED = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)
LATER = "2026-11-20T00:00:00+00:00"
CUSTOMERS = [f"c{n:03d}" for n in range(150)]


def _seed(data: Path) -> None:
    settings = Settings.from_env({"ACCRUE_DATA_DIR": str(data)})
    platform = build_platform(settings, clock=ManualClock(EARNED))
    try:
        platform.tenants.save(TenantSettings(tenantId="shop", name="shop", timeZone="UTC", pendingDays=2))
        requests = []
        for customer in CUSTOMERS:
            platform.customers.register("shop", CustomerProfile(customerId=customer, joinDate=date(2025, 1, 1)))
            drafts = [EntryDraft(EntryType.EARN, 10 + n, status=EntryStatus.PENDING, reference_order_id=f"o{n}",
                                 attributes={"maturesAt": "2026-11-03T12:00:00+00:00"}) for n in range(2)]
            requests.append(TransactionRequest("shop", customer, f"seed:{customer}", "seed",
                                               lambda head, d=drafts: Plan(d, {})))
        assert all(o.error is None for o in platform.ledger.append(requests))
    finally:
        platform.close()


SCRIPT = textwrap.dedent(f"""
    import sys
    from datetime import datetime
    from shared.clock import ManualClock
    from shared.platform import build_platform
    from shared.settings import Settings
    platform = build_platform(Settings.from_env({{"ACCRUE_DATA_DIR": sys.argv[1]}}),
                              clock=ManualClock(datetime.fromisoformat("{LATER}")))
    customers = sys.argv[2:]
    for index, customer in enumerate(customers):
        platform.maturation.mature_customers("shop", [customer])
        if index == 3:
            print("started", flush=True)
""")


def test_a_maturation_run_killed_mid_way_and_run_again_matures_each_earn_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _seed(data)
    env = {**os.environ, "ACCRUE_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", SCRIPT, str(data), *CUSTOMERS], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "started"
        time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    platform = build_platform(Settings.from_env({"ACCRUE_DATA_DIR": str(data)}),
                              clock=ManualClock(datetime.fromisoformat(LATER)))
    try:
        done_before = sum(1 for c in CUSTOMERS if platform.ledger.head("shop", c).pending == 0)
        assert 4 <= done_before < len(CUSTOMERS), "the kill should land mid-run"
        report = platform.maturation.mature_customers("shop", CUSTOMERS)
        assert report.matured == 2 * (len(CUSTOMERS) - done_before) and not report.failed
        again = platform.maturation.mature_customers("shop", CUSTOMERS)
        assert again.matured == 0
        for customer in CUSTOMERS:
            head = platform.ledger.head("shop", customer)
            assert (head.balance, head.pending, head.seq) == (21, 0, 4)
        assert reconcile(platform.store, "shop").ok
    finally:
        platform.close()


def test_the_hourly_job_fans_out_and_the_work_items_mature(platform, clock) -> None:
    platform.tenants.save(TenantSettings(tenantId="shop", name="shop", timeZone="UTC", pendingDays=1))
    platform.customers.register("shop", CustomerProfile(customerId="c1", joinDate=date(2025, 1, 1)))
    draft = EntryDraft(EntryType.EARN, 40, status=EntryStatus.PENDING, reference_order_id="o1",
                       attributes={"maturesAt": "2026-11-02T12:00:00+00:00"})
    platform.ledger.append_one(TransactionRequest("shop", "c1", "seed", "seed", lambda head: Plan([draft], {})))
    from tests.conftest import drain  # noqa: PLC0415
    drain(platform)  # the change feed puts the customer on the maturity calendar
    clock.advance(datetime.fromisoformat("2026-11-02T12:20:00+00:00") - clock.now())
    enqueued = run_job(BY_NAME["maturation"], platform)
    assert enqueued["enqueued"] is True
    for _ in range(3):
        run_job(BY_NAME["work-items"], platform)
    head = platform.ledger.head("shop", "c1")
    assert (head.balance, head.pending) == (40, 0)
    assert run_job(BY_NAME["maturation"], platform)["enqueued"] is False  # one item per tenant and hour
