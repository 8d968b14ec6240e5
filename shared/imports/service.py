"""Imports: a file of rows (one ``RowKind``) uploaded to the blob port, applied by a
chunked, resumable job.

The life of an import:

1. ``create``: a tenant-admin names the kind, the format (NDJSON or CSV), the mode
   and whether to ``evaluate`` earning rules; the import gets an id and a blob path
   ``imports/<tenant>/<importId>/source.<format>`` (on Azure a short-lived SAS to
   upload there; locally ``upload`` streams the bytes into the folder).
2. ``start``: one work item (``shared.workitems``, kind ``import``) is enqueued; the
   ``work-items`` timer drains it in slices of at most ``ROWS_PER_SLICE`` rows.
3. Each slice reads from the stored byte offset (``open_from``), validates rows
   (the kind's model, then its batched store checks) and applies the valid ones a
   chunk at a time; failed rows become error records (line, field, reason).

What it guarantees:

* **Idempotent by row.** A row's ledger write carries an idempotency key derived
  from the row's own key (``import:order:<orderId>``...), never from the import:
  a slice redone after a crash, a resumed job, or the same file imported again
  changes nothing the second time. The counts (rows done, failed) live in the
  work item's cursor, written with the offset, so a redone slice counts once.
* **Bounded per invocation.** A slice reads at most ``ROWS_PER_SLICE`` rows and
  stores its cursor; the work-item runner stops at its time budget (fan-out, not
  one long function). Memory is flat in the file size (``shared.imports.formats``).
* **No partial effect for bad input, when asked.** ``mode=all-or-nothing`` runs a
  validation pass over the whole file first (models and store checks, nothing
  written); any failed row rejects the import and nothing is applied. The default
  ``mode=continue`` applies valid rows and reports the others.
* **History stays history.** Ledger rows keep their own instant as ``createdAt``
  and carry ``imported: true`` (``Ledger`` ``occurred_at``). Earning rules are not
  re-run unless ``evaluate`` is set: then each order gets the rule set version that
  was active at its timestamp (from the activation log), or the named version.
* **No personal data in reports.** A failed row's reason names the field and the
  rule it broke, never the value (pydantic messages do not echo input).
* **No file kept.** The uploaded file (rows as sent, personal fields in the clear) is
  discarded from the blob store once the import is done or rejected, by the slice that
  finishes it (or the redo of a slice that died after finishing it).
"""

from __future__ import annotations

import csv
import io
import logging
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.app.customers import CustomerService
from shared.app.tenants import TenantDirectory
from shared.audit.log import AuditLog, HasActor
from shared.blobs.port import BlobNotFound, BlobSink
from shared.clock import Clock, iso, parse_iso
from shared.domain.tenants import TenantSettings
from shared.earning import CustomerContext, EarnResult, PointsPerCurrencyUnitRate
from shared.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from shared.imports.activity import import_pk
from shared.imports.formats import FORMATS, HeaderMissing, RawRow, lines, read_header, rows
from shared.imports.rows import KINDS, RowError, RowKind
from shared.ledger.entries import Head
from shared.ledger.service import Ledger
from shared.store.contention import attempts
from shared.store.layout import SYSTEM
from shared.store.pages import read_all
from shared.store.port import DocumentStore, Filter, Query
from shared.telemetry.logs import fields
from shared.workitems import Step

log = logging.getLogger("accrue.imports")

WORK_KIND = "import"
WORK_GENERATION = "1"
ROWS_PER_SLICE = 10_000
ROWS_PER_CHUNK = 2_000
MAX_STORED_ERRORS = 10_000
UPLOAD_URL_LIFETIME = timedelta(minutes=15)
MODES = ("continue", "all-or-nothing")

AWAITING_UPLOAD, UPLOADED, QUEUED, DONE, REJECTED = "awaiting-upload", "uploaded", "queued", "done", "rejected"


def errors_pk(import_id: str) -> str:
    return f"importerrors:{import_id}"


