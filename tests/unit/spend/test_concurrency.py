"""No overdraft, ever: many threads and several OS processes (each with its own
Platform over the same SQLite data folder) redeem on one hot customer at once.

At the end: the available balance is >= 0 and every running total recomputes
from the entries, the balance equals the sum of the entries, every redemption
that was confirmed or completed is in the ledger exactly once, every refused
one wrote nothing, and a reward's stock is never oversold."""

from __future__ import annotations

import multiprocessing
import random
import threading
from collections import Counter
from pathlib import Path

from shared.app.corrections import AdjustmentRequest
from shared.domain.tenants import TenantSettings
from shared.errors import AccrueError
from shared.platform import Platform, build_platform
from shared.settings import Settings
from shared.spend.catalogue import NewReward
from shared.spend.redemptions import RedeemRequest
from tests.conftest import add_customer, run_in_threads
from tests.unit.spend.conftest import ledger_invariants

START = 5_000


def _platform(data_dir: str) -> Platform:
    return build_platform(Settings.from_env({"ACCRUE_DATA_DIR": data_dir, "ACCRUE_SQLITE_SYNCHRONOUS": "NORMAL"}))


def _spender(platform: Platform, writer: str, rounds: int, seed: int) -> dict[str, list]:
    """Redeems on the hot customer; returns what it saw succeed and fail."""
    rng = random.Random(seed)
    seen: dict[str, list] = {"kept": [], "released": [], "refused": []}
    redemptions = platform.spend.redemptions
    for number in range(rounds):
        points = rng.randint(1, 400)
        mode = rng.choice(["direct", "reserve", "reserve"])
        try:
            result = redemptions.redeem("acme", "hot", RedeemRequest(idempotencyKey=f"{writer}-{number}",
                                                                     points=points, mode=mode), "t")
        except AccrueError as error:
            assert error.code in ("insufficient-points", "ledger-conflict"), error
            seen["refused"].append(f"{writer}-{number}")
            continue
        rid = result.body["redemptionId"]
        if mode == "direct":
            seen["kept"].append((rid, points))
        elif rng.random() < 0.6:
            redemptions.confirm("acme", "hot", rid)
            seen["kept"].append((rid, points))
        else:
            redemptions.cancel("acme", "hot", rid)
            seen["released"].append((rid, points))
    return seen


def _process_main(data_dir: str, writer: str, rounds: int, seed: int, results) -> None:  # noqa: ANN001
    platform = _platform(data_dir)
    try:
        results.put(_spender(platform, writer, rounds, seed))
    finally:
        platform.close()


def _setup(data_dir: str) -> None:
    platform = _platform(data_dir)
    platform.tenants.save(TenantSettings(tenantId="acme", name="acme shop"))
    add_customer(platform, "acme", "hot")
    platform.corrections.adjust("acme", "hot", AdjustmentRequest(points=START, reasonCode="goodwill", reason="seed",
                                                                 idempotencyKey="seed"), "t")
    platform.close()


def _check(data_dir: str, outcomes: list[dict[str, list]]) -> None:
    platform = _platform(data_dir)
    try:
        entries = ledger_invariants(platform, "acme", "hot")  # every running total, available >= 0 throughout
        head = platform.ledger.head("acme", "hot")
        assert head.balance >= 0 and head.reserved == 0
        assert head.balance == sum(e["signedAmount"] for e in entries if e["status"] == "COMMITTED"
                                   or e["signedAmount"] < 0)
        kept = [k for o in outcomes for k in o["kept"]]
        released = [k for o in outcomes for k in o["released"]]
        spent = Counter(e["attributes"]["redemptionId"] for e in entries
                        if e["entryType"] == "REDEEM" and e["signedAmount"] < 0)
        endings = Counter(e["attributes"]["redemptionId"] for e in entries if e.get("settlesEntryId"))
        for rid, _ in kept + released:
            assert spent[rid] == 1  # in the ledger exactly once
        assert all(count == 1 for count in endings.values())
        assert sum(spent.values()) == len(kept) + len(released)  # refused ones wrote nothing
        assert head.balance == START - sum(points for _, points in kept)
        assert sum(len(o["refused"]) for o in outcomes) > 0, "the test never hit the overdraft guard"
    finally:
        platform.close()


def test_threads_never_overdraw_one_hot_customer(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "data")
    _setup(data_dir)
    platform = _platform(data_dir)
    outcomes: list[dict[str, list]] = []
    lock = threading.Lock()

    def run(writer: int) -> None:
        seen = _spender(platform, f"t{writer}", 30, writer)
        with lock:
            outcomes.append(seen)

    run_in_threads(run, [(w,) for w in range(8)])
    platform.close()
    assert len(outcomes) == 8
    _check(data_dir, outcomes)


def test_processes_never_overdraw_one_hot_customer(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "data")
    _setup(data_dir)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=_process_main, args=(data_dir, f"p{w}", 25, 100 + w, results))
                 for w in range(3)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    _check(data_dir, outcomes)


def test_stock_is_never_oversold_under_concurrency(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "data")
    _setup(data_dir)
    platform = _platform(data_dir)
    platform.spend.catalogue.create("acme", NewReward(rewardId="mug", name="Mug", pointsCost=1, stock=7))
    customers = [f"k{n}" for n in range(12)]
    for customer in customers:
        add_customer(platform, "acme", customer)
        platform.corrections.adjust("acme", customer, AdjustmentRequest(
            points=10, reasonCode="goodwill", reason="seed", idempotencyKey="seed"), "t")
    won: list[str] = []
    sold_out: list[str] = []
    lock = threading.Lock()

    def run(customer: str) -> None:
        try:
            platform.spend.redemptions.redeem("acme", customer, RedeemRequest(idempotencyKey="m", rewardId="mug"), "t")
            outcome = won
        except AccrueError as error:
            assert error.code == "out-of-stock", error
            outcome = sold_out
        with lock:
            outcome.append(customer)

    run_in_threads(run, [(c,) for c in customers])
    assert len(won) == 7 and len(sold_out) == 5
    assert platform.spend.catalogue.get("acme", "mug")["claimed"] == 7
    assert sum(len(platform.ledger.entries("acme", c, entry_types=["REDEEM"])) for c in customers) == 7
    platform.close()
