"""Giving a pool code back races with itself and with the next hand-out: the reservations
job's ``on_unpaid`` and a retried exchange's ``_refuse_unpaid`` may both give back one
redemption's code. Whichever read of the loser the winner commits after, the loser answers
False (nothing to give back; before, an AssertionError: a 500 to the retried exchange),
the code is given back once, and the counters equal the stored codes and claims."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from shared.clock import ManualClock
from shared.store.layout import CODES, CONTAINERS
from shared.store.sqlite import SqliteDocumentStore
from shared.vouchers.pools import CodePools
from tests.conftest import StoreThatInterleaves

READS = 3  # give_back reads the claim, the code, the pool


def _digest(tenant_id: str, purpose: str, data: str) -> bytes:
    return hashlib.sha256(f"{tenant_id}/{purpose}/{data}".encode()).digest()


@pytest.mark.parametrize("racer", ["give-back", "give-back-then-hand-out"])
@pytest.mark.parametrize("after_read", range(READS))
def test_the_loser_of_two_give_backs_answers_false_and_counts_stay_exact(tmp_path: Path, racer: str,
                                                                        after_read: int) -> None:
    store = SqliteDocumentStore(tmp_path / "store.db", CONTAINERS)
    try:
        pools = CodePools(store, ManualClock(), _digest)
        pools.add_codes("acme", "p", [(1, "CODE-0001")])
        assert pools.hand_out("acme", "p", "rd-1", "c1") == "CODE-0001"
        won: list[object] = []

        def race() -> None:
            won.append(pools.give_back("acme", "p", "rd-1"))
            if racer == "give-back-then-hand-out":
                won.append(pools.hand_out("acme", "p", "rd-2", "c2"))

        loser = CodePools(StoreThatInterleaves(store, "read", CODES, after=race, nth=after_read),
                          ManualClock(), _digest)
        assert loser.give_back("acme", "p", "rd-1") is False
        assert won[0] is True
        pool = pools.get("acme", "p")
        if racer == "give-back":
            assert (pool["handedOut"], pool["remaining"]) == (0, 1), pool
        else:
            assert won[1] == "CODE-0001" and (pool["handedOut"], pool["remaining"]) == (1, 0), pool
            assert pools.give_back("acme", "p", "rd-2") is True, "rd-2 still holds the code"
    finally:
        store.close()
