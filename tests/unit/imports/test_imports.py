"""Imports (shared/imports): rows keep their instants and are marked imported, each row
is idempotent by its key, bad rows are reported by line, all-or-nothing applies
nothing for one bad row, personal fields are sealed as through the API, and
evaluate=true earns by the rules active at each order's time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shared.errors import Conflict, ValidationFailed
from shared.imports.rows import KINDS
from shared.imports.service import ImportSpec
from shared.store.layout import CUSTOMERS, LEDGER, customer_pk
from shared.store.port import Filter, Query
from shared.workitems import DEFAULT_LEASE
from tests.conftest import Died
from tests.unit.imports.conftest import finish, ledger_docs, ndjson, run_import, start_import


def _order(n: int, customer: str = "c1", points: int = 5, day: int = 1, **extra) -> dict:
    return {"orderId": f"h{n}", "customerId": customer, "amount": "12.50", "currency": "EUR",
            "timestamp": f"2024-03-{day:02d}T10:00:00Z", "points": points, **extra}


def test_historical_orders_keep_their_time_and_are_marked_imported(platform, tenant) -> None:
    status = run_import(platform, "acme", ndjson([_order(1, day=1), _order(2, day=5, points=7),
                                                  _order(3, "c2", day=9)]), kind="orders")
    assert status["status"] == "done" and status["rowsDone"] == 3 and status["rowsFailed"] == 0
    entries = platform.ledger.entries("acme", "c1", newest_first=False)
    assert [e["createdAt"][:10] for e in entries] == ["2024-03-01", "2024-03-05"]
    assert all(e["imported"] and e["recordedAt"].startswith("2026-11-01") for e in entries)
    assert platform.ledger.head("acme", "c1").balance == 12
    assert platform.ledger.head("acme", "c1").orders_credited == 2
    # The balance as of a date before the import reflects the history.
    as_of = platform.ledger.head_as_of("acme", "c1", datetime(2024, 3, 3, tzinfo=timezone.utc))
    assert as_of.balance == 5
    record = platform.ledger.record("acme", "c1", "order-h2")
    assert record["status"] == "credited" and record["imported"] is True and record["points"] == 7


def test_a_second_run_of_the_same_file_changes_nothing(platform, tenant) -> None:
    data = ndjson([_order(n, f"c{1 + n % 3}", points=n) for n in range(1, 40)])
    first = run_import(platform, "acme", data, kind="orders")
    before = ledger_docs(platform, "acme")
    second = run_import(platform, "acme", data, kind="orders")
    assert first["rowsDone"] == second["rowsDone"] == 39
    assert ledger_docs(platform, "acme") == before


def test_bad_rows_are_reported_by_line_and_the_others_proceed(platform, tenant) -> None:
    data = (ndjson([_order(1)]) + b"not json\n" + ndjson([_order(2, customer="nobody"), {"orderId": "x"}]) + b"\n"
            + ndjson([_order(3, currency="USD"), _order(4, day=2, points=-1), _order(5)]))
    status = run_import(platform, "acme", data, kind="orders")
    assert status["status"] == "done" and status["rowsDone"] == 2 and status["rowsFailed"] == 5
    errors = platform.imports.errors("acme", status["importId"])
    assert [e["line"] for e in errors] == [2, 3, 4, 6, 7]
    by_line = {e["line"]: e["errors"] for e in errors}
    assert "not JSON" in by_line[2][0]["reason"]
    assert "does not exist" in by_line[3][0]["reason"] and by_line[3][0]["field"] == "customerId"
    assert {e["field"] for e in by_line[4]} >= {"customerId", "amount", "timestamp"}
    assert by_line[6][0]["field"] == "currency"
    assert by_line[7][0]["field"] == "points"
    report = "".join(platform.imports.error_report("acme", status["importId"]))
    assert report.splitlines()[0] == "line,field,reason" and report.count("\n") == 1 + sum(
        len(v) for v in by_line.values())
    assert platform.ledger.head("acme", "c1").balance == 10


def test_all_or_nothing_applies_nothing_when_one_row_is_bad(platform, tenant) -> None:
    rows = [_order(n) for n in range(1, 30)] + [_order(99, customer="nobody")]
    status = run_import(platform, "acme", ndjson(rows), kind="orders", mode="all-or-nothing")
    assert status["status"] == "rejected" and status["rowsDone"] == 0 and status["rowsFailed"] == 1
    assert "nothing was applied" in status["reason"]
    assert ledger_docs(platform, "acme") == []
    good = run_import(platform, "acme", ndjson(rows[:-1]), kind="orders", mode="all-or-nothing")
    assert good["status"] == "done" and good["rowsDone"] == 29 and good["rowsValidated"] == 29
    assert platform.ledger.head("acme", "c1").balance == 29 * 5


def test_the_same_order_with_other_content_is_refused(platform, tenant) -> None:
    run_import(platform, "acme", ndjson([_order(1, points=5)]), kind="orders")
    status = run_import(platform, "acme", ndjson([_order(1, points=50)]), kind="orders")
    assert status["rowsFailed"] == 1
    assert "already imported with other content" in platform.imports.errors("acme", status["importId"])[0][
        "errors"][0]["reason"]
    assert platform.ledger.head("acme", "c1").balance == 5


def test_customers_from_csv_are_sealed_as_through_the_api(platform, tenant) -> None:
    data = (b"customerId,joinDate,email,birthDate,tags,postalAddress.lines,postalAddress.city,postalAddress.country\n"
            b"n1,2020-01-02,Ann@Example.com,1990-04-05,gold;vip,1 Rue A;Bat B,Paris,FR\n"
            b"n2,2021-06-07,,,,,,\n"
            b"n3,not-a-date,bad-email,,,,,\n")
    status = run_import(platform, "acme", data, kind="customers", format="csv")
    assert status["rowsDone"] == 2 and status["rowsFailed"] == 1
    errors = platform.imports.errors("acme", status["importId"])
    assert errors[0]["line"] == 4 and {e["field"] for e in errors[0]["errors"]} == {"joinDate", "email"}
    assert "bad-email" not in str(errors)  # reasons never echo a value
    doc = platform.store.read(CUSTOMERS, customer_pk("acme", "n1"), "n1")
    assert "Ann@Example.com".lower() not in str(doc).lower() and "1990" not in str(doc)
    assert set(doc["personal"]) == {"email", "birthDate", "postalAddress"} and doc["tags"] == ["gold", "vip"]
    assert platform.vault.open(doc)["postalAddress"]["lines"] == ["1 Rue A", "Bat B"]
    assert platform.vault.find_by_email("acme", "ann@example.com") == "n1"
    again = run_import(platform, "acme", data, kind="customers", format="csv")
    assert again["rowsDone"] == 2  # done before: nothing new


def test_opening_balances_and_awards(platform, tenant) -> None:
    run_import(platform, "acme", ndjson([{"customerId": "c1", "points": 300, "asOf": "2023-12-31T23:00:00Z"}]),
               kind="opening-balances")
    run_import(platform, "acme", ndjson([{"awardId": "a1", "customerId": "c1", "points": 20, "reason": "sorry"},
                                         {"awardId": "a2", "customerId": "c2", "points": 5, "reason": "promo",
                                          "awardedAt": "2025-01-01T00:00:00Z"}]), kind="awards")
    run_import(platform, "acme", ndjson([{"customerId": "c1", "points": 300, "asOf": "2023-12-31T23:00:00Z"}]),
               kind="opening-balances")
    assert platform.ledger.head("acme", "c1").balance == 320
    assert platform.ledger.head("acme", "c2").lifetime_earned == 5
    opening = platform.ledger.entries("acme", "c1", newest_first=False)[0]
    assert opening["entryType"] == "ADJUST" and opening["createdAt"].startswith("2023-12-31") and opening["imported"]


def test_evaluate_earns_by_the_rules_of_each_orders_time(platform, tenant) -> None:
    # No rule set was ever active: the tenant's interim rate (10 points a unit).
    status = run_import(platform, "acme", ndjson([_order(1, points=None), _order(2, points=1)]), kind="orders",
                        evaluate=True)
    assert status["rowsDone"] == 2
    assert [e["signedAmount"] for e in platform.ledger.entries("acme", "c1", newest_first=False)] == [125, 125]


def test_the_spec_is_checked_before_anything_is_written(platform, tenant) -> None:
    with pytest.raises(ValidationFailed):
        platform.imports.create("acme", ImportSpec(kind="nope"), None)
    with pytest.raises(ValidationFailed):
        platform.imports.create("acme", ImportSpec(kind="customers", evaluate=True), None)
    created = platform.imports.create("acme", ImportSpec(kind="orders"), None)
    with pytest.raises(Conflict):
        platform.imports.start("acme", created["importId"], None)  # no file yet
    assert created["status"] == "awaiting-upload"


def test_another_area_can_register_a_row_kind(platform, tenant) -> None:
    from pydantic import BaseModel

    from shared.imports.rows import RowKind, register

    class Code(BaseModel):
        code: str

    seen: list[str] = []
    register(RowKind("test-codes", Code, lambda ctx, rows: seen.extend(r.code for _, r in rows) or [],
                     ledger=False))
    try:
        status = run_import(platform, "acme", ndjson([{"code": "A"}, {"code": "B"}]), kind="test-codes")
    finally:
        del KINDS["test-codes"]
    assert status["rowsDone"] == 2 and seen == ["A", "B"]


def test_progress_reports_rate_and_eta(platform, tenant, clock, monkeypatch) -> None:
    from shared.imports import service
    from tests.unit.imports.conftest import start_import

    import_id = start_import(platform, "acme", ndjson([_order(n) for n in range(1, 101)]), kind="orders")
    params = {"tenantId": "acme", "importId": import_id}
    step = platform.imports.run_slice(params, None, max_rows=40)
    # The work item is what the status reads: store the cursor as the runner would.
    from shared.jobs import work_items
    from shared.workitems import WORK_PK, item_id

    item = platform.store.read("system", WORK_PK, item_id(service.WORK_KIND, import_id, service.WORK_GENERATION))
    platform.store.upsert("system", dict(item, cursor=step.cursor, status="running"))
    clock.advance(timedelta(seconds=4))
    status = platform.imports.status("acme", import_id)
    assert status["status"] == "running" and status["rowsDone"] == 40
    assert status["ratePerSecond"] == 10.0 and status["etaSeconds"] == pytest.approx(6.0, rel=0.05)
    assert work_items(platform) is not None
    _ = LEDGER, Filter, Query


def test_evaluate_applies_the_version_active_at_each_orders_time_or_a_named_one(platform, tenant, clock) -> None:
    from shared.rules import models

    reason = models.Reason(code="campaign", text="history test")

    def activate(source: str) -> int:
        saved = platform.rule_sets.save_version("acme", models.SaveVersionInput(
            rule_set_id="main", source=source, reason=reason), actor="key-admin")
        platform.rule_sets.activate("acme", models.ActivateInput(
            target=models.VersionRef(rule_set_id="main", version=saved.version), reason=reason), actor="key-admin")
        return saved.version

    activate('rule "base" then earn floor(order.total) points')          # 2026-11-01: v1
    clock.advance(timedelta(days=30))
    v2 = activate('rule "base" then earn floor(order.total * 2) points')  # 2026-12-01: v2
    clock.advance(timedelta(days=30))
    rows = [_order(1, timestamp="2026-10-01T00:00:00Z"), _order(2, timestamp="2026-11-15T00:00:00Z"),
            _order(3, timestamp="2026-12-15T00:00:00Z")]
    run_import(platform, "acme", ndjson(rows), kind="orders", evaluate=True)
    got = {e["referenceOrderId"]: (e["signedAmount"], e["ruleSetVersion"])
           for e in platform.ledger.entries("acme", "c1")}
    assert got == {"h1": (125, None), "h2": (12, 1), "h3": (25, v2)}
    named = [_order(n, "c2", timestamp="2026-10-01T00:00:00Z") for n in (7, 8)]
    run_import(platform, "acme", ndjson(named), kind="orders", evaluate=True, ruleSetId="main", version=1)
    assert platform.ledger.head("acme", "c2").balance == 24


def test_balance_as_of_is_exact_when_a_files_rows_are_out_of_time_order(platform, tenant) -> None:
    days = [9, 1, 5, 3]
    run_import(platform, "acme", ndjson([_order(n, day=d, points=10 ** n) for n, d in enumerate(days)]),
               kind="orders")
    for day in range(1, 11):
        moment = datetime(2024, 3, day, 23, tzinfo=timezone.utc)
        expected = sum(10 ** n for n, d in enumerate(days) if d <= day)
        as_of = platform.ledger.head_as_of("acme", "c1", moment)
        assert (as_of.balance, as_of.orders_credited) == (expected, sum(1 for d in days if d <= day)), day


@pytest.mark.parametrize("ending", ["done", "rejected"])
def test_the_uploaded_file_is_discarded_once_the_import_ends(platform, tenant, ending) -> None:
    """The file holds the rows as sent, personal fields in the clear: an erasure must not
    find it in the blob store after the import applied (or refused) it."""
    rows = b"customerId,joinDate,email\nn1,2020-01-02,ann@example.com\n" + (b"n2,bad,x\n" if ending == "rejected"
                                                                              else b"")
    status = run_import(platform, "acme", rows, kind="customers", format="csv", mode="all-or-nothing")
    assert status["status"] == ending
    path = platform.imports._doc("acme", status["importId"])["path"]
    assert not platform.imports.sink.exists(path)
    assert not any(b"ann@example.com" in platform.imports.sink.read(i.path) for i in platform.imports.sink.list(""))


def test_a_slice_that_died_after_finishing_is_redone_and_discards_the_file(platform, tenant, clock,
                                                                           monkeypatch) -> None:
    import_id = start_import(platform, "acme", b"customerId,joinDate\nn1,2020-01-02\n", kind="customers",
                             format="csv")
    path = platform.imports._doc("acme", import_id)["path"]
    sink = platform.imports.sink
    discard = sink.discard

    def died(blob_path: str) -> None:
        raise Died("after the import's finish, before its discard")

    monkeypatch.setattr(sink, "discard", died)
    with pytest.raises(Died):
        finish(platform)
    monkeypatch.setattr(sink, "discard", discard)
    assert platform.imports.status("acme", import_id)["status"] == "done" and sink.exists(path)
    clock.advance(DEFAULT_LEASE + timedelta(seconds=1))
    finish(platform)  # the work item's slice, redone after its lease
    assert not sink.exists(path)
