"""Every log call in shared/ and functions/ is structured: ``extra=fields(...)`` with
names from the closed list of ``shared.telemetry.logs``. A new printf-style call, or
a field nobody agreed on, fails here (a field list that grows is reviewed there)."""

from __future__ import annotations

from pathlib import Path

from shared.telemetry.logs import ALLOWED_FIELDS
from tests.unit.telemetry.log_scan import problems, scan

ROOT = Path(__file__).resolve().parents[3]


def test_every_log_call_in_shared_and_functions_passes_fields() -> None:
    total, found = scan(ROOT, ("shared", "functions"), ALLOWED_FIELDS)
    assert total >= 60, f"only {total} log calls found: the scanner no longer sees them"
    assert not found, "log calls that are not structured:\n" + "\n".join(found)


def test_the_scanner_flags_a_printf_call_an_unknown_field_and_unpacking() -> None:
    source = '''
import logging
log = logging.getLogger("accrue.x")
audit = logging.getLogger("accrue.audit")
def f(tenant, email, more):
    log.info("order %s", tenant)
    audit.warning("x", extra={"tenant": tenant})
    logging.error("plain")
    log.info("ok", extra=fields(tenant=tenant))
    log.info("bad", extra=fields(email=email))
    log.info("hidden", extra=fields(**more))
    print("not a log call")
'''
    found = problems(source, ALLOWED_FIELDS)
    assert len(found) == 5, found
    assert sum("no extra=fields" in f for f in found) == 3
    assert any("'email' is not in ALLOWED_FIELDS" in f for f in found)
    assert any("fields(**...)" in f for f in found)
