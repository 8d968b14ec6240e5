"""Historical imports and bulk awards (tenant-admin): create an import, upload its file,
start it, follow its progress, read its error report. See docs/imports.md.

Large files go straight to Blob Storage through the short-lived SAS the create answer
carries (Azure), or through ``accrue import`` (locally); the ``file`` route takes a
file of up to 1 MiB (the API's body limit) for small imports and tests."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from shared.api.contract import op
from shared.api.contract.imports import ImportCreated, ImportErrorList, ImportList, ImportView
from shared.api.deps import platform
from shared.api.pagination import Cursor, Order, in_memory, keyset, position
from shared.api.security import requires
from shared.app.auth import Principal
from shared.domain.orders import EntityId
from shared.imports.service import ImportSpec
from shared.platform import Platform

router = APIRouter(prefix="/v1/imports", tags=["imports"])

ImportId = EntityId


@router.post("", status_code=201, summary="Create an import of one kind of rows",
             **op("imports.create", {201: ImportCreated}, errors=(404,)))
def create(body: ImportSpec, p: Annotated[Platform, Depends(platform)],
           who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Creates an import of one kind of rows (customers, orders, opening-balances, awards) in NDJSON or CSV
    (capability ``admin``, audited). The answer says where to upload the file: a short-lived SAS URL on Azure,
    else ``PUT /v1/imports/{importId}/file``. Nothing is read until ``start``."""
    created = p.imports.create(who.tenant_id, body, who)
    return {**created, "upload": p.imports.upload_url(who.tenant_id, created["importId"])}


_UPLOAD = op("imports.upload", ImportView, errors=(404, 409))
_UPLOAD["openapi_extra"] = {**_UPLOAD["openapi_extra"], "requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary", "maxLength": 1_048_576},
                                 "example": '{"orderId":"h1","customerId":"c1","amount":"12.50","currency":"EUR",'
                                            '"timestamp":"2024-03-01T10:00:00Z","points":12}\n'}}}}


@router.put("/{importId}/file", summary="Upload a small import file (up to 1 MiB)", **_UPLOAD)
async def upload(importId: ImportId, request: Request, p: Annotated[Platform, Depends(platform)],
                 who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Stores the request body as the import's file, once (capability ``admin``). Files over 1 MiB go through
    the SAS URL (Azure) or ``accrue import`` (locally)."""
    body = await request.body()
    return p.imports.upload(who.tenant_id, importId, [body])


@router.post("/{importId}/start", status_code=202, summary="Start the import job",
             **op("imports.start", {202: ImportView}, errors=(404, 409)))
def start(importId: ImportId, p: Annotated[Platform, Depends(platform)],
          who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Queues the import job (capability ``admin``, audited); starting a started import changes nothing.
    Follow it with ``GET /v1/imports/{importId}``."""
    return p.imports.start(who.tenant_id, importId, who)


@router.get("", summary="The tenant's imports, newest first", **op("imports.list", ImportList))
def list_imports(request: Request, p: Annotated[Platform, Depends(platform)],
                 who: Annotated[Principal, Depends(requires("admin"))], cursor: Cursor = None,
                 limit: Annotated[int, Query(ge=1, le=200)] = 20) -> dict:
    """The tenant's imports with their progress, newest first (capability ``admin``)."""
    page = in_memory(request, who.tenant_id, p.imports.positions(who.tenant_id), limit, cursor,
                     Order(("createdAt", "importId"), descending=True))
    return {**page, "items": [p.imports.status(who.tenant_id, i["importId"]) for i in page["items"]]}


@router.get("/{importId}", summary="An import's progress: rows done, failed, rate, ETA",
            **op("imports.get", ImportView, errors=(404,)))
def get(importId: ImportId, p: Annotated[Platform, Depends(platform)],
        who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """The import's status and progress: rows done and failed, rows a second, and the estimated seconds left
    (capability ``admin``)."""
    return p.imports.status(who.tenant_id, importId)


@router.get("/{importId}/errors", summary="The import's error report: failed rows by line",
            **op("imports.errors", ImportErrorList, errors=(404,)))
def errors(importId: ImportId, request: Request, p: Annotated[Platform, Depends(platform)],
           who: Annotated[Principal, Depends(requires("admin"))], cursor: Cursor = None,
           limit: Annotated[int, Query(ge=1, le=1000)] = 500) -> dict:
    """The failed rows in line order, each with the fields and the reasons, never the values (capability
    ``admin``). ``accrue import`` writes the same report as CSV."""
    after = position(request, who.tenant_id, cursor, int)
    rows = p.imports.errors(who.tenant_id, importId, int(after[0]) if after else 0, limit + 1)
    return keyset(request, who.tenant_id, rows, limit, lambda row: [row["line"]])
