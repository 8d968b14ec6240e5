"""An NDJSON import row is read as the API reads a body (shared/domain/json_text.py): a name
twice in one object, NaN or Infinity, or a lone surrogate fails that row with the reason,
and the file's other rows proceed. Before, ``json.loads`` took the last of two ``points``
and credited it."""

from __future__ import annotations

import json

from tests.unit.imports.conftest import run_import


def _award(award_id: str, points: int = 100) -> str:
    return json.dumps({"awardId": award_id, "customerId": "c1", "points": points, "reason": "goodwill",
                       "awardedAt": "2026-10-01T11:00:00Z"})


def test_rows_that_are_not_json_accrue_reads_fail_alone(platform, tenant) -> None:  # type: ignore[no-untyped-def]
    lines = [
        _award("a1", 100),
        _award("a2", 5).replace('"points": 5', '"points": 5, "points": 50000'),
        _award("a3", 5).replace('"points": 5', '"points": NaN'),
        _award("a4", 5).replace('"goodwill"', '"good\\ud800will"'),
        _award("a5", 10),
    ]
    status = run_import(platform, "acme", ("\n".join(lines) + "\n").encode(), kind="awards")
    assert (status["rowsDone"], status["rowsFailed"]) == (2, 3), status
    reasons = {e["line"]: e["errors"][0]["reason"] for e in platform.imports.errors("acme", status["importId"])}
    assert sorted(reasons) == [2, 3, 4]
    assert "'points' appears twice" in reasons[2] and "NaN" in reasons[3] and "surrogate" in reasons[4], reasons
    assert platform.ledger.head("acme", "c1").balance == 110
