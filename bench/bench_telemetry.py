"""The cost of telemetry on the spine: the same load with telemetry off and on, in one run.

Starts the local platform (``python -m shared.local run``, durability on, as in
``bench/bench_spine.py``, whose phases this reuses) with telemetry off, on with
every trace sampled, and on with one trace in ten sampled (parent-based), the
modes alternating over ``--rounds`` so drift on a shared machine falls on all of
them, and prints orders/s for single-order calls and for batches of 500, accepted
and end to end (accepted → committed → projected), and the CPU time per order of
the platform's three processes in each phase: the cost of telemetry.

"On" means every process records and exports its spans (HTTP request, intake,
publish, ingest batch with its links, a ledger append per request's orders, the
projection spans) to the JSON-lines file exporter (``ACCRUE_TRACE_FILE``: real
serialisation and a real write per batch of spans, without a collector to run
beside it). Whatever else ``shared.telemetry.configure`` turns on (metrics, logs)
is on in all runs alike.

Writes ``bench/RESULTS-telemetry.md`` (``--output -``: nothing).

Usage: ``python bench/bench_telemetry.py [--orders N] [--batch-orders N] [--rounds N] [--output FILE]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import uvloop
from bench_spine import (  # bench/bench_spine.py (the script's folder is on sys.path)
    Probe,
    batches,
    caught_up,
    drain,
    register_customers,
    single_orders,
    verify_credited,
)
from loadgen import Pool
from machine import machine_line

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import LocalPlatform

TARGET_COST = 0.10  # the issue: telemetry costs under 10 % of throughput


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children still running (the worker processes)."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    for child in Path("/proc").iterdir():
        if child.name.isdigit():
            try:
                if int((child / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    pids.append(int(child.name))
            except (OSError, ValueError, IndexError):
                continue
    for one in pids:
        try:
            fields = (Path("/proc") / str(one) / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


async def measure(platform: LocalPlatform, probe: Probe, orders: int, batch_orders: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {platform.keys['merchant']}"}
    expected: Counter = Counter()
    http = Pool(platform.url, headers, size=64)
    try:
        await register_customers(http)
        await single_orders(http, probe, expected, min(200, orders), 16)  # warm-up
        await caught_up(probe, time.perf_counter() + 120)
        assert platform.process is not None
        pid = platform.process.pid
        cpu_before = cpu_seconds(pid)
        single_rps, single_e2e = await single_orders(http, probe, expected, orders, 32)
        await caught_up(probe, time.perf_counter() + 120)
        cpu_between = cpu_seconds(pid)
        batch_rps, batch_e2e, sent = await batches(http, probe, expected, batch_orders, 2)
        await caught_up(probe, time.perf_counter() + 120)
        cpu_after = cpu_seconds(pid)
        await verify_credited(http, expected)
    finally:
        await http.aclose()
    return {"single accepted": single_rps, "single e2e": single_e2e, "batch accepted": batch_rps,
            "batch e2e": batch_e2e, "single cpu µs/order": (cpu_between - cpu_before) / orders * 1e6,
            "batch cpu µs/order": (cpu_after - cpu_between) / sent * 1e6}


# Telemetry modes: off; on with every trace sampled (the worst case); on with 1 trace in 10
# sampled at the request and the decision followed downstream (parent-based).
MODES = {
    "off": {},
    "on, all sampled": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
    "on, 10 % sampled": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
}


def run_once(mode: str, orders: int, batch_orders: int) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="bench-telemetry-"))
    telemetry = bool(MODES[mode])
    env = {"ACCRUE_TRACE_FILE": str(folder / "traces.jsonl"), **MODES[mode]} if telemetry else {}
    platform = LocalPlatform(folder / "data", env=env).start()
    assert platform.process is not None and platform.process.stdout is not None
    threading.Thread(target=drain, args=(platform.process.stdout,), daemon=True).start()
    probe = Probe(folder / "data" / "accrue.db")
    try:
        figures = uvloop.run(measure(platform, probe, orders, batch_orders))
    finally:
        probe.close()
        platform.stop()
    if telemetry:
        figures["spans"] = (folder / "traces.jsonl").read_text(encoding="utf-8").count("\n")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=2000, help="single-order calls per run (default 2000)")
    parser.add_argument("--batch-orders", type=int, default=10000, help="orders in batches of 500 per run")
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs, alternating (default 2)")
    parser.add_argument("--output", default=str(Path(__file__).with_name("RESULTS-telemetry.md")))
    args = parser.parse_args()
    os.environ["ACCRUE_SQLITE_SYNCHRONOUS"] = "FULL"
    os.environ.pop("ACCRUE_TRACE_FILE", None)
    os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    began = time.perf_counter()
    print(f"machine: {machine_line()}", flush=True)
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    order = list(MODES)
    for round_ in range(args.rounds):
        for mode in (order if round_ % 2 == 0 else order[::-1]):
            figures = run_once(mode, args.orders, args.batch_orders)
            runs[mode].append(figures)
            print(f"  round {round_ + 1}, {mode}: " + ", ".join(f"{k} {v:,.0f}" for k, v in figures.items()),
                  flush=True)
    keys = ["single accepted", "single e2e", "batch accepted", "batch e2e", "single cpu µs/order",
            "batch cpu µs/order"]
    mean = {m: {k: sum(r[k] for r in runs[m]) / len(runs[m]) for k in keys} for m in runs}
    total = args.orders + 200 + args.batch_orders
    spans = {m: sum(r["spans"] for r in runs[m]) / len(runs[m]) / total for m in runs if m != "off"}
    header = ["measure", "off", *[f"{m}" for m in order[1:]]]
    rows = []
    for key in keys:
        off = mean["off"][key]
        cells = [f"{off:,.0f}"]
        for mode in order[1:]:
            on = mean[mode][key]
            if "cpu" in key:
                cells.append(f"{on:,.0f} ({on - off:+,.0f} µs, {(on - off) / off:+.1%})")
            else:
                cells.append(f"{on:,.0f} ({(on - off) / off:+.1%})")
        rows.append([key if "cpu" in key else f"{key} (orders/s)", *cells])
    rows.append(["spans written per order", "0", *[f"{spans[m]:.2f}" for m in order[1:]]])
    for row in rows:
        print("  " + " | ".join(row))
    if args.output == "-":
        return
    lines = ["# Telemetry cost on the spine (bench/bench_telemetry.py)", "",
             f"Machine: {machine_line()}", "",
             f"`python bench/bench_telemetry.py --orders {args.orders} --batch-orders {args.batch_orders} "
             f"--rounds {args.rounds}` ({time.perf_counter() - began:.0f} s). Local platform (API, ingest and "
             "project processes), durability on; the modes alternate, each run on a fresh platform; figures "
             f"are the means of {args.rounds} run(s) per mode, in brackets the change from off. On: traces "
             "recorded in every process and exported to a JSON-lines file. Target: cost "
             f"< {TARGET_COST:.0%} of throughput.", "",
             "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "Single orders: 32 concurrent calls; batches of 500, 2 concurrent. CPU is that of the three "
              "platform processes over the phase, until every order is projected (the load generator shares "
              "the two cores, and so do other jobs on this machine: throughput figures are noisy, CPU per order "
              "is the steadier measure of cost).", ""]
    Path(args.output).write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
