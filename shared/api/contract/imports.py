"""Response models of the imports and occasions routes (shared/api/routes/imports.py,
shared/api/routes/occasions.py)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from shared.api.contract import next_link


class UploadTarget(BaseModel):
    """Where to upload the file: a short-lived Blob Storage URL (Azure)."""

    method: str = Field(examples=["PUT"])
    url: str = Field(description="a user-delegation SAS for this one blob, create and write only",
                     examples=["https://accrue.blob.core.windows.net/imports/acme/imp-1a2b3c4d5e6f7a8b/source.ndjson"
                               "?sv=2024-08-04&sr=b&sp=cw&se=2026-12-05T10%3A15%3A00Z&sig=..."])
    headers: dict[str, str] = Field(examples=[{"x-ms-blob-type": "BlockBlob"}])
    expiresAt: str = Field(examples=["2026-12-05T10:15:00.000000Z"])


class ImportView(BaseModel):
    """An import and its progress: rows done and failed, rate and ETA."""

    importId: str = Field(examples=["imp-1a2b3c4d5e6f7a8b"])
    kind: str = Field(description="the row kind", examples=["orders"])
    format: str = Field(examples=["ndjson"])
    mode: str = Field(description="continue (valid rows proceed) or all-or-nothing", examples=["continue"])
    evaluate: bool = Field(examples=[False])
    status: str = Field(description="awaiting-upload, uploaded, queued, running, stalled, done or rejected",
                        examples=["running"])
    phase: str | None = Field(description="validate (all-or-nothing's first pass) or apply", examples=["apply"])
    rowsDone: int = Field(examples=[120000])
    rowsFailed: int = Field(examples=[3])
    rowsValidated: int = Field(description="rows the validation pass found valid", examples=[0])
    linesRead: int = Field(examples=[120003])
    bytesRead: int = Field(examples=[14680064])
    bytesTotal: int | None = Field(examples=[122683392])
    ratePerSecond: float | None = Field(description="rows a second since the job started", examples=[21450.0])
    etaSeconds: float | None = Field(description="estimated seconds to the end (by bytes read)", examples=[41.5])
    createdAt: str = Field(examples=["2026-12-05T10:00:00.000000Z"])
    startedAt: str | None = Field(examples=["2026-12-05T10:01:00.000000Z"])
    finishedAt: str | None = Field(examples=[None])
    reason: str | None = Field(description="why a rejected import was rejected", examples=[None])
    errorReport: str = Field(description="the failed rows, by line", examples=["/v1/imports/imp-1a2b3c4d5e6f7a8b/errors"])


class ImportCreated(ImportView):
    """The new import; ``upload`` says where to put the file (null: PUT it to ``/v1/imports/{id}/file``)."""

    upload: UploadTarget | None = None


class ImportList(BaseModel):
    """The tenant's imports, newest first."""

    items: list[ImportView]
    next: str | None = next_link()


class RowProblem(BaseModel):
    """One reason a row failed: the field (null: the whole row) and the rule it broke, never its value."""

    field: str | None = Field(examples=["customerId"])
    reason: str = Field(examples=["customer 'c9' does not exist (import customers first)"])


class FailedRow(BaseModel):
    """A row that failed, by its line number in the file."""

    line: int = Field(examples=[17])
    phase: str = Field(examples=["apply"])
    errors: list[RowProblem]


class ImportErrorList(BaseModel):
    """The error report: failed rows in line order (the first 10,000 are kept)."""

    items: list[FailedRow]
    next: str | None = next_link()


class OccasionSettingsView(BaseModel):
    """Points given on a customer's birthday and on the anniversary of their join date (0: off)."""

    birthdayPoints: int = Field(examples=[100])
    anniversaryPoints: int = Field(examples=[50])
