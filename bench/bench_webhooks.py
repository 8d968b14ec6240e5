"""Benchmark of webhook delivery: verified deliveries per second and commit-to-receipt latency.

A loopback receiver (``ThreadingHTTPServer`` on 127.0.0.1, HTTP/1.1 keep-alive,
reached through the test-only ``TestAllowance``) verifies **every** delivery's
signature with the reference ``standardwebhooks`` library and notes when each
``webhook-id`` first arrived verified. The receiver runs in a process of its own by default. The platform is the local one
(``build_platform``: SQLite, ``synchronous=NORMAL``), its ``DeliveryWorker`` as
shipped (pool, per-tenant and per-endpoint caps: the defaults unless given).

Two phases:

* **backlog**: ``--events`` events x ``--endpoints`` endpoints committed
  (``WebhookService.rule_set_activated``: message and delivery tasks written),
  then ``DeliveryWorker.drain``: verified deliveries per second;
* **paced**: events committed at ``--rate`` per second for ``--seconds`` while
  the worker runs rounds back to back on another thread: p50/p99 from the
  commit (``publish`` returned) to the verified receipt, per delivery.

Every delivery must arrive verified (none refused, none missing). Speed is
reported, never asserted. Prints the figures, the CPU seconds of the process
(worker and receiver share it) and the 1-minute load average beside them.

Usage: ``python bench/bench_webhooks.py [--events N] [--endpoints N] [--tenants N] [--rate R] [--seconds S]``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

from machine import machine_line  # bench/machine.py (the script's folder is on sys.path)
from receiver import serve_verifying  # bench/receiver.py
from summary import record  # bench/summary.py: make bench's summary table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from standardwebhooks import Webhook  # noqa: E402


class Receiver:
    """Verifies every delivery; remembers the first verified arrival (``time.monotonic``, one
    clock for every process on Linux) of each (path, webhook-id). Runs in a process of its own
    (``--receiver thread`` keeps it in the benchmark's, sharing its GIL), as a real receiver is
    elsewhere: the worker's CPU is then the process's own."""

    def __init__(self, in_process: bool) -> None:
        self._parent, child = multiprocessing.Pipe()
        self._secrets = multiprocessing.Manager().dict() if not in_process else {}
        target = _serve
        if in_process:
            self._thread = threading.Thread(target=target, args=(child, self._secrets), daemon=True)
            self._thread.start()
        else:
            self._process = multiprocessing.Process(target=target, args=(child, self._secrets), daemon=True)
            self._process.start()
        self.url = self._parent.recv()

    def add_secret(self, path: str, secret: str) -> None:
        self._secrets[path] = secret

    def snapshot(self) -> dict:
        """{"arrived": {(path, id): monotonic}, "verified", "refused", "connections"} so far."""
        self._parent.send("snapshot")
        return self._parent.recv()

    def stop(self) -> None:
        self._parent.send("stop")


def _serve(conn, secrets) -> None:  # noqa: ANN001 - a Pipe end and a dict (or a Manager's proxy)
    verifiers: dict[str, Webhook] = {}
    state = {"arrived": {}, "verified": 0, "refused": 0, "connections": 0}
    lock = threading.Lock()

    def verify(path: str, body: bytes, headers: dict[str, str]) -> None:
        verifier = verifiers.get(path)
        if verifier is None:
            verifier = verifiers[path] = Webhook(secrets[path])
        verifier.verify(body, headers)

    def on_answer(path: str, headers: dict[str, str], ok: bool) -> None:
        now = time.monotonic()
        with lock:
            if ok:
                state["verified"] += 1
                state["arrived"].setdefault((path, headers["webhook-id"]), now)
            else:
                state["refused"] += 1

    def on_connect() -> None:
        with lock:
            state["connections"] += 1

    server, url = serve_verifying(verify, on_answer, on_connect)
    conn.send(url)
    while True:
        asked = conn.recv()
        if asked == "stop":
            server.shutdown()
            return
        with lock:
            conn.send({**state, "arrived": dict(state["arrived"])})


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run(events: int, endpoints: int, tenants: int, rate: float, seconds: float, in_process: bool) -> dict:
    from shared.clock import SystemClock
    from shared.domain.tenants import TenantSettings
    from shared.platform import build_platform
    from shared.settings import Settings
    from shared.webhooks.ssrf import TestAllowance

    receiver = Receiver(in_process)
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings.from_env({"ACCRUE_DATA_DIR": folder, "ACCRUE_SQLITE_SYNCHRONOUS": "NORMAL"})
        platform = build_platform(settings, clock=SystemClock())
        platform.webhooks.allowance = TestAllowance(frozenset({"127.0.0.1"}))
        paths: dict[str, list[str]] = {}
        for t in range(tenants):
            tenant_id = f"bench{t}"
            platform.tenants.save(TenantSettings(tenantId=tenant_id, name=tenant_id, currency="EUR", timeZone="UTC",
                                                 pointsPerUnit=Decimal(1)))
            for number in range(endpoints):
                path = f"/t{t}/e{number}"
                _, secret = platform.webhooks.register(tenant_id, receiver.url + path, ["ruleset.activated"])
                receiver.add_secret(path, secret)
                paths.setdefault(tenant_id, []).append(path)
        worker = platform.webhook_worker

        # --- backlog -------------------------------------------------------------------
        started = time.perf_counter()
        for version in range(1, events + 1):
            for tenant_id in paths:
                platform.webhooks.rule_set_activated(tenant_id, "rs", version)
        enqueue = time.perf_counter() - started
        cpu, started = time.process_time(), time.perf_counter()
        report = worker.drain(max_rounds=10_000)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        seen = receiver.snapshot()
        backlog = {"deliveries": report.succeeded, "seconds": elapsed, "per_second": report.succeeded / elapsed,
                   "cpu_seconds": cpu, "load": os.getloadavg()[0], "verified": seen["verified"],
                   "refused": seen["refused"], "enqueue_per_second": events * endpoints * tenants / enqueue,
                   "connections": seen["connections"]}
        expected = events * endpoints * tenants
        assert seen["refused"] == 0 and len(seen["arrived"]) == expected, (seen["refused"], len(seen["arrived"]))

        # --- paced: commit to verified receipt ------------------------------------------
        committed: dict[str, tuple[str, float]] = {}  # message id -> (tenant, when publish returned)
        stop = threading.Event()

        def rounds() -> None:
            while not stop.is_set():
                if worker.run_once().sent == 0:
                    time.sleep(0.005)

        loop = threading.Thread(target=rounds, daemon=True)
        loop.start()
        version = events
        begin = time.perf_counter()
        sent = 0
        while time.perf_counter() - begin < seconds:
            due = int((time.perf_counter() - begin) * rate)
            while sent < due:
                version += 1
                for tenant_id in paths:
                    msg_id = platform.webhooks.rule_set_activated(tenant_id, "rs", version)
                    committed[msg_id] = (tenant_id, time.monotonic())
                sent += 1
            time.sleep(0.001)
        deadline = time.perf_counter() + 60
        wanted = {(path, msg) for msg, (tenant_id, _) in committed.items() for path in paths[tenant_id]}
        while time.perf_counter() < deadline and not all(k in (seen := receiver.snapshot())["arrived"] for k in wanted):
            time.sleep(0.2)
        stop.set()
        loop.join()
        arrived = receiver.snapshot()["arrived"]
        latencies = [(arrived[k] - committed[k[1]][1]) * 1000 for k in wanted if k in arrived]
        paced = {"deliveries": len(latencies), "expected": len(wanted), "p50_ms": percentile(latencies, 0.50),
                 "p99_ms": percentile(latencies, 0.99), "max_ms": max(latencies) if latencies else float("nan"),
                 "rate": rate * len(paths) * endpoints, "load": os.getloadavg()[0]}
        platform.close()
    receiver.stop()
    return {"backlog": backlog, "paced": paced}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=4)
    parser.add_argument("--tenants", type=int, default=1)
    parser.add_argument("--rate", type=float, default=200.0, help="events per second per tenant (paced phase)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the paced phase")
    parser.add_argument("--receiver", choices=("process", "thread"), default="process",
                        help="the receiver in a process of its own (default) or a thread of the benchmark's")
    args = parser.parse_args()
    print(machine_line())
    result = run(args.events, args.endpoints, args.tenants, args.rate, args.seconds, args.receiver == "thread")
    b, p = result["backlog"], result["paced"]
    print(f"backlog: {b['deliveries']} verified deliveries in {b['seconds']:.2f} s = {b['per_second']:,.0f}/s "
          f"(CPU of the worker's process {b['cpu_seconds']:.1f} s, receiver in a {args.receiver}; {b['connections']} connections; "
          f"refused {b['refused']}; load average {b['load']:.1f}); outbox writes {b['enqueue_per_second']:,.0f}/s")
    print(f"paced: {p['deliveries']}/{p['expected']} deliveries at {p['rate']:,.0f}/s offered, commit to verified "
          f"receipt p50 {p['p50_ms']:.1f} ms, p99 {p['p99_ms']:.1f} ms, max {p['max_ms']:.1f} ms "
          f"(load average {p['load']:.1f})")
    record("webhooks verified deliveries (backlog)", b["per_second"], "/s", target=2000.0)


if __name__ == "__main__":
    main()