class ImportSpec(BaseModel):
    """What to import: the kind of rows, the file's format, the mode, and whether to evaluate rules."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kind: str = Field(max_length=32, description="a registered row kind: customers, orders, opening-balances, awards")
    format: Literal["ndjson", "csv"] = "ndjson"
    mode: Literal["continue", "all-or-nothing"] = "continue"
    evaluate: bool = Field(default=False, description="orders only: earn by the rules instead of the file's points")
    rule_set_id: str | None = Field(default=None, alias="ruleSetId", max_length=64,
                                    description="with evaluate: this rule set version instead of the one active "
                                                "at each order's time")
    version: int | None = Field(default=None, ge=1)


@dataclass
class ImportContext:
    """What a row kind's check and apply see: one import of one tenant."""

    tenant_id: str
    tenant: TenantSettings
    now: datetime
    customers: CustomerService
    ledger: Ledger
    # Where imported orders claim their ids (the orders' status documents), as the API's sends do.
    store: DocumentStore | None = None
    evaluate: bool = False
    # Part of each order's fingerprint: the same order evaluated differently is another request.
    evaluate_key: str = ""
    rules_at: Callable[[datetime], Any] | None = None
    customer_docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The chunk's order claims as its check read them (None: no claim), for its apply step.
    order_claims: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict)
    # The chunk's rows' request payloads and fingerprints, made once per row (its check, its
    # claim and its ledger request each need them), by the row object's id; the row is kept
    # beside them so an id is never taken for another row's.
    fingerprints: dict[int, tuple[Any, dict[str, Any], str]] = field(default_factory=dict)

    def evaluate_order(self, order: Any, head: Head) -> EarnResult:
        assert self.rules_at is not None
        doc = self.customer_docs.get(order.customer_id) or self.customers.get(self.tenant_id, order.customer_id)
        context = CustomerContext(customer_id=order.customer_id, join_date=date.fromisoformat(doc["joinDate"]),
                                  tier=doc.get("tier"), tags=tuple(doc.get("tags", ())),
                                  lifetime_points=head.lifetime_earned, order_count=head.orders_credited,
                                  tier_multiplier=Decimal(1))
        return self.rules_at(order.timestamp).evaluate(self.tenant, order, context)


