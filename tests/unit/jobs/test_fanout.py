"""The fan-out jobs (shared/jobs.py): the nightly reconcile and exports timers only
enqueue a work item per tenant and day; the work-items timer runs them in bounded
slices. A worker killed mid-way (between slices, or inside an export file's write)
is resumed from the stored cursor, and the effects are exact: every export file
written once (the one whose write died: once more), reconciliation counted once."""

from __future__ import annotations

from collections import Counter as Tally
from datetime import timedelta
from typing import Any, Mapping

import pytest

import shared.app.reconcile as reconcile_module
from shared.app.reconcile import reconcile
from shared.blobs.local import LocalBlobSink
from shared.blobs.port import BlobUnavailable
from shared.exports.service import SUBJECTS, ExportService
from shared.jobs import BY_NAME, handlers
from shared.workitems import DONE, Step, WorkItems, item_id
from tests.conftest import add_customer, auth, drain, order_body


@pytest.fixture(autouse=True)
def _ndjson_exports(monkeypatch):  # type: ignore[no-untyped-def]
    """These tests count the NDJSON option's files per run (one per subject); the resumable
    slices are the same for Parquet (tests/unit/exports/test_parquet_exports.py)."""
    from shared.exports import service

    monkeypatch.setattr(service, "DEFAULT_FORMAT", "ndjson")


class Killed(BaseException):
    """The worker process dying: nothing catches it."""


