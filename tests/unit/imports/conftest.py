"""Helpers for the import tests: write a file, run an import to its end through the
work-item queue (as the timer does), read a tenant's ledger."""

from __future__ import annotations

import json
from typing import Any, Iterable

from shared.jobs import work_items
from shared.platform import Platform
from shared.store.layout import LEDGER
from shared.store.port import Filter, Query


def ndjson(rows: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def start_import(platform: Platform, tenant_id: str, data: bytes, **spec: Any) -> str:
    from shared.imports.service import ImportSpec

    created = platform.imports.create(tenant_id, ImportSpec.model_validate(spec), None)
    platform.imports.upload(tenant_id, created["importId"], [data])
    platform.imports.start(tenant_id, created["importId"], None)
    return created["importId"]


def finish(platform: Platform, max_runs: int = 200) -> None:
    queue = work_items(platform)
    for _ in range(max_runs):
        report = queue.run(max_items=50)
        if not report.claimed:
            return
    raise AssertionError("the work items did not finish")


def run_import(platform: Platform, tenant_id: str, data: bytes, **spec: Any) -> dict[str, Any]:
    import_id = start_import(platform, tenant_id, data, **spec)
    finish(platform)
    return platform.imports.status(tenant_id, import_id)


def ledger_docs(platform: Platform, tenant_id: str) -> list[dict[str, Any]]:
    """Every ledger document of the tenant (entries, records, markers), without volatile fields."""
    docs = platform.store.query(LEDGER, Query(pk=None, filters=(Filter("tenantId", "=", tenant_id),),
                                              limit=10_000))
    return sorted(({k: v for k, v in d.items() if k not in ("_etag", "_ts")} for d in docs),
                  key=lambda d: (d["pk"], d["id"]))
