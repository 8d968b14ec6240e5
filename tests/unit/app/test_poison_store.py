"""The poison store keeps a message once: twenty workers poisoning the same message at once
(re-runs of one batch on several instances) leave one item; another message is its own item."""

from __future__ import annotations

import threading

from shared.store.layout import POISON
from shared.store.port import Query


def test_twenty_puts_of_one_message_at_once_keep_one_item(platform) -> None:  # type: ignore[no-untyped-def]
    start = threading.Barrier(20)
    ids: list[str] = []

    def put() -> None:
        start.wait()
        ids.append(platform.poison.put("ingest", b"not json", "malformed order message"))

    threads = [threading.Thread(target=put) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 20 and len(set(ids)) == 1
    other = platform.poison.put("ingest", b"not json either", "malformed order message")
    stored = platform.store.query(POISON, Query(pk="_unknown", limit=100))
    assert sorted(d["id"] for d in stored) == sorted({ids[0], other})
