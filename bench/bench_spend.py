"""Benchmark of redemptions: redemptions/s on one hot customer and across many
customers, with threads, on the embedded store (SQLite, synchronous=NORMAL).

Each scenario runs ``--threads`` threads for ``--seconds`` seconds; every
thread redeems 1-50 points per call (direct), with a fresh idempotency key.
The hot customer is funded with fewer points than the threads try to spend, so
the overdraft guard is exercised (refusals are counted, not errors). At the
end the invariant is checked from the ledger alone: available >= 0, every
running balance recomputes from the entries, and the points spent equal the
sum of the REDEEM entries.

Usage: ``python bench/bench_spend.py [--threads N] [--seconds S] [--customers N]``
(the whole run stays under a minute with the defaults).
"""

from __future__ import annotations

import argparse
import os
import platform as host
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.app.corrections import AdjustmentRequest  # noqa: E402
from shared.app.customers import CustomerProfile  # noqa: E402
from shared.domain.tenants import TenantSettings  # noqa: E402
from shared.errors import AccrueError  # noqa: E402
from shared.platform import build_platform  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.spend.redemptions import RedeemRequest  # noqa: E402


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return host.processor() or "unknown"


def _check(platform, customers: list[str], spent: dict[str, int], funded: dict[str, int]) -> None:
    for customer in customers:
        entries = platform.ledger.entries("t", customer, newest_first=False, limit=10_000)
        running = 0
        for entry in entries:
            running += entry["signedAmount"]
            assert entry["runningBalance"] == running >= 0, ("overdraft or drift", customer, entry["seq"])
        redeemed = -sum(e["signedAmount"] for e in entries if e["entryType"] == "REDEEM")
        assert redeemed == spent[customer], (customer, redeemed, spent[customer])
        assert running == funded[customer] - spent[customer]


def scenario(name: str, customers: list[str], funds: int, threads: int, seconds: float) -> dict:
    folder = tempfile.mkdtemp(prefix="accrue-bench-spend-")
    platform = build_platform(Settings.from_env({"ACCRUE_DATA_DIR": folder, "ACCRUE_SQLITE_SYNCHRONOUS": "NORMAL"}))
    platform.tenants.save(TenantSettings(tenantId="t", name="bench"))
    from datetime import date
    for customer in customers:
        platform.customers.register("t", CustomerProfile(customerId=customer, joinDate=date(2025, 1, 1)))
        platform.corrections.adjust("t", customer, AdjustmentRequest(points=funds, reasonCode="goodwill",
                                                                     reason="bench", idempotencyKey="seed"), "bench")
    spent = {c: 0 for c in customers}
    counts = {"ok": 0, "refused": 0, "conflict": 0}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def run(worker: int) -> None:
        rng = random.Random(worker)
        number = 0
        while time.monotonic() < stop:
            customer = rng.choice(customers)
            points = rng.randint(1, 50)
            number += 1
            try:
                platform.spend.redemptions.redeem("t", customer, RedeemRequest(
                    idempotencyKey=f"w{worker}-{number}", points=points), "bench")
                outcome = "ok"
            except AccrueError as error:
                outcome = "refused" if error.code == "insufficient-points" else "conflict"
            with lock:
                counts[outcome] += 1
                if outcome == "ok":
                    spent[customer] += points

    started = time.monotonic()
    pool = [threading.Thread(target=run, args=(w,)) for w in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.monotonic() - started
    _check(platform, customers, spent, {c: funds for c in customers})
    platform.close()
    attempts = sum(counts.values())
    return {"scenario": name, "threads": threads, "customers": len(customers), "seconds": round(elapsed, 1),
            "redeemed": counts["ok"], "redeemed/s": round(counts["ok"] / elapsed), "attempts/s":
            round(attempts / elapsed), "refused (no points)": counts["refused"],
            "gave up (409 ledger-conflict)": counts["conflict"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--customers", type=int, default=1000)
    args = parser.parse_args()
    print(f"machine: nproc={os.cpu_count()} cpu={_cpu()} python={sys.version.split()[0]}")
    # Hot: funds for ~1/3 of what the threads will try, so the guard refuses the rest.
    hot = scenario("one hot customer", ["hot"], funds=20_000, threads=args.threads, seconds=args.seconds)
    many = scenario("many customers", [f"c{n}" for n in range(args.customers)], funds=10_000, threads=args.threads,
                    seconds=args.seconds)
    for result in (hot, many):
        print(" | ".join(f"{k}: {v}" for k, v in result.items()))
    print("invariant: available >= 0 and running balances = sum of entries, for every customer: OK")


if __name__ == "__main__":
    main()
