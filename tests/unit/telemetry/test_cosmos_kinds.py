"""The operation kind of a Cosmos REST call, told from the call itself (a fixed,
small set of attribute values whatever the documents), and a hook that never
raises, whatever it is given."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from shared.telemetry import names
from shared.telemetry.cosmos import operation_kind, record_request_charge

DOCS = "/dbs/accrue/colls/ledger/docs"


@pytest.mark.parametrize(("method", "path", "headers", "kind"), [
    ("GET", DOCS + "/e1", {}, "read"),
    ("POST", DOCS, {"x-ms-documentdb-isquery": "True"}, "query"),
    ("POST", DOCS, {"Content-Type": "application/query+json", "content-type": "application/query+json"}, "query"),
    ("POST", DOCS, {"x-ms-documentdb-is-upsert": "True"}, "upsert"),
    ("POST", DOCS, {}, "create"),
    ("POST", DOCS, {"x-ms-cosmos-is-batch-request": "True"}, "batch"),
    ("PUT", DOCS + "/e1", {}, "replace"),
    ("DELETE", DOCS + "/e1", {}, "delete"),
    ("GET", "/dbs/accrue/colls/ledger", {}, "metadata"),
    ("GET", "/dbs/accrue/colls/ledger/pkranges", {}, "metadata"),
    ("GET", "/", {}, "metadata"),
])
def test_operation_kinds(method, path, headers, kind) -> None:  # type: ignore[no-untyped-def]
    assert operation_kind(method, path, headers) == kind


def _response(charge: str | None, method: str = "GET", url: str = "https://x:8081" + DOCS + "/e1"):  # type: ignore[no-untyped-def]
    return SimpleNamespace(http_response=SimpleNamespace(headers={} if charge is None else
                                                         {"x-ms-request-charge": charge}),
                           http_request=SimpleNamespace(method=method, url=url, headers={}))


def test_the_hook_records_the_charge_and_ignores_what_it_cannot_read(meter) -> None:
    record_request_charge(_response("4.76"))
    record_request_charge(_response("2.5", "DELETE"))
    record_request_charge(_response(None))  # no header: nothing
    record_request_charge(_response("not a number"))  # never raises
    record_request_charge(object())  # never raises
    read = meter.histogram(names.COSMOS_REQUEST_CHARGE, operation="read")
    assert read.count == 1 and read.sum == pytest.approx(4.76)
    assert meter.histogram(names.COSMOS_REQUEST_CHARGE, operation="delete").sum == pytest.approx(2.5)