class CountingSink(LocalBlobSink):
    def __init__(self, root, fail_on: str = "") -> None:  # type: ignore[no-untyped-def]
        super().__init__(root)
        self.puts: Tally[str] = Tally()
        self.fail_on = fail_on

    def put(self, path, chunks, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.fail_on and self.fail_on in path:
            for _ in chunks:  # dies midway through the stream
                break
            raise BlobUnavailable("injected: blob store down")
        self.puts[path] += 1
        return super().put(path, chunks, *args, **kwargs)


def killing(platform: Any, after_calls: set[int]) -> WorkItems:
    """The platform's work items, with a handler that kills the worker right after the
    given slices (their effects done, their cursor not yet stored)."""
    real = handlers(platform)
    calls = {"n": 0}

    def wrap(kind: str):  # type: ignore[no-untyped-def]
        def handler(params: Mapping[str, Any], cursor: Any) -> Step:
            step = real[kind](params, cursor)
            calls["n"] += 1
            if calls["n"] in after_calls:
                raise Killed()
            return step
        return handler

    return WorkItems(platform.store, platform.clock, {kind: wrap(kind) for kind in real})


def run_until_done(platform: Any, items: WorkItems, rounds: int = 50) -> None:
    for _ in range(rounds):
        try:
            items.run()
        except Killed:
            platform.clock.advance(timedelta(minutes=4))  # the dead worker's lease runs out
            continue
        if not items.due(limit=1):
            return
    raise AssertionError("the work items did not finish")


@pytest.fixture
def shop(platform, tenant, other_tenant, client):  # type: ignore[no-untyped-def]
    for n in range(4, 8):
        add_customer(platform, "acme", f"c{n}")
    for n, customer in enumerate(["c1", "c2", "c3", "c4", "c5", "c6", "c7", "c1"]):
        assert client.post("/v1/orders", json=order_body(customer, f"o{n}"),
                           headers=auth(tenant.merchant)).status_code == 202
    assert client.post("/v1/orders", json=order_body("c1", "g1"), headers=auth(other_tenant.merchant)).status_code == 202
    drain(platform)
    return platform


def test_the_nightly_timers_only_enqueue_one_item_per_tenant_and_day(shop, monkeypatch) -> None:  # type: ignore
    import shared.jobs as jobs

    platform = shop
    monkeypatch.setattr(jobs, "TENANTS_PER_FAN_OUT_SLICE", 1)  # a page of one tenant: the fan-out resumes too
    first = BY_NAME["reconcile"].run(platform)
    again = BY_NAME["reconcile"].run(platform)  # a second firing the same day adds nothing
    assert first["enqueued"] is True and again["enqueued"] is False
    BY_NAME["exports"].run(platform)
    items = BY_NAME["work-items"].run(platform)
    generation = platform.clock.now().strftime("%Y-%m-%d")
    assert sorted(items.finished) == sorted(
        [item_id("fan-out", kind, generation) for kind in ("reconcile", "export")]
        + [item_id(kind, tenant, generation) for kind in ("reconcile", "export") for tenant in ("acme", "globex")])
    fan_out = platform.store.read("system", "workitems", item_id("fan-out", "reconcile", generation))
    assert fan_out["result"] == {"enqueued": 2} and fan_out["slices"] >= 2
    assert BY_NAME["work-items"].run(platform).claimed == 0
    # The next day's firing enqueues again.
    platform.clock.advance(timedelta(days=1))
    assert BY_NAME["reconcile"].run(platform)["enqueued"] is True
    assert len(BY_NAME["work-items"].run(platform).finished) == 3


def test_reconciliation_killed_between_slices_resumes_and_counts_each_customer_once(
        shop, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    platform = shop
    monkeypatch.setattr(reconcile_module, "SLICE_PARTITIONS", 2)
    monkeypatch.setattr(reconcile_module.reconcile_slice, "__defaults__", (2,))
    expected = reconcile(platform.store, "acme")
    assert expected.customers == 7 and expected.entries == 8 and expected.ok

    BY_NAME["reconcile"].run(platform)
    items = killing(platform, after_calls={2, 3})  # dies twice in a row, mid-way through acme
    run_until_done(platform, items)

    generation = platform.clock.now().strftime("%Y-%m-%d")
    acme = platform.store.read("system", "workitems", item_id("reconcile", "acme", generation))
    assert acme["status"] == DONE
    assert acme["result"] == {"ok": True, "customers": 7, "entries": 8, "stale": 0, "drifts": 0}
    assert acme["slices"] >= 4  # 7 partitions, 2 a slice, then the balance pass
    globex = platform.store.read("system", "workitems", item_id("reconcile", "globex", generation))
    assert globex["result"]["customers"] == 1


def test_an_export_killed_between_files_resumes_and_writes_each_file_once(shop, tmp_path) -> None:  # type: ignore
    platform = shop
    sink = CountingSink(tmp_path / "exports")
    platform.exports = ExportService(platform.store, platform.clock, platform.key_provider, sink,
                                     vault=platform.vault)
    platform.clock.advance(timedelta(minutes=5))
    BY_NAME["exports"].run(platform)
    items = killing(platform, after_calls={3, 4, 9})  # between files 3 and 4, 4 and 5, and again later
    run_until_done(platform, items)

    for tenant_id in ("acme", "globex"):
        state = platform.store.read("exports", tenant_id, "state")
        assert state["pending"] is None and set(state["watermarks"]) == set(SUBJECTS)
        run_id = state["lastRunId"]
        written = {p: n for p, n in sink.puts.items() if p.startswith(f"{tenant_id}/incremental/")}
        assert written == {**{f"{tenant_id}/incremental/{run_id}/{s}.ndjson.gz": 1 for s in SUBJECTS},
                           f"{tenant_id}/incremental/{run_id}/manifest.json": 1}
        runs = platform.exports.runs(tenant_id)
        assert [r["runId"] for r in runs] == [run_id]
    acme = platform.exports.runs("acme")[0]
    assert acme["rows"]["orders"] == 8 and acme["rows"]["transactions"] == 8


def test_an_export_whose_file_write_dies_redoes_that_file_only(shop, tmp_path) -> None:  # type: ignore
    platform = shop
    sink = CountingSink(tmp_path / "exports", fail_on="acme/incremental/")
    platform.exports = ExportService(platform.store, platform.clock, platform.key_provider, sink,
                                     vault=platform.vault)
    platform.clock.advance(timedelta(minutes=5))
    BY_NAME["exports"].run(platform)
    items = WorkItems(platform.store, platform.clock, handlers(platform))
    # Let acme write its first two files, then the blob store fails on the third.
    real_put = sink.put
    allowed = {"n": 2}

    def put(path, chunks, *args, **kwargs):  # type: ignore[no-untyped-def]
        if path.startswith("acme/") and allowed["n"] > 0:
            allowed["n"] -= 1
            sink.puts[path] += 1
            return LocalBlobSink.put(sink, path, chunks, *args, **kwargs)
        return real_put(path, chunks, *args, **kwargs)

    sink.put = put  # type: ignore[method-assign]
    report = items.run()
    assert item_id("export", "acme", platform.clock.now().strftime("%Y-%m-%d")) in report.failed
    state = platform.store.read("exports", "acme", "state")
    assert [f["subject"] for f in state["pending"]["files"]] == list(SUBJECTS[:2])

    sink.fail_on = ""
    platform.clock.advance(timedelta(seconds=31))  # the retry's back-off
    items.run()
    run_id = platform.store.read("exports", "acme", "state")["lastRunId"]
    written = {p: n for p, n in sink.puts.items() if p.startswith("acme/")}
    assert written == {**{f"acme/incremental/{run_id}/{s}.ndjson.gz": 1 for s in SUBJECTS},
                       f"acme/incremental/{run_id}/manifest.json": 1}


def test_operators_list_parked_items_and_retry_them_from_the_cli(shop, monkeypatch, capsys) -> None:  # type: ignore
    import json

    from shared.local.__main__ import main as local_main

    from shared.jobs import work_items

    platform = shop
    generation = platform.clock.now().strftime("%Y-%m-%d")
    work_items(platform).enqueue("reconcile", "acme", generation, {"tenantId": "acme", "generation": generation})
    parked = item_id("reconcile", "acme", generation)
    doc = platform.store.read("system", "workitems", parked)
    platform.store.upsert("system", dict(doc, status="parked", attempts=5, lastError="RuntimeError: boom",
                                         dueAt=None), if_match=doc["_etag"])
    monkeypatch.setenv("ACCRUE_DATA_DIR", str(platform.settings.data_dir))
    assert local_main(["jobs", "list", "--status", "parked"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["id"] == parked and json.loads(line)["lastError"] == "RuntimeError: boom"
    assert local_main(["jobs", "retry", parked]) == 0
    assert local_main(["jobs", "run"]) == 0
    assert platform.store.read("system", "workitems", parked)["status"] == DONE
    assert local_main(["jobs", "retry", "work:nope"]) == 2


def _all_rows(platform, manifest, subject):  # type: ignore[no-untyped-def]
    import gzip
    import json

    rows = []
    for entry in (f for f in manifest["files"] if f["subject"] == subject):
        plain = b"".join(platform.exports.file_plaintext(manifest["tenantId"], manifest, entry))
        rows += [json.loads(line) for line in gzip.decompress(plain).splitlines()]
    return rows


def test_a_big_tenant_is_exported_in_bounded_parts_each_row_once_even_when_killed(shop, tmp_path) -> None:  # type: ignore
    import json

    platform = shop
    sink = CountingSink(tmp_path / "exports")
    platform.exports = ExportService(platform.store, platform.clock, platform.key_provider, sink,
                                     vault=platform.vault, part_customers=2)
    platform.clock.advance(timedelta(minutes=5))
    BY_NAME["exports"].run(platform)
    run_until_done(platform, killing(platform, after_calls={2, 5, 6, 11}))

    state = platform.store.read("exports", "acme", "state")
    run_id = state["lastRunId"]
    manifest = json.loads(sink.read(f"acme/incremental/{run_id}/manifest.json"))
    parts = [(f["subject"], f["part"]) for f in manifest["files"] if f["subject"] == "transactions"]
    assert parts == [("transactions", n) for n in (1, 2, 3, 4)]  # 7 customers, 2 a part
    assert [f["complete"] for f in manifest["files"] if f["subject"] == "transactions"] == [False] * 3 + [True]
    orders = sorted(r["referenceOrderId"] for r in _all_rows(platform, manifest, "transactions"))
    assert orders == [f"o{n}" for n in range(8)]  # every row once, across the parts
    assert all(n == 1 for p, n in sink.puts.items() if p.startswith("acme/"))  # every part written once
    assert platform.exports.runs("acme")[0]["rows"]["transactions"] == 8


def test_every_slice_killed_once_after_its_effects_still_gives_exact_effects(shop, tmp_path) -> None:  # type: ignore
    # The worst case for redone slices: every slice's effects happen, then the worker dies before
    # the item notes them, and the slice runs again (the last export slice too: the run key
    # returns the finished run instead of starting another).
    platform = shop
    sink = CountingSink(tmp_path / "exports")
    platform.exports = ExportService(platform.store, platform.clock, platform.key_provider, sink,
                                     vault=platform.vault, part_customers=3)
    platform.clock.advance(timedelta(minutes=5))
    BY_NAME["reconcile"].run(platform)
    BY_NAME["exports"].run(platform)
    run_until_done(platform, killing(platform, after_calls=set(range(1, 400, 2))), rounds=400)

    generation = platform.clock.now().strftime("%Y-%m-%d")
    for tenant_id, customers, entries in (("acme", 7, 8), ("globex", 1, 1)):
        item = platform.store.read("system", "workitems", item_id("reconcile", tenant_id, generation))
        assert item["result"] == {"ok": True, "customers": customers, "entries": entries, "stale": 0, "drifts": 0}
        assert len(platform.exports.runs(tenant_id)) == 1  # one run, not one per redone last slice
        written = [n for p, n in sink.puts.items() if p.startswith(f"{tenant_id}/")]
        assert written and all(n == 1 for n in written)
