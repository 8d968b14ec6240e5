"""Writes that can race, fired ~20 at once: the same file imported by 20 imports at
the same moment (each row applied once), one order id imported for 20 customers at once
(one credited), 20 concurrent birthday runs (one award), and
20 uploads of one import's file (one whole file stored, the others refused)."""

from __future__ import annotations

from datetime import datetime, timezone

from shared.app.customers import CustomerProfile
from shared.occasions.service import OccasionSettings
from tests.conftest import auth, run_in_threads
from tests.unit.imports.conftest import finish, ndjson, start_import

N = 20


def _run_at_once(platform, ids: list[str]) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """Each import run to its end in slices of 25 rows, all in threads at once; their results."""
    results: dict[str, dict] = {}

    def run(import_id: str) -> None:
        cursor, params = None, {"tenantId": "acme", "importId": import_id}
        while True:
            step = platform.imports.run_slice(params, cursor, max_rows=25)
            cursor = step.cursor
            if step.done:
                results[import_id] = step.result
                return

    run_in_threads(run, [(i,) for i in ids], timeout=120)
    return results


def test_twenty_concurrent_imports_of_one_file_apply_each_row_once(platform, tenant) -> None:
    rows = [{"orderId": f"r{n}", "customerId": f"c{1 + n % 3}", "amount": "2.00", "currency": "EUR",
             "timestamp": "2025-03-03T03:03:03Z", "points": n} for n in range(60)]
    ids = [start_import(platform, "acme", ndjson(rows), kind="orders") for _ in range(N)]
    results = _run_at_once(platform, ids)
    assert len(results) == N and all(r["rowsDone"] == 60 and r["rowsFailed"] == 0 for r in results.values())
    heads = [platform.ledger.head("acme", f"c{n}") for n in (1, 2, 3)]
    assert sum(h.balance for h in heads) == sum(range(60)) and sum(h.seq for h in heads) == 60


def test_twenty_concurrent_imports_of_one_order_id_for_different_customers_credit_one(platform,
                                                                                      tenant) -> None:  # type: ignore
    """Twenty variants with the same key: each import credits order ``h1`` to a customer of its
    own. The order id's claim lets exactly one through; every other import reports the row."""
    for n in range(N):
        platform.customers.register("acme", CustomerProfile(customerId=f"v{n}", joinDate="2024-01-01"))
    ids = [start_import(platform, "acme", ndjson([{"orderId": "h1", "customerId": f"v{n}", "amount": "2.00",
                                                   "currency": "EUR", "timestamp": "2025-03-03T03:03:03Z",
                                                   "points": 7}]), kind="orders") for n in range(N)]
    results = _run_at_once(platform, ids)
    assert sorted(r["rowsDone"] for r in results.values()) == [0] * (N - 1) + [1]
    heads = [platform.ledger.head("acme", f"v{n}") for n in range(N)]
    assert sum(h.balance for h in heads) == 7 and sum(h.orders_credited for h in heads) == 1


def test_twenty_concurrent_imports_of_one_award_id_for_different_customers_pay_one(platform,
                                                                                    tenant) -> None:  # type: ignore
    """The same for an award id (claimed per tenant since stop 35): exactly one customer is paid,
    every other import reports the row, and twenty copies of one award pay it once."""
    for n in range(N):
        platform.customers.register("acme", CustomerProfile(customerId=f"w{n}", joinDate="2024-01-01"))
    ids = [start_import(platform, "acme", ndjson([{"awardId": "g1", "customerId": f"w{n}", "points": 9,
                                                   "reason": "goodwill"}]), kind="awards") for n in range(N)]
    results = _run_at_once(platform, ids)
    assert sorted(r["rowsDone"] for r in results.values()) == [0] * (N - 1) + [1]
    assert sum(platform.ledger.head("acme", f"w{n}").balance for n in range(N)) == 9
    same = [start_import(platform, "acme", ndjson([{"awardId": "g2", "customerId": "c1", "points": 4,
                                                    "reason": "goodwill"}]), kind="awards") for _ in range(N)]
    results = _run_at_once(platform, same)
    assert all(r["rowsDone"] == 1 and r["rowsFailed"] == 0 for r in results.values())
    assert platform.ledger.head("acme", "c1").balance == 4


def test_twenty_concurrent_birthday_runs_award_once(platform, tenant, clock) -> None:
    platform.occasions.save_settings("acme", OccasionSettings(birthdayPoints=10))
    for n in range(5):
        platform.customers.register("acme", CustomerProfile(customerId=f"b{n}", joinDate="2024-01-01",
                                                            birthDate="1990-12-24"))
    clock.advance(datetime(2026, 12, 24, 12, tzinfo=timezone.utc) - clock.now())
    awarded: list[int] = []
    run_in_threads(lambda: awarded.append(platform.occasions.run_tenant("acme")["awarded"]), [()] * N,
                   timeout=120)
    assert len(awarded) == N and sum(awarded) == 5
    assert all(platform.ledger.head("acme", f"b{n}").balance == 10 for n in range(5))


def test_twenty_concurrent_uploads_of_one_imports_file_store_one_whole_file(client, platform, tenant) -> None:
    made = client.post("/v1/imports", headers=auth(tenant.admin), json={"kind": "awards", "format": "ndjson"})
    assert made.status_code == 201, made.text
    import_id = made.json()["importId"]
    bodies = [b"".join(b'{"awardId":"a%d-%d","customerId":"c1","points":%d,"reason":"welcome"}\n' % (n, i, n + 1)
                       for i in range(50)) for n in range(N)]
    answers: dict[int, object] = {}

    def upload(n: int) -> None:
        answers[n] = client.put(f"/v1/imports/{import_id}/file", content=bodies[n],
                                headers={**auth(tenant.admin), "Content-Type": "application/octet-stream"})

    run_in_threads(upload, [(n,) for n in range(N)], timeout=120)
    codes = sorted(r.status_code for r in answers.values())  # type: ignore[attr-defined]
    assert codes == [200] + [409] * (N - 1), codes
    winner = next(n for n, r in answers.items() if r.status_code == 200)  # type: ignore[attr-defined]
    doc = platform.imports.status("acme", import_id)
    assert doc["status"] == "uploaded" and doc["bytesTotal"] == len(bodies[winner])
    # The file is the winner's, whole: starting the import applies its 50 rows, no one else's.
    assert client.post(f"/v1/imports/{import_id}/start", headers=auth(tenant.admin)).status_code in (200, 202)
    finish(platform)
    assert platform.ledger.head("acme", "c1").balance == 50 * (winner + 1)
