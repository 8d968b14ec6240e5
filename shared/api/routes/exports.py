"""Warehouse exports of the caller's tenant (tenant-admin): run now, backfill a
date range, list runs, and the personal-data export setting. See docs/exports.md."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.api.contract import op
from shared.api.contract.exports import ExportManifest, ExportRunList, ExportSettingsView
from shared.api.deps import platform
from shared.api.pagination import Cursor, Order, in_memory
from shared.api.security import requires
from shared.app.auth import Principal
from shared.domain.inputs import Instant
from shared.exports.service import SUBJECTS
from shared.platform import Platform

router = APIRouter(prefix="/v1/exports", tags=["exports"])

Subject = Annotated[str, StringConstraints(max_length=32)]      # one of SUBJECTS (checked by the service)
FieldName = Annotated[str, StringConstraints(max_length=64)]    # a personal field's name


class Backfill(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: Instant = Field(alias="from")
    end: Instant = Field(alias="to")
    subjects: list[Subject] | None = Field(default=None, max_length=len(SUBJECTS))


class ExportSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    excludedPersonalFields: list[FieldName] = Field(max_length=50)
    format: Literal["parquet", "ndjson"] | None = Field(
        default=None, description="file format of new runs (default parquet); absent: unchanged")
    microBatchMinutes: int | None = Field(
        default=None, ge=1, le=1440,
        description="the most minutes a committed transaction waits for its micro-batch file (default 5; "
                    "the feed runs as often as that needs); absent: unchanged")


@router.post("/runs", status_code=201, summary="Export the changes since the last run now",
             **op("exports.run", {201: ExportManifest}, errors=(409,)))
def run_now(p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Exports every subject's changes since the last run now, as encrypted files and a manifest
    (capability ``admin``, audited). The nightly timer runs the same. 409 while another run of the tenant is
    in progress (a run is never done twice at once: retry when it has finished)."""
    manifest = p.exports.run(who.tenant_id)
    p.audit.record(who.tenant_id, "export.run", who, target=f"export:{manifest['runId']}")
    return manifest


@router.post("/backfills", status_code=201, summary="Export a date range again, under its own prefix",
             **op("exports.backfill", {201: ExportManifest}))
def backfill(body: Backfill, p: Annotated[Platform, Depends(platform)],
             who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Exports a date range again under its own prefix; no watermark moves (capability ``admin``, audited)."""
    manifest = p.exports.backfill(who.tenant_id, body.start, body.end, body.subjects)
    p.audit.record(who.tenant_id, "export.backfill", who, target=f"export:{manifest['runId']}",
                   after={"to": manifest["to"], "subjects": manifest["subjects"]})
    return manifest


@router.get("/runs", summary="Finished runs, newest first",
            **op("exports.runs", ExportRunList))
def runs(request: Request, p: Annotated[Platform, Depends(platform)],
         who: Annotated[Principal, Depends(requires("admin"))], cursor: Cursor = None,
         limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict:
    """Finished runs, newest first (capability ``admin``)."""
    return in_memory(request, who.tenant_id, p.exports.runs(who.tenant_id, None), limit, cursor,
                     Order(("startedAt", "runId"), descending=True))


@router.get("/settings", summary="Which personal fields the customers export leaves out",
            **op("exports.getSettings", ExportSettingsView))
def get_settings(p: Annotated[Platform, Depends(platform)],
                 who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Which personal fields the customers export leaves out (capability ``admin``)."""
    return p.exports.settings(who.tenant_id)


@router.put("/settings", summary="Set the personal fields the customers export leaves out",
            **op("exports.putSettings", ExportSettingsView))
def put_settings(body: ExportSettings, p: Annotated[Platform, Depends(platform)],
                 who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Sets the personal fields the customers export leaves out (capability ``admin``, audited)."""
    saved = p.exports.change_settings(who.tenant_id, body.excludedPersonalFields, format=body.format,
                                      micro_batch_minutes=body.microBatchMinutes)
    if saved.changed:
        keys = ("excludedPersonalFields", "format", "microBatchMinutes")
        p.audit.record(who.tenant_id, "export.settings.changed", who, target="export:settings",
                       before={k: saved.before[k] for k in keys}, after={k: saved.after[k] for k in keys})
    return saved.after
