"""Vouchers on the embedded SQLite store: what a point-of-sale redemption, a check,
and a partner pool upload and hand-out cost, single-threaded and with a crowd on one
code.

Prints, for ``--count`` vouchers: the median and p99 of ``redeem`` (one CAS of the
voucher document) and of ``check`` (one point read), the upload rate of a pool of
``--count`` codes (sealed, one document each, batches of 100) and the median
hand-out; then ``--crowd`` threads racing on one single-use code (one wins: the
time until every loser has its 409).

Usage: ``python bench/bench_vouchers.py [--count N] [--crowd N]``. Loopback only: no network.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.clock import ManualClock, iso  # noqa: E402
from shared.errors import AccrueError  # noqa: E402
from shared.store.layout import CODES, CONTAINERS, voucher_pk  # noqa: E402
from shared.store.sqlite import SqliteDocumentStore  # noqa: E402
from shared.vouchers import codes  # noqa: E402
from shared.vouchers.pools import CodePools  # noqa: E402
from shared.vouchers.service import ACTIVE, VOUCHER_DOC_ID, VoucherRedeemRequest, Vouchers  # noqa: E402


def _digest(tenant_id: str, purpose: str, data: str) -> bytes:
    return hashlib.sha256(f"{tenant_id}/{purpose}/{data}".encode()).digest()


def _voucher(store: SqliteDocumentStore, number: int, now: str) -> str:
    code = codes.encode(hashlib.sha256(str(number).encode()).digest()[:10])
    store.create(CODES, {"id": VOUCHER_DOC_ID, "pk": voucher_pk("acme", codes.code_hash("acme", code)),
                         "docType": "voucher", "tenantId": "acme", "voucherId": f"vc-{number:024x}",
                         "customerId": "c1", "redemptionId": f"rd-{number:024x}", "entryId": "e-000000000001",
                         "points": 500, "uses": 1, "used": 0, "productSku": "X", "channel": "any",
                         "expiresAt": "2099-01-01T00:00:00.000000Z", "status": ACTIVE, "createdAt": now,
                         "redemptions": {}})
    return code


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    return f"median {statistics.median(ordered) * 1e3:.3f} ms, p99 {ordered[int(len(ordered) * 0.99) - 1] * 1e3:.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--crowd", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteDocumentStore(Path(folder) / "store.db", CONTAINERS)
        clock = ManualClock()
        now = iso(clock.now())
        pools = CodePools(store, clock, _digest)
        vouchers = Vouchers(store, None, clock, None, None, None, _digest, pools)  # type: ignore[arg-type]
        made = [_voucher(store, n, now) for n in range(args.count)]
        checks, redeems = [], []
        for number, code in enumerate(made):
            started = time.perf_counter()
            vouchers.check("acme", code)
            checks.append(time.perf_counter() - started)
            started = time.perf_counter()
            vouchers.redeem("acme", code, f"k{number}", VoucherRedeemRequest(channel="online"), "bench")
            redeems.append(time.perf_counter() - started)
        print(f"check  ({args.count}): {_ms(checks)}")
        print(f"redeem ({args.count}): {_ms(redeems)}")
        started = time.perf_counter()
        pools.add_codes("acme", "bench", [(n, f"PARTNER-{n:08d}") for n in range(args.count)])
        elapsed = time.perf_counter() - started
        print(f"pool upload ({args.count} codes): {args.count / elapsed:,.0f} codes/s")
        outs = []
        for number in range(min(args.count, 500)):
            started = time.perf_counter()
            pools.hand_out("acme", "bench", f"rd-{number:024d}", "c1")
            outs.append(time.perf_counter() - started)
        print(f"hand-out ({len(outs)}): {_ms(outs)}")
        code = _voucher(store, args.count + 1, now)
        results: list[str] = []
        lock = threading.Lock()

        def race(number: int) -> None:
            try:
                vouchers.redeem("acme", code, f"crowd-{number}", VoucherRedeemRequest(channel="online"), "bench")
                outcome = "won"
            except AccrueError as error:
                outcome = error.code
            with lock:
                results.append(outcome)

        threads = [threading.Thread(target=race, args=(n,)) for n in range(args.crowd)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        print(f"crowd of {args.crowd} on one single-use code: {results.count('won')} won, "
              f"{results.count('voucher-not-redeemable')} refused, all answered in {elapsed * 1e3:.1f} ms")
        store.close()


if __name__ == "__main__":
    main()
