"""A line no reader should apply fails alone, with its line number and a reason, and every
other row of the file is applied: for NDJSON an integer of more digits than Python converts
and nesting deeper than the parser goes (both once raised out of the reader, parking the
whole import), for CSV a quoted cell holding a line break (its second line was once
imported as a row of its own). Found by an outside review."""

from __future__ import annotations

import pytest

from shared.store.layout import CUSTOMERS, customer_pk
from tests.unit.imports.conftest import run_import

GOOD = b'{"awardId":"a%d","customerId":"c1","points":1,"reason":"r"}\n'


@pytest.mark.parametrize(("bad", "reason"), [
    (b"[" * 30_000 + b"]" * 30_000 + b"\n", "nested too deeply"),
    (b'{"awardId":"a9","customerId":"c1","points":' + b"9" * 5_000 + b',"reason":"x"}\n', "digits"),
    (b'{"awardId":"a9",\n', "not JSON"),
], ids=["deep", "long-integer", "cut"])
def test_a_hostile_ndjson_line_fails_alone(platform, tenant, bad: bytes, reason: str) -> None:  # type: ignore
    status = run_import(platform, "acme", GOOD % 1 + bad + GOOD % 2, kind="awards")
    assert (status["status"], status["rowsDone"], status["rowsFailed"]) == ("done", 2, 1), status
    [error] = platform.imports.errors("acme", status["importId"])
    assert error["line"] == 2 and reason in error["errors"][0]["reason"], error
    assert platform.ledger.head("acme", "c1").balance == 2


def test_a_quoted_csv_cell_with_a_line_break_imports_none_of_its_lines(platform, tenant) -> None:  # type: ignore
    data = (b"customerId,joinDate,name\n"
            b'n1,2020-01-02,"Ann\n'
            b'x9,2020-01-02,Smith"\n'
            b"n2,2020-01-02,Bea\n")
    status = run_import(platform, "acme", data, kind="customers", format="csv")
    assert (status["rowsDone"], status["rowsFailed"]) == (1, 2), status
    assert [e["line"] for e in platform.imports.errors("acme", status["importId"])] == [2, 3]
    assert platform.store.read(CUSTOMERS, customer_pk("acme", "x9"), "x9") is None, "no row made of a cell's end"
    assert platform.store.read(CUSTOMERS, customer_pk("acme", "n2"), "n2") is not None
