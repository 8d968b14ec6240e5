"""Benchmark of transfers between members (shared/transfers/saga.py) on the embedded store.

A platform over a fresh SQLite store (``synchronous=FULL``), in this process; the
transfers go through ``Transfers.transfer`` (the route's body), each a whole saga:
intent, debit, credit, completion, intent closed (four ledger appends' worth of
writes and a delete). Prints transfers/s for

* **uncontended**: ``--threads`` threads, each moving points between its own
  pair of customers;
* **hot receiver**: the same threads, every sender distinct, all to one
  receiver (its partition's sequence number serialises the credits: losers
  re-plan).

Then checks the total of the balances is unchanged and nothing is left open.

Usage: ``python bench/bench_transfers.py [--transfers N] [--threads N]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

from machine import machine_line  # bench/machine.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transfers", type=int, default=2000, help="transfers per scenario (default 2000)")
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    from datetime import date
    from decimal import Decimal

    from shared.app.corrections import AdjustmentRequest
    from shared.app.customers import CustomerProfile
    from shared.domain.tenants import TenantSettings
    from shared.platform import build_platform
    from shared.settings import Settings
    from shared.transfers.saga import TransferRequest

    folder = Path(tempfile.mkdtemp(prefix="bench-transfers-"))
    platform = build_platform(Settings.from_env({"ACCRUE_DATA_DIR": str(folder), "ACCRUE_SQLITE_SYNCHRONOUS": "FULL"}))
    platform.tenants.save(TenantSettings(tenantId="bench", name="bench", pointsPerUnit=Decimal(1)))
    threads = args.threads
    customers = [f"s{n}" for n in range(threads * 2)] + ["hot"]
    for customer in customers:
        platform.customers.register("bench", CustomerProfile(customerId=customer, joinDate=date(2025, 1, 1)))
        platform.corrections.adjust("bench", customer, AdjustmentRequest(
            points=10**9, reasonCode="goodwill", reason="bench", idempotencyKey=f"seed-{customer}"), "bench")
    total = sum(platform.ledger.head("bench", c).balance for c in customers)
    print(f"machine: {machine_line()}")

    def scenario(name: str, pair) -> None:  # type: ignore[no-untyped-def]
        per_thread = args.transfers // threads

        def work(t: int) -> None:
            for n in range(per_thread):
                sender, receiver = pair(t, n)
                platform.transfers.transfer("bench", sender, TransferRequest.model_validate(
                    {"toCustomerId": receiver, "points": 1, "idempotencyKey": f"{name}-{t}-{n}"}))

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        seconds = time.perf_counter() - start
        print(f"  {name}: {per_thread * threads / seconds:,.0f} transfers/s "
              f"({per_thread * threads:,} transfers, {threads} threads, {seconds:.1f} s)")

    print("transfers on the embedded store (SQLite synchronous=FULL), in process:")
    scenario("uncontended", lambda t, n: (f"s{2 * t + n % 2}", f"s{2 * t + 1 - n % 2}"))
    scenario("hot-receiver", lambda t, n: (f"s{2 * t + n % 2}", "hot"))
    after = sum(platform.ledger.head("bench", c).balance for c in customers)
    assert after == total, f"the total moved: {total} -> {after}"
    assert platform.transfers.open_transfers(due_only=False) == []
    print("  check: total unchanged, no transfer left open")
    platform.close()


if __name__ == "__main__":
    main()
