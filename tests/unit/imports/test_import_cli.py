"""``accrue import``: the file streamed in, the job run to its end with a progress bar,
the error report written as CSV, and a second run of the same file changing nothing."""

from __future__ import annotations

import json

from shared.local.__main__ import main
from shared.platform import build_platform
from shared.settings import Settings
from tests.conftest import add_customer, make_tenant


def test_accrue_import_with_a_progress_bar_and_an_error_report(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ACCRUE_DATA_DIR", str(tmp_path / "data"))
    platform = build_platform(Settings.from_env())
    try:
        make_tenant(platform, "acme")
        add_customer(platform, "acme", "c1")
    finally:
        platform.close()
    source = tmp_path / "orders.csv"
    source.write_text("orderId,customerId,amount,currency,timestamp,points\n"
                      + "".join(f"h{n},c1,5.00,EUR,2024-02-0{1 + n % 9}T08:00:00Z,2\n" for n in range(50))
                      + "h99,nobody,5.00,EUR,2024-02-01T08:00:00Z,2\n")
    report = tmp_path / "errors.csv"
    args = ["import", str(source), "--tenant", "acme", "--kind", "orders", "--errors", str(report)]
    assert main(args) == 1  # one row failed
    captured = capsys.readouterr()
    status = json.loads(captured.out)
    assert (status["status"], status["rowsDone"], status["rowsFailed"]) == ("done", 50, 1)
    assert "[" + "#" * 30 + "] 100.0% 50 done, 1 failed" in captured.err
    assert report.read_text().splitlines() == [
        "line,field,reason", "52,customerId,customer 'nobody' does not exist (import customers first)"]
    assert main(args) == 1
    assert json.loads(capsys.readouterr().out)["rowsDone"] == 50
    platform = build_platform(Settings.from_env())
    try:
        assert platform.ledger.head("acme", "c1").balance == 100
    finally:
        platform.close()
