"""Benchmark of the MCP tool server: tool calls per second and their latency, through the
real ASGI app with the official MCP client (stateless JSON-response streamable HTTP, as on
Azure), one client at a time. Each call is a full POST: authentication (cached key),
a fresh session manager, the guardrail policy's point reads, the tool, the trail record.

Usage: ``python bench/bench_mcp.py [--calls N]`` (default 200 per tool measured).
Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    import anyio

    from shared.api.app import create_app
    from shared.app.auth import Role
    from shared.app.customers import CustomerProfile
    from shared.platform import build_platform
    from shared.settings import Settings
    from tests.conftest import make_tenant
    from tests.unit.agents.mcp_client import call, session

    platform = build_platform(Settings.from_env({"ACCRUE_DATA_DIR": tempfile.mkdtemp(),
                                                 "ACCRUE_SQLITE_SYNCHRONOUS": "NORMAL"}))
    make_tenant(platform, "bench")
    platform.customers.register("bench", CustomerProfile(customerId="c1", joinDate=date(2025, 1, 1)))
    saved = platform.agents.policies.save("bench", "default", {"tools": ["*"], "requireConsent": False}, "bench", "b")
    platform.agents.policies.activate("bench", "default", saved["version"], "bench", "b")
    key = platform.keys.issue("bench", Role.AGENT, None).secret_key
    app = create_app(platform)

    async def measure() -> dict[str, list[float]]:
        timings: dict[str, list[float]] = {"get_balance": [], "quote_goodwill": [], "quote+execute": []}
        async with session(key, app=app) as mcp:
            await call(mcp, "get_balance", customerId="c1")  # warm: the SDK's first import
            for _ in range(args.calls):
                started = time.perf_counter()
                await call(mcp, "get_balance", customerId="c1")
                timings["get_balance"].append(time.perf_counter() - started)
            for _ in range(args.calls):
                started = time.perf_counter()
                quote = (await call(mcp, "quote_goodwill", customerId="c1", points=1, note="bench"))["result"]
                timings["quote_goodwill"].append(time.perf_counter() - started)
                await call(mcp, "execute_quote", quoteId=quote["quoteId"], contentHash=quote["contentHash"])
                timings["quote+execute"].append(time.perf_counter() - started)
        return timings

    timings = anyio.run(measure)
    print(f"MCP tool calls through the ASGI app, {args.calls} each, one client (SQLite, synchronous=NORMAL)")
    for name, values in timings.items():
        values.sort()
        p50, p95 = values[len(values) // 2], values[int(len(values) * 0.95) - 1]
        print(f"  {name:<16} p50 {p50 * 1000:7.2f} ms   p95 {p95 * 1000:7.2f} ms   "
              f"{len(values) / sum(values):7.1f} /s   mean {statistics.mean(values) * 1000:.2f} ms")
    platform.close()


if __name__ == "__main__":
    main()
