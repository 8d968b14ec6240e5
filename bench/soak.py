"""Memory under a steady load, bounded in time (issue 22, target 4: nothing grows with history).

Starts the local platform (durability on), registers 1,000 customers, then for
``--minutes`` (default 10; ``--quick`` is 2) posts one batch of ``--batch``
orders every second while four connections read balances and history pages
without pause. Every ``--every`` seconds it samples every platform process's RSS
(``/proc/<pid>/status``) and prints a line with the load average. At the end it
prints, per process, the RSS at the end of the first third and the peak of the
last third (the first third is warm-up: caches and pools filling), for the whole RSS and for its
anonymous part (the rest is the database file's pages mapped by SQLite's mmap); "flat" means
the last third's peak is within ``FLAT_MIB`` of the first third's peak. It checks
every order was credited exactly once. Disk use is bounded by the rate: 10
minutes at the default 500 orders/s is 300,000 orders.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import uvloop

from bench_spine import (BATCH, CUSTOMERS, Probe, durable_platform, order, register_customers, until_projected,  # noqa: E402
                         verify_credited)
from loadgen import Pool
from machine import machine_line
from summary import record

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import LocalPlatform  # noqa: E402

FLAT_MIB = 20.0
TARGET_API_RSS_MIB = 200.0


def rss_of(pid: int) -> tuple[float, float] | None:
    """(RSS, its anonymous part) in MiB. The rest is file pages: SQLite reads the database
    through mmap, so pages of the file it touched count in RSS though they are the kernel's
    page cache, shared and reclaimable; the anonymous part is the process's own memory."""
    try:
        lines = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                     if ":" in line)
        return int(lines["VmRSS"].split()[0]) / 1024, int(lines["RssAnon"].split()[0]) / 1024
    except (OSError, KeyError, ValueError):
        return None


def processes(api_pid: int) -> dict[str, int]:
    """The API process and its worker processes, by role."""
    found = {"API": api_pid}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            argv = (entry / "cmdline").read_text().split("\0")
        except OSError:
            continue
        if f"PPid:\t{api_pid}\n" in status and "--role" in argv[:-1]:
            found[argv[argv.index("--role") + 1]] = int(entry.name)
    return found


async def soak(platform: LocalPlatform, probe: Probe, args: argparse.Namespace) -> dict[str, list[float]]:
    headers = {"Authorization": f"Bearer {platform.keys['merchant']}"}
    http = Pool(platform.url, headers, size=8)
    readers = Pool(platform.url, headers, size=4)
    expected: Counter = Counter()
    samples: dict[str, list[float]] = {}  # "API", "API anon", ...
    prefix = "soak" + uuid.uuid4().hex[:6]
    seconds = args.minutes * 60
    sent = 0
    try:
        await register_customers(http)
        pids = processes(platform.process.pid)  # type: ignore[union-attr]
        started = time.perf_counter()
        start_lsn = probe.latest_ledger_lsn()
        stop = asyncio.Event()

        async def reader(k: int) -> None:
            n = k
            while not stop.is_set():
                customer = CUSTOMERS[n % len(CUSTOMERS)]
                path = f"/v1/customers/{customer}/balance" if n % 2 else f"/v1/customers/{customer}/ledger"
                response = await readers.get(path)
                assert response.status == 200, response.body
                n += 4

        async def sampler() -> None:
            while not stop.is_set():
                elapsed = time.perf_counter() - started
                line = []
                for name, pid in pids.items():
                    found = rss_of(pid)
                    if found is not None:
                        samples.setdefault(name, []).append(found[0])
                        samples.setdefault(f"{name} anon", []).append(found[1])
                        line.append(f"{name} {found[0]:.0f} (anon {found[1]:.0f})")
                one, five, _ = os.getloadavg()
                print(f"  {elapsed:6.0f} s  RSS MiB: {', '.join(line)}  ({sent:,} orders; load {one:.1f}/{five:.1f})",
                      flush=True)
                try:
                    await asyncio.wait_for(stop.wait(), args.every)
                except asyncio.TimeoutError:
                    pass

        tasks = [asyncio.ensure_future(reader(k)) for k in range(4)] + [asyncio.ensure_future(sampler())]
        b = 0
        while time.perf_counter() - started < seconds:
            tick = time.perf_counter()
            body = {"orders": [order(f"{prefix}-{b}-{i}", CUSTOMERS[(b * args.batch + i) % len(CUSTOMERS)])
                               for i in range(args.batch)]}
            response = await http.post("/v1/orders/batch", json=body)
            assert response.status == 202, response.body
            expected.update(o["customerId"] for o in body["orders"])
            sent += args.batch
            b += 1
            await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - tick)))
        stop.set()
        await asyncio.gather(*tasks)
        await until_projected(probe, prefix, sent, time.perf_counter(), start_lsn)
        await verify_credited(http, expected)
        print(f"  check: every one of {sent:,} orders credited exactly once", flush=True)
        return samples
    finally:
        await http.aclose()
        await readers.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    parser.add_argument("--quick", action="store_true", help="2 minutes instead")
    parser.add_argument("--batch", type=int, default=BATCH, help=f"orders per second, one batch (default {BATCH})")
    parser.add_argument("--every", type=float, default=15.0, help="seconds between RSS samples (default 15)")
    args = parser.parse_args()
    if args.quick:
        args.minutes = 2.0
    assert 0 < args.minutes <= 30, "a soak is bounded: at most 30 minutes"
    print(f"machine: {machine_line()}; soak of {args.minutes:g} min at {args.batch} orders/s", flush=True)
    with durable_platform("bench-soak-") as (platform, probe):
        samples = uvloop.run(soak(platform, probe, args))
    one, five, _ = os.getloadavg()
    for name, values in samples.items():
        third = max(1, len(values) // 3)
        first, last = max(values[:third]), max(values[-third:])
        verdict = "flat" if last - first <= FLAT_MIB else "GROWS"
        print(f"  {name + ' RSS' if 'anon' not in name else name}: first third peak {first:.0f} MiB, last third peak {last:.0f} MiB ({last - first:+.0f}), "
              f"overall peak {max(values):.0f} MiB: {verdict}  (load {one:.1f}/{five:.1f})")
        record(f"soak growth, {name} RSS", last - first, "MiB", target=FLAT_MIB, higher_is_better=False)
        if name == "API":
            record("soak peak RSS, API process", max(values), "MiB", target=TARGET_API_RSS_MIB,
                   higher_is_better=False)


if __name__ == "__main__":
    main()