class Imports:
    def __init__(self, store: DocumentStore, ledger: Ledger, customers: CustomerService, tenants: TenantDirectory,
                 rule_sets: Any, clock: Clock, audit: AuditLog, sink: Callable[[], BlobSink],
                 enqueue: Callable[[str, str, str, dict[str, Any]], bool] | None = None) -> None:
        self._store = store
        self._ledger = ledger
        self._customers = customers
        self._tenants = tenants
        self._rule_sets = rule_sets
        self._clock = clock
        self._audit = audit
        self._sink_factory = sink
        self._sink: BlobSink | None = None
        self.enqueue = enqueue

    @property
    def sink(self) -> BlobSink:
        if self._sink is None:
            self._sink = self._sink_factory()
        return self._sink

    # --- create, upload, start -------------------------------------------------------

    def create(self, tenant_id: str, spec: ImportSpec, who: HasActor | None) -> dict[str, Any]:
        kind = KINDS.get(spec.kind)
        if kind is None:
            raise ValidationFailed(f"unknown row kind {spec.kind!r}; one of {', '.join(sorted(KINDS))}")
        if spec.evaluate and not kind.ledger:
            raise ValidationFailed(f"evaluate applies to ledger rows, not to {spec.kind}")
        if (spec.rule_set_id is None) != (spec.version is None):
            raise ValidationFailed("name a rule set version with both ruleSetId and version")
        if spec.rule_set_id is not None and not spec.evaluate:
            raise ValidationFailed("ruleSetId and version are for evaluate=true")
        if spec.rule_set_id is not None:
            self._rule_sets.registry.get(tenant_id, spec.rule_set_id, spec.version)  # NotFound if it is not saved
        import_id = "imp-" + secrets.token_hex(8)
        now = iso(self._clock.now())
        doc = {"id": import_id, "pk": import_pk(tenant_id), "docType": "import", "tenantId": tenant_id,
               "importId": import_id, **spec.model_dump(by_alias=True), "status": AWAITING_UPLOAD,
               "path": f"imports/{tenant_id}/{import_id}/source.{spec.format}", "bytes": None,
               "createdAt": now, "startedAt": None, "finishedAt": None, "result": None}
        self._store.create(SYSTEM, doc)
        self._audit.record(tenant_id, "import.created", who, target=f"import:{import_id}",
                           after={"kind": spec.kind, "format": spec.format, "mode": spec.mode,
                                  "evaluate": spec.evaluate})
        return self.status(tenant_id, import_id)

    def _doc(self, tenant_id: str, import_id: str) -> dict[str, Any]:
        doc = self._store.read(SYSTEM, import_pk(tenant_id), import_id) if import_id.startswith("imp-") else None
        if doc is None:
            raise NotFound(f"import {import_id!r} does not exist")
        return doc

    def upload_url(self, tenant_id: str, import_id: str) -> dict[str, Any] | None:
        """A short-lived URL to upload the file straight to Blob Storage (Azure), or None
        where the sink has none (the local folder: ``upload`` instead)."""
        doc = self._doc(tenant_id, import_id)
        issue = getattr(self.sink, "upload_url", None)
        if issue is None:
            return None
        return {"method": "PUT", "url": issue(doc["path"], UPLOAD_URL_LIFETIME),
                "headers": {"x-ms-blob-type": "BlockBlob"},
                "expiresAt": iso(self._clock.now() + UPLOAD_URL_LIFETIME)}

    def upload(self, tenant_id: str, import_id: str, chunks: Iterable[bytes]) -> dict[str, Any]:
        """Stream the file into the import's blob (once: the blob is write-once)."""
        doc = self._doc(tenant_id, import_id)
        if doc["status"] != AWAITING_UPLOAD:
            raise Conflict(f"import {import_id} already has its file")
        info = self.sink.put(doc["path"], chunks, content_type="application/octet-stream")
        if not self._swap(doc, status=UPLOADED, bytes=info.size):
            raise Conflict(f"import {import_id} already has its file")
        return self.status(tenant_id, import_id)

    def start(self, tenant_id: str, import_id: str, who: HasActor | None) -> dict[str, Any]:
        """Queue the job (idempotent: starting a started import changes nothing, also when
        many starts race: each status step is a compare-and-swap on the import's document,
        and only the start that moves it to ``queued`` records ``import.started``)."""
        for _ in attempts():
            doc = self._doc(tenant_id, import_id)
            if doc["status"] == AWAITING_UPLOAD:
                if not self.sink.exists(doc["path"]):  # on Azure the file came through the SAS
                    raise Conflict(f"import {import_id} has no file yet: upload it first")
                size = sum(i.size for i in self.sink.list(doc["path"]) if i.path == doc["path"])
                self._swap(doc, status=UPLOADED, bytes=size)
                continue  # read again: this start or another one moved it on
            if doc["status"] == UPLOADED:
                assert self.enqueue is not None, "imports need the work-item queue to start"
                # The work item first (create-once): a crash before the swap leaves the import
                # uploaded, and the next start enqueues nothing new and swaps.
                self.enqueue(WORK_KIND, import_id, WORK_GENERATION, {"tenantId": tenant_id, "importId": import_id})
                if self._swap(doc, status=QUEUED, startedAt=iso(self._clock.now())):
                    self._audit.record(tenant_id, "import.started", who, target=f"import:{import_id}")
                continue
            return self.status(tenant_id, import_id)
        raise Conflict(f"import {import_id} is being changed by many requests at once: retry")

    def _swap(self, doc: dict[str, Any], **changes: Any) -> bool:
        """Write ``doc`` with ``changes`` if nobody changed it since it was read; False if somebody did."""
        try:
            self._store.upsert(SYSTEM, dict(doc, **changes), if_match=doc["_etag"])
        except PreconditionFailed:
            return False
        return True

    # --- the job ---------------------------------------------------------------------

    def _context(self, doc: dict[str, Any]) -> ImportContext:
        tenant_id = doc["tenantId"]
        ctx = ImportContext(tenant_id=tenant_id, tenant=self._tenants.get(tenant_id),
                            now=parse_iso(doc["createdAt"]), customers=self._customers, ledger=self._ledger,
                            store=self._store)
        if doc.get("evaluate"):
            ctx.evaluate = True
            if doc.get("ruleSetId"):
                ctx.evaluate_key = f"{doc['ruleSetId']}@{doc['version']}"
                from shared.rules import ArmRules  # noqa: PLC0415

                named = ArmRules(self._rule_sets.registry.get(tenant_id, doc["ruleSetId"], doc["version"]), None)
                ctx.rules_at = lambda moment: named
            else:
                ctx.evaluate_key = "as-of"
                ctx.rules_at = self._rules_as_of(tenant_id)
        return ctx

    def _rules_as_of(self, tenant_id: str) -> Callable[[datetime], Any]:
        """The rule set version active at an instant, from the tenant's activation log (the
        interim rate rule before the first activation)."""
        from shared.rules import ArmRules  # noqa: PLC0415

        activations = sorted(self._rule_sets.activations(tenant_id, limit=1000), key=lambda a: a.at)
        rate = PointsPerCurrencyUnitRate()
        compiled: dict[tuple[str, int], Any] = {}

        def at(moment: datetime) -> Any:
            active = None
            for activation in activations:
                if activation.at <= moment:
                    active = activation
                else:
                    break
            if active is None:
                return rate
            key = (active.rule_set_id, active.version)
            if key not in compiled:
                compiled[key] = ArmRules(self._rule_sets.registry.get(tenant_id, *key), None)
            return compiled[key]

        return at

    def run_slice(self, params: dict[str, Any], cursor: Any, max_rows: int | None = None) -> Step:
        """One bounded slice of the import job (the work-item handler): at most ``max_rows``
        rows (default ``ROWS_PER_SLICE``)."""
        max_rows = max_rows or ROWS_PER_SLICE
        assert max_rows >= 1
        doc = self._doc(params["tenantId"], params["importId"])
        if doc["status"] in (DONE, REJECTED):
            self.sink.discard(doc["path"])  # a slice that died after the finish, before its discard
            return Step(cursor, done=True, result=doc["result"])
        kind = KINDS[doc["kind"]]
        ctx = self._context(doc)
        cursor = dict(cursor or {"phase": "validate" if doc["mode"] == "all-or-nothing" else "apply",
                                 "offset": 0, "line": 0, "header": None, "done": 0, "failed": 0, "checked": 0,
                                 "startedAt": iso(self._clock.now())})
        try:
            source = self.sink.open_from(doc["path"], cursor["offset"])
        except BlobNotFound:
            return self._finish(doc, cursor, REJECTED, "the import's file is missing")
        if doc["format"] == "csv" and cursor["header"] is None:
            first = next(lines(source, 0), None)
            if first is None:
                return self._finish(doc, cursor, DONE)
            try:
                cursor["header"] = read_header(first[0])
            except (HeaderMissing, UnicodeDecodeError) as exc:
                return self._finish(doc, cursor, REJECTED, f"line 1: {exc}")
            cursor.update(offset=first[1], line=1)
            source = self.sink.open_from(doc["path"], cursor["offset"])
        read = 0
        chunk: list[RawRow] = []
        stream = rows(source, doc["format"], offset=cursor["offset"], line=cursor["line"], header=cursor["header"])
        ended = True
        for raw in stream:
            chunk.append(raw)
            read += 1
            if len(chunk) >= ROWS_PER_CHUNK:
                self._chunk(doc, kind, ctx, chunk, cursor)
                chunk = []
            if read >= max_rows:
                ended = False
                break
        if chunk:
            self._chunk(doc, kind, ctx, chunk, cursor)
        if not ended:
            return Step(cursor)
        if cursor["phase"] == "validate":
            if cursor["failed"]:
                return self._finish(doc, cursor, REJECTED, "all-or-nothing: some rows are invalid; nothing was "
                                                           "applied")
            cursor.update(phase="apply", offset=0, line=0, header=None)
            return Step(cursor)
        return self._finish(doc, cursor, DONE)

    def _chunk(self, doc: dict[str, Any], kind: RowKind, ctx: ImportContext, chunk: list[RawRow],
               cursor: dict[str, Any]) -> None:
        errors: list[RowError] = []
        valid: list[tuple[int, Any]] = []
        for raw in chunk:
            if raw.data is None:
                errors.append(RowError(raw.line, raw.problem or "unreadable"))
                continue
            try:
                valid.append((raw.line, kind.model.model_validate(raw.data)))
            except ValidationError as exc:
                errors.extend(_row_errors(raw.line, exc))
        ctx.customer_docs.clear()
        ctx.order_claims.clear()
        ctx.fingerprints.clear()
        refused = kind.check(ctx, valid) if valid else []
        errors += refused
        bad = {e.line for e in refused}
        good = [(line, row) for line, row in valid if line not in bad]
        if cursor["phase"] == "apply" and good:
            applied = kind.apply(ctx, good)
            errors += applied
            cursor["done"] += len(good) - len({e.line for e in applied})
        elif cursor["phase"] == "validate":
            cursor["checked"] += len(good)
        failed_lines = sorted({e.line for e in errors})
        self._record_errors(doc["importId"], cursor["phase"], errors, already=cursor["failed"])
        cursor["failed"] += len(failed_lines)
        cursor["offset"], cursor["line"] = chunk[-1].end, chunk[-1].line

    def _record_errors(self, import_id: str, phase: str, errors: list[RowError], already: int) -> None:
        by_line: dict[int, list[RowError]] = {}
        for error in errors:
            by_line.setdefault(error.line, []).append(error)
        for index, (line, found) in enumerate(sorted(by_line.items())):
            if already + index >= MAX_STORED_ERRORS:
                return  # counted, not kept: the report says how many it leaves out
            self._store.upsert(SYSTEM, {
                "id": f"line-{line:012d}", "pk": errors_pk(import_id), "docType": "importError", "line": line,
                "phase": phase, "errors": [{"field": e.field, "reason": e.reason[:300]} for e in found]})

    def _finish(self, doc: dict[str, Any], cursor: dict[str, Any], status: str, reason: str | None = None) -> Step:
        result = {"status": status, "rowsDone": cursor["done"], "rowsFailed": cursor["failed"],
                  "lines": cursor["line"], **({"reason": reason} if reason else {})}
        # Finished once: the swap that moves it to its final status records it.
        finished_here = False
        for _ in attempts():
            current = self._doc(doc["tenantId"], doc["importId"])
            if current["status"] in (DONE, REJECTED):
                break  # finished by another slice: recorded there
            if self._swap(current, status=status, finishedAt=iso(self._clock.now()), result=result):
                finished_here = True
                break
            # Changed meanwhile (a progress write): decide again on what is stored.
        else:
            raise Conflict(f"import {doc['importId']} kept changing while it was being finished: the job retries")
        # The uploaded file holds the rows as sent, personal fields in the clear: applied (or
        # rejected), it has done its job, and an erasure must not find it still there.
        self.sink.discard(doc["path"])
        if finished_here:
            self._audit.record(doc["tenantId"], f"import.{status}", None, target=f"import:{doc['importId']}",
                               after=result)
            log.info("import %s %s: %d row(s) done, %d failed", doc["importId"], status, cursor["done"],
                     cursor["failed"], extra=fields(tenant=doc["tenantId"]))
        return Step(cursor, done=True, result=result)

    # --- reading -----------------------------------------------------------------------

    def status(self, tenant_id: str, import_id: str) -> dict[str, Any]:
        """The import and its progress: rows done and failed, rate, ETA (by bytes read)."""
        from shared.workitems import WORK_PK, item_id  # noqa: PLC0415

        doc = self._doc(tenant_id, import_id)
        item = self._store.read(SYSTEM, WORK_PK, item_id(WORK_KIND, import_id, WORK_GENERATION))
        cursor = (item or {}).get("cursor") or {}
        status = doc["status"]
        if status == QUEUED and item is not None:
            status = {"running": "running", "parked": "stalled"}.get(item["status"],
                                                                       "running" if cursor else "queued")
        view: dict[str, Any] = {
            "importId": import_id, "kind": doc["kind"], "format": doc["format"], "mode": doc["mode"],
            "evaluate": doc["evaluate"], "status": status, "phase": cursor.get("phase"),
            "rowsDone": cursor.get("done", 0), "rowsFailed": cursor.get("failed", 0),
            "rowsValidated": cursor.get("checked", 0), "linesRead": cursor.get("line", 0),
            "bytesRead": cursor.get("offset", 0), "bytesTotal": doc.get("bytes"),
            "ratePerSecond": None, "etaSeconds": None, "createdAt": doc["createdAt"],
            "startedAt": doc.get("startedAt"), "finishedAt": doc.get("finishedAt"),
            "reason": (doc.get("result") or {}).get("reason"),
            "errorReport": f"/v1/imports/{import_id}/errors",
        }
        if doc["status"] in (DONE, REJECTED):
            view.update(rowsDone=doc["result"]["rowsDone"], rowsFailed=doc["result"]["rowsFailed"],
                        linesRead=doc["result"]["lines"])
        if cursor.get("startedAt") and item is not None:
            end = parse_iso(doc["finishedAt"]) if doc.get("finishedAt") else self._clock.now()
            seconds = (end - parse_iso(cursor["startedAt"])).total_seconds()
            if seconds > 0:
                view["ratePerSecond"] = round((view["rowsDone"] + view["rowsFailed"] + view["rowsValidated"])
                                              / seconds, 1)
                total, offset = doc.get("bytes") or 0, cursor.get("offset", 0)
                passes_left = 1 if cursor.get("phase") == "validate" else 0
                if offset and total and doc["status"] not in (DONE, REJECTED):
                    left = (total - offset) + passes_left * total
                    view["etaSeconds"] = round(left / (offset / seconds), 1)
        return view

    def errors(self, tenant_id: str, import_id: str, after_line: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        self._doc(tenant_id, import_id)
        docs = self._store.query(SYSTEM, Query(pk=errors_pk(import_id), filters=(
            Filter("docType", "=", "importError"), Filter("line", ">", after_line)), order_by="line", limit=limit))
        return [{"line": d["line"], "phase": d["phase"], "errors": d["errors"]} for d in docs]

    def error_report(self, tenant_id: str, import_id: str) -> Iterator[str]:
        """The failed rows as CSV (line, field, reason), a page of the store at a time."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["line", "field", "reason"])
        after = 0
        while True:
            page = self.errors(tenant_id, import_id, after, 1000)
            for row in page:
                for error in row["errors"]:
                    writer.writerow([row["line"], error["field"] or "", error["reason"]])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if len(page) < 1000:
                return
            after = page[-1]["line"]

    def list(self, tenant_id: str, limit: int = 100) -> list[dict[str, Any]]:
        docs = self._store.query(SYSTEM, Query(pk=import_pk(tenant_id), filters=(Filter("docType", "=", "import"),),
                                               order_by="createdAt", descending=True, limit=limit))
        return [self.status(tenant_id, d["importId"]) for d in docs]

    def positions(self, tenant_id: str) -> list[dict[str, Any]]:
        """Every import of the tenant as ``{"importId", "createdAt"}``, newest first, read in
        keyset pages (no cap): what ``GET /v1/imports`` pages through, reading ``status`` for
        the page's imports only."""
        docs = read_all(self._store, SYSTEM, import_pk(tenant_id), (Filter("docType", "=", "import"),))
        return sorted(({"importId": d["importId"], "createdAt": d["createdAt"]} for d in docs),
                      key=lambda d: (d["createdAt"], d["importId"]), reverse=True)


def _row_errors(line: int, exc: ValidationError) -> list[RowError]:
    """A row's validation errors, naming the field and the rule, never the value."""
    found = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or None
        found.append(RowError(line, error["msg"], where))
    return found


__all__ = ["FORMATS", "ImportContext", "ImportSpec", "Imports", "MODES"]
