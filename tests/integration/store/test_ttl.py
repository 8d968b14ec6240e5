"""Time to live on the embedded store, as Cosmos DB keeps it (shared/store/layout.py).

A document of a container with a TTL rule is stamped with ``ttl`` on every write,
is invisible to reads, batched reads and queries once ``_ts + ttl`` has passed,
and is deleted by the sweep; ``ttl`` itself never reaches a caller. Containers
without a rule (the ledger, the audit log) are never touched.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Iterator

import pytest

from shared.store.layout import (
    AUDIT,
    CONTAINERS,
    DAY_SECONDS,
    LEDGER,
    ORDER_STATUS,
    SYSTEM,
    WEBHOOK_ATTEMPTS,
    WEBHOOK_DELIVERIES,
    TtlPolicy,
)
from shared.errors import DocumentExists, StoreError
from shared.store.port import Create, Filter, Query, read_many
from shared.store.sqlite import SqliteDocumentStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[SqliteDocumentStore]:
    store = SqliteDocumentStore(tmp_path / "ttl.db", CONTAINERS, synchronous="NORMAL",
                                ttl=TtlPolicy({"webhookattempts": 2}), clock=clock)
    yield store
    store.close()


def stored_ttl(store: SqliteDocumentStore, container: str, id: str) -> int | None:
    with sqlite3.connect(store.path) as conn:
        row = conn.execute(f"SELECT json_extract(body, '$.ttl') FROM c_{container} WHERE id = ?", (id,)).fetchone()
    return None if row is None else row[0]


def test_an_operational_document_expires_after_its_ttl_and_the_sweep_deletes_it(store, clock) -> None:
    written = store.create(WEBHOOK_ATTEMPTS, {"id": "a1", "pk": "acme:2027-01-15", "createdAt": "x"})
    assert "ttl" not in written
    assert stored_ttl(store, WEBHOOK_ATTEMPTS, "a1") == 2 * DAY_SECONDS  # the override, not the 30 days

    clock.now += 2 * DAY_SECONDS - 1
    assert store.read(WEBHOOK_ATTEMPTS, "acme:2027-01-15", "a1") is not None
    clock.now += 1
    assert store.read(WEBHOOK_ATTEMPTS, "acme:2027-01-15", "a1") is None
    assert read_many(store, WEBHOOK_ATTEMPTS, [("acme:2027-01-15", "a1")]) == [None]
    assert store.query(WEBHOOK_ATTEMPTS, Query(pk="acme:2027-01-15")) == []
    assert stored_ttl(store, WEBHOOK_ATTEMPTS, "a1") is not None  # hidden, not yet deleted

    assert store.sweep_expired() == 1
    assert stored_ttl(store, WEBHOOK_ATTEMPTS, "a1") is None
    assert store.sweep_expired() == 0


def test_the_ttl_counts_from_the_last_write(store, clock) -> None:
    doc = store.create(ORDER_STATUS, {"id": "o1", "pk": "acme:o1", "status": "accepted"})
    clock.now += 80 * DAY_SECONDS
    store.upsert(ORDER_STATUS, dict(doc, status="processed"))
    clock.now += 80 * DAY_SECONDS  # 160 days after the create, 80 after the last write: still there
    assert store.read(ORDER_STATUS, "acme:o1", "o1")["status"] == "processed"
    clock.now += 10 * DAY_SECONDS
    assert store.read(ORDER_STATUS, "acme:o1", "o1") is None


def test_a_live_document_never_expires_until_a_write_finishes_it(store, clock) -> None:
    claim = store.create(ORDER_STATUS, {"id": "o2", "pk": "acme:o2", "publishDue": "2027-01-01T00:00:00Z"})
    assert stored_ttl(store, ORDER_STATUS, "o2") == -1
    task = store.create(WEBHOOK_DELIVERIES, {"id": "d1", "pk": "acme:e1", "status": "pending"})
    clock.now += 400 * DAY_SECONDS
    assert store.read(ORDER_STATUS, "acme:o2", "o2") is not None
    assert store.query(WEBHOOK_DELIVERIES, Query(pk="acme:e1", filters=(Filter("status", "=", "pending"),)))
    assert store.sweep_expired() == 0

    store.upsert(ORDER_STATUS, {k: v for k, v in claim.items() if k != "publishDue"})
    store.upsert(WEBHOOK_DELIVERIES, dict(task, status="succeeded"))
    assert stored_ttl(store, ORDER_STATUS, "o2") == 90 * DAY_SECONDS
    assert stored_ttl(store, WEBHOOK_DELIVERIES, "d1") == 7 * DAY_SECONDS


def test_only_the_named_document_kinds_of_the_system_container_expire(store, clock) -> None:
    store.create(SYSTEM, {"id": "window", "pk": "ratelimit:acme", "docType": "ratelimit"})
    store.create(SYSTEM, {"id": "cursor", "pk": "projector", "docType": "workItem"})
    store.create(SYSTEM, {"id": "plain", "pk": "projector"})
    assert stored_ttl(store, SYSTEM, "cursor") == -1 and stored_ttl(store, SYSTEM, "plain") == -1
    clock.now += 3 * DAY_SECONDS
    assert store.read(SYSTEM, "ratelimit:acme", "window") is None
    assert store.read(SYSTEM, "projector", "cursor") is not None
    assert store.read(SYSTEM, "projector", "plain") is not None


def test_the_ledger_and_the_audit_log_never_carry_a_ttl(store, clock) -> None:
    store.create(LEDGER, {"id": "e1", "pk": "acme:c1", "docType": "entry", "seq": 1, "ttl": 5})
    store.create(AUDIT, {"id": "r1", "pk": "acme", "seq": 1})
    clock.now += 100 * 365 * DAY_SECONDS
    assert store.read(LEDGER, "acme:c1", "e1") is not None  # a stray ttl field is data, not an expiry
    assert store.read(AUDIT, "acme", "r1") is not None
    assert store.sweep_expired() == 0
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT json_type(body, '$.ttl') FROM c_audit").fetchall() == [(None,)]


def test_a_file_written_before_ttl_existed_opens_and_its_documents_never_expire(tmp_path, clock) -> None:
    path = tmp_path / "old.db"
    old = SqliteDocumentStore(path, CONTAINERS, synchronous="NORMAL", ttl=TtlPolicy(), clock=clock)
    old.close()
    with sqlite3.connect(path) as conn:  # as an earlier build left it: a row with no ttl at all
        conn.execute("INSERT INTO c_poison (pk, id, etag, ts, body) VALUES ('acme', 'p1', 'e', 1, '{\"id\":\"p1\"}')")
    again = SqliteDocumentStore(path, CONTAINERS, synchronous="NORMAL", clock=clock)
    try:
        assert again.read("poison", "acme", "p1") is not None
        assert again.sweep_expired() == 0
    finally:
        again.close()


def test_the_hourly_job_sweeps_the_platforms_store(tmp_path, clock) -> None:
    from shared.jobs import JOBS
    from shared.platform import build_platform
    from shared.settings import Settings

    store = SqliteDocumentStore(tmp_path / "job.db", CONTAINERS, synchronous="NORMAL", clock=clock)
    platform = build_platform(Settings.from_env({"ACCRUE_DATA_DIR": str(tmp_path / "data")}), store=store)
    try:
        [job] = [j for j in JOBS if j.name == "ttl-sweep"]
        store.create("poison", {"id": "p1", "pk": "acme", "docType": "poison"})
        assert job.run(platform) == 0
        clock.now += 91 * DAY_SECONDS
        assert job.run(platform) == 1
    finally:
        platform.close()


# --- invariant: a document is visible exactly while its last write's ttl runs ------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_steps = st.lists(st.tuples(st.sampled_from(["write", "finish", "wait"]), st.integers(0, 40)), max_size=25)


@settings(max_examples=40, deadline=None)
@given(_steps)
def test_visibility_follows_the_last_writes_ttl(tmp_path_factory, steps) -> None:
    clock = Clock()
    store = SqliteDocumentStore(tmp_path_factory.mktemp("ttl") / "p.db", CONTAINERS, synchronous="NORMAL",
                                clock=clock)
    try:
        expires: float | None = None  # None: absent; inf: never
        for action, days in steps:
            if action == "wait":
                clock.now += days * DAY_SECONDS / 4
            else:
                status = "pending" if action == "write" else "succeeded"
                store.upsert(WEBHOOK_DELIVERIES, {"id": "d", "pk": "t:e", "status": status})
                expires = float("inf") if status == "pending" else clock.now + 7 * DAY_SECONDS
            visible = store.read(WEBHOOK_DELIVERIES, "t:e", "d") is not None
            assert visible == (expires is not None and clock.now < expires)
            assert bool(store.query(WEBHOOK_DELIVERIES, Query(pk="t:e"))) == visible
            if not visible and expires is not None:
                store.sweep_expired()
                expires = None  # swept: a later write creates it anew
    finally:
        store.close()


def test_an_expired_document_can_be_created_anew_before_the_sweep(store, clock) -> None:
    """As in Cosmos DB: expired means gone, for writers too (the rate-limit window and the
    velocity counters read, find nothing, and create)."""
    store.create(SYSTEM, {"id": "window", "pk": "ratelimit:acme", "docType": "ratelimit", "n": 1})
    clock.now += 3 * DAY_SECONDS
    assert store.read(SYSTEM, "ratelimit:acme", "window") is None
    again = store.create(SYSTEM, {"id": "window", "pk": "ratelimit:acme", "docType": "ratelimit", "n": 2})
    assert store.read(SYSTEM, "ratelimit:acme", "window")["_etag"] == again["_etag"]
    store.batch(SYSTEM, "ratelimit:acme", [Create({"id": "w2", "pk": "ratelimit:acme", "docType": "ratelimit"})])
    clock.now += 3 * DAY_SECONDS
    with pytest.raises(StoreError, match="not found"):
        store.delete(SYSTEM, "ratelimit:acme", "w2")
    # A live document still refuses a second create.
    store.create(SYSTEM, {"id": "cursor", "pk": "projector"})
    with pytest.raises(DocumentExists):
        store.create(SYSTEM, {"id": "cursor", "pk": "projector"})
