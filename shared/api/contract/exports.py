"""Response models of the exports routes (shared/api/routes/exports.py)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from shared.api.contract import next_link


class ExportFile(BaseModel):
    """One encrypted file of a run: where it is, how many rows, how to check and decrypt it."""

    subject: str = Field(examples=["ledger"])
    path: str = Field(examples=["sandbox/subject=transactions/date=2026-11-23/20261123T020000Z-1a2b3c.p0001.parquet"])
    rows: int
    model_config = {"extra": "allow"}  # sizes, digests, the wrapped data key, format and schema names


class ExportManifest(BaseModel):
    """The run's manifest (also written next to its files as manifest.json)."""

    format: str = Field(examples=["accrue-export-manifest"])
    schemaVersion: int = Field(examples=[1])
    tenantId: str = Field(examples=["sandbox"])
    runId: str = Field(examples=["20261123T020000Z-1a2b3c"])
    kind: str = Field(description="incremental or backfill", examples=["incremental"])
    from_: dict[str, Any] = Field(alias="from", description="per subject, the exclusive lower bound")
    to: str = Field(examples=["2026-11-23T01:55:00Z"])
    startedAt: str = Field(examples=["2026-11-23T02:00:00.000000Z"])
    finishedAt: str = Field(examples=["2026-11-23T02:00:01.200000Z"])
    subjects: list[str] = Field(examples=[["ledger", "customers"]])
    files: list[ExportFile]
    schemas: dict[str, Any] | None = Field(default=None, description="per subject, its columns and their version")


class ExportRun(BaseModel):
    """A finished run: kind, window and rows per subject."""

    runId: str = Field(examples=["20261123T020000Z-1a2b3c"])
    kind: str = Field(examples=["incremental"])
    startedAt: str = Field(examples=["2026-11-23T02:00:00.000000Z"])
    finishedAt: str = Field(examples=["2026-11-23T02:00:01.200000Z"])
    manifest: str = Field(description="the manifest's path in the blob sink")
    rows: dict[str, int] = Field(examples=[{"ledger": 12, "customers": 3}])
    from_: dict[str, Any] = Field(alias="from")
    to: str = Field(examples=["2026-11-23T01:55:00Z"])


class ExportRunList(BaseModel):
    """Finished runs, newest first."""

    items: list[ExportRun]
    next: str | None = next_link()


class ExportSettingsView(BaseModel):
    """Which personal fields the customers export leaves out, and which it carries."""

    tenantId: str = Field(examples=["sandbox"])
    excludedPersonalFields: list[str] = Field(examples=[["phone", "postalAddress"]])
    exportedPersonalFields: list[str] = Field(examples=[["email", "name"]])
    format: str = Field(default="parquet", examples=["parquet"], description="parquet or ndjson")
    microBatchMinutes: int = Field(
        default=5, examples=[5], description="the most minutes a committed transaction waits for its micro-batch file")
