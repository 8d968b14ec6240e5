"""The import job under crashes and re-runs: a worker killed mid-chunk (after some of
the chunk's ledger writes, before its cursor is stored) is taken over from the stored
cursor and the totals are exact; and (property) importing a file again, whole or
resumed at any slice boundary, changes nothing."""

from __future__ import annotations

import itertools
from datetime import timedelta

from hypothesis import HealthCheck, example, given, settings, strategies as st

from shared.imports import service
from shared.jobs import work_items
from tests.conftest import add_customer, make_tenant
from tests.unit.imports.conftest import finish, ledger_docs, ndjson, run_import, start_import


class Killed(BaseException):
    """The worker process dying: nothing catches it."""


def _rows(count: int) -> list[dict]:
    return [{"orderId": f"k{n}", "customerId": f"c{1 + n % 3}", "amount": "1.00", "currency": "EUR",
             "timestamp": "2025-06-01T00:00:00Z", "points": n} for n in range(1, count + 1)]


def test_a_worker_killed_mid_chunk_is_resumed_with_exact_totals(platform, tenant, clock, monkeypatch) -> None:
    monkeypatch.setattr(service, "ROWS_PER_CHUNK", 7)
    monkeypatch.setattr(service, "ROWS_PER_SLICE", 20)
    rows = _rows(100)
    import_id = start_import(platform, "acme", ndjson(rows), kind="orders")
    original = platform.ledger.append
    calls = itertools.count(1)

    def dying_append(requests):
        outcomes = original(requests)
        if next(calls) == 5:  # the 5th chunk is written: the worker dies before the cursor is stored
            raise Killed()
        return outcomes

    monkeypatch.setattr(platform.ledger, "append", dying_append)
    queue = work_items(platform)
    try:
        queue.run(max_items=1)
        raise AssertionError("the worker should have died")
    except Killed:
        pass
    monkeypatch.setattr(platform.ledger, "append", original)
    status = platform.imports.status("acme", import_id)
    assert status["status"] == "running" and 0 < status["rowsDone"] < 100
    clock.advance(queue.lease + timedelta(seconds=1))  # the dead worker's lease runs out
    finish(platform)
    status = platform.imports.status("acme", import_id)
    assert status["status"] == "done" and status["rowsDone"] == 100 and status["rowsFailed"] == 0
    total = sum(r["points"] for r in rows)
    heads = [platform.ledger.head("acme", f"c{n}") for n in (1, 2, 3)]
    assert sum(h.balance for h in heads) == total
    assert sum(h.orders_credited for h in heads) == 100 and sum(h.seq for h in heads) == 100


_tenants = itertools.count(1)

row = st.builds(
    lambda n, customer, points, bad: ({"orderId": f"p{n}", "customerId": customer, "amount": "3.00",
                                       "currency": "EUR", "timestamp": "2025-01-01T00:00:00Z", "points": points}
                                      if not bad else {"orderId": f"p{n}", "customerId": customer}),
    st.integers(1, 40), st.sampled_from(["c1", "c2", "nobody"]), st.integers(0, 1000), st.booleans())


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(row, min_size=1, max_size=30), slice_rows=st.integers(1, 12))
# An order id on a failing row and again on a good one: the good one is credited whatever the
# slices (found by this test in CI when a chunk's twin check counted the failing row).
@example(rows=[{"orderId": "p1", "customerId": "nobody", "amount": "3.00", "currency": "EUR",
                "timestamp": "2025-01-01T00:00:00Z", "points": 1},
               {"orderId": "p1", "customerId": "c1", "amount": "3.00", "currency": "EUR",
                "timestamp": "2025-01-01T00:00:00Z", "points": 2}], slice_rows=1)
def test_import_re_runs_change_nothing(platform, rows, slice_rows) -> None:
    tenant_id = f"prop{next(_tenants)}"
    make_tenant(platform, tenant_id)
    for customer in ("c1", "c2"):
        add_customer(platform, tenant_id, customer)
    data = ndjson(rows)
    first = run_import(platform, tenant_id, data, kind="orders")
    after_first = ledger_docs(platform, tenant_id)
    # Again, whole: the same rows done and failed, the ledger untouched.
    second = run_import(platform, tenant_id, data, kind="orders")
    assert (second["rowsDone"], second["rowsFailed"]) == (first["rowsDone"], first["rowsFailed"])
    assert ledger_docs(platform, tenant_id) == after_first
    # Again, in slices of any size (each slice resumes from the stored offset).
    import_id = start_import(platform, tenant_id, data, kind="orders")
    cursor, params = None, {"tenantId": tenant_id, "importId": import_id}
    for _ in range(1000):
        step = platform.imports.run_slice(params, cursor, max_rows=slice_rows)
        cursor = step.cursor
        if step.done:
            break
    assert step.result["rowsDone"] == first["rowsDone"] and step.result["rowsFailed"] == first["rowsFailed"]
    assert ledger_docs(platform, tenant_id) == after_first
