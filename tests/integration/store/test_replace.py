"""``shared.store.replace`` on both adapters: a PUT happens once per change, and
concurrent replacers are serialised, each change built on the one before it.

This is what docs/exactly-once.md says of every "replace" write (tier programme,
partner, conversion programme, spend policy, tenant settings): the mechanism is the
store's own (a conditional create, then ETag preconditions), so it holds on Cosmos
DB as on SQLite, across processes as across threads."""

from __future__ import annotations

import threading
from typing import Any

from shared.store.layout import TENANTS
from shared.store.port import DocumentStore
from shared.store.replace import Replaced, replace

WRITERS = 6


def _race(store: DocumentStore, contents: list[str]) -> list[Replaced]:
    results: list[Replaced] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(contents), timeout=30)

    def writer(content: str) -> None:
        def build(current: dict[str, Any] | None) -> dict[str, Any]:
            return {"id": "thing", "pk": "t1", "content": content, "version": (current or {}).get("version", 0) + 1}

        try:
            barrier.wait()
            result = replace(store, TENANTS, "t1", "thing", build, content=lambda d: d["content"])
            with lock:
                results.append(result)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(c,)) for c in contents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(results) == len(contents)
    return results


def test_concurrent_different_contents_are_serialised_with_no_lost_update(store: DocumentStore) -> None:
    results = _race(store, [f"c{n}" for n in range(WRITERS)])
    assert all(r.changed for r in results)
    # One chain: version 1 made from nothing, each later version from the one before.
    by_version = sorted(results, key=lambda r: r.after["version"])
    assert [r.after["version"] for r in by_version] == list(range(1, WRITERS + 1))
    assert by_version[0].before is None
    for earlier, later in zip(by_version, by_version[1:]):
        assert later.before is not None and later.before["content"] == earlier.after["content"]
        assert later.before["version"] == earlier.after["version"]
    final = store.read(TENANTS, "t1", "thing")
    assert final is not None and final["content"] == by_version[-1].after["content"]


def test_concurrent_identical_contents_make_one_change(store: DocumentStore) -> None:
    results = _race(store, ["same"] * WRITERS)
    assert sum(r.changed for r in results) == 1
    assert {r.after["version"] for r in results} == {1}
    final = store.read(TENANTS, "t1", "thing")
    assert final is not None and (final["content"], final["version"]) == ("same", 1)


def test_a_repeat_of_the_stored_content_writes_nothing(store: DocumentStore) -> None:
    first = _race(store, ["x"])[0]
    again = _race(store, ["x"])[0]
    assert first.changed and not again.changed
    assert again.after["_etag"] == first.after["_etag"]
