"""Tier history out: the ``tierhistory`` export subject (rows match their JSON Schema,
each change exported once) and the profile change reaching the customers export."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta

from shared.schemas import REGISTRY
from tests.conftest import drain

from .conftest import bare_tenant, earn, program


def _rows(platform, manifest, subject):  # type: ignore[no-untyped-def]
    entry = next(f for f in manifest["files"] if f["subject"] == subject)
    plain = b"".join(platform.exports.file_plaintext(manifest["tenantId"], manifest, entry))
    return [json.loads(line) for line in gzip.decompress(plain).splitlines()]


def test_tier_changes_are_exported_once_and_match_the_schema(platform, clock, monkeypatch) -> None:
    from shared.exports import service

    monkeypatch.setattr(service, "DEFAULT_FORMAT", "ndjson")  # rows read as NDJSON; Parquet: tests/unit/exports
    bare_tenant(platform, "t1", customers=("c1", "c2"))
    platform.tiers.save_program("t1", program())
    earn(platform, "t1", "c1", "o1", 150)
    earn(platform, "t1", "c2", "o2", 2500)
    drain(platform)
    clock.advance(timedelta(minutes=5))
    first = platform.exports.run("t1")
    rows = _rows(platform, first, "tierhistory")
    assert sorted((r["customerId"], r["fromTier"], r["toTier"]) for r in rows) == [
        ("c1", None, "silver"), ("c2", None, "platinum")]
    for row in rows:
        REGISTRY.validate(row, "export.tierhistory", 1)
    assert {r["qualifyingPoints"] for r in rows} == {150, 2500} and {r["reason"] for r in rows} == {"threshold-reached"}
    # The profile's tier change reaches the customers export too (its updatedAt moved).
    assert {(r["customerId"], r["tier"]) for r in _rows(platform, first, "customers")} >= {("c1", "silver")}
    earn(platform, "t1", "c1", "o3", 400)
    drain(platform)
    clock.advance(timedelta(minutes=5))
    second = platform.exports.run("t1")
    assert [(r["customerId"], r["fromTier"], r["toTier"]) for r in _rows(platform, second, "tierhistory")] == [
        ("c1", "silver", "gold")]
