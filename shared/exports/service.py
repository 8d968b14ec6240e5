"""CDC exports for warehouses: per tenant and subject, the changes since the last
successful run, as Parquet (the default) or gzip NDJSON files plus a manifest.

Every file is stored under Azure Storage client-side encryption v2 (AES-256-GCM, a
content key per file wrapped by the tenant's *export* key; ``shared.blobs.cse``), so
a warehouse decrypts either format with Microsoft's SDK. NDJSON files written before
(``ACRXENC1``, ``shared.exports.crypto``, under the tenant's key) still read, and an
erasure rewrites them under client-side encryption.

Subjects and their change key (rows with ``from < key <= to``):

* ``customers``: profiles by ``createdAt`` (profiles carry no update stamp yet,
  so later tag/tier changes are not re-exported); personal fields only if the
  tenant's export settings do not exclude them (the default excludes all);
* ``transactions``: ledger entries by ``createdAt``, imported ones by ``recordedAt``;
* ``orders``: order outcome records by ``createdAt``, imported ones by ``recordedAt``;
* ``ruleevaluations``: the rule trace of each order record, by ``createdAt`` (imported
  ones by ``recordedAt``);
* ``webhookdeliveries``: webhook delivery attempts by ``createdAt``;
* ``tierhistory``: tier-change records (``shared.tiers.history``, in the ledger
  partitions) by ``createdAt``;
* ``erasures``: customers erased in the window (id and ``erasedAt`` only), so a
  warehouse deletes its copy of their personal data.

An imported ledger row (``imported: true``, shared.imports) keeps its own instant as
``createdAt``, years back perhaps, and ``recordedAt`` says when the import wrote it: the
feed exports it in the window of its ``recordedAt``, once, as any row committed then
(the window of its ``createdAt`` was exported before it existed). A backfill uses the
same rule: it exports again what the feed carried in its window.

Erasure (``scrub``, called by ``shared.privacy.erasure``) rewrites every
``customers`` file that holds an erased customer's personal fields, found through
the manifests (each entry lists its ``personalFields``), and updates the entry.

Reading is paged, never the whole history: customers of the tenant by id, then
each customer's ledger partition by ``seq`` / ``id`` (single-partition queries,
cheap on Cosmos DB too), attempts by ``createdAt`` with ties read whole.

Exactly once in effect: a run fixes its bounds first (``to = now - lag``, the lag
covering writes in flight) and records them as the tenant's *pending* run
(ETag-guarded: two runners cannot both start). NDJSON files go to
``<tenant>/incremental/<runId>/<subject>.ndjson.gz`` (Parquet: ``parquet_path``) (overwritten if a
crashed attempt left one: nothing is published until the manifest exists), then
the manifest ``.../manifest.json``, then the watermarks move to ``to`` and the
pending mark is cleared, in one write. A run that died at any point is redone
with the same id and bounds by the next run; a manifest already written is not
written twice. Backfills (``backfill``) go under ``<tenant>/backfill/<runId>/``
and touch no watermark. Consumers read the manifest and only the files it lists.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import secrets
import tempfile
import threading
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Iterator

from shared.blobs.port import BlobExists, BlobNotFound, BlobSink
from shared.clock import Clock, instant_problem, iso, parse_iso
from shared.errors import Conflict, DocumentExists, FieldProblem, PreconditionFailed, StoreError, ValidationFailed
from shared.exports.columns import COLUMNS_VERSION, schema_of
from shared.exports.crypto import decrypt_stream
from shared.exports.keys import ExportKek
from shared.keys.port import KeyProvider
from shared.ledger.chain import sorted_ascii_json
from shared.privacy.personal import PERSONAL_FIELDS, PersonalDataDestroyed
from shared.store.layout import (
    CUSTOMERS,
    DEFAULT_TTL,
    EXPORTS,
    LEDGER,
    MAX_TTL_DAYS,
    TENANTS,
    WEBHOOK_ATTEMPTS,
    attempt_pks,
    customer_pk,
)
from shared.store.port import (DocumentStore, Filter, Query, changed_partitions, latest_lsn, read_many,
                               scan_json, scan_lines)
from shared.store.replace import Change, replace
from shared.store.pages import read_all
from shared.telemetry import tracing
from shared.telemetry.logs import fields

log = logging.getLogger("accrue.exports")

SCHEMA_VERSION = 1
SUBJECTS: tuple[str, ...] = ("customers", "transactions", "orders", "ruleevaluations", "webhookdeliveries",
                             "tierhistory", "erasures", "agentdecisions")
# The only subject whose rows may carry personal fields (what ``scrub`` rewrites).
PERSONAL_SUBJECT = "customers"
# Manifest blob metadata: "false" when no file of the run holds personal data (``scrub`` skips it).
PERSONAL_METADATA = "personaldata"
# Rewrites of one file that raced another rewriter before it is left for the next erasure job.
MAX_REWRITES = 5
DEFAULT_LAG = timedelta(minutes=2)
PAGE = 1000
# The subjects read customer by customer (a query per customer partition, whatever changed):
# their files are split in parts of at most PART_CUSTOMERS customers, so one part (one slice of
# the nightly job) is bounded whatever the tenant's size.
PER_CUSTOMER_SUBJECTS = ("transactions", "orders", "ruleevaluations", "tierhistory")
# The ledger documents those subjects are made of (``_per_customer_rows``).
WINDOW_DOC_TYPES = ("entry", "order", "tierChange")
# The per-customer subjects whose documents an import writes (entries, order records).
IMPORTED_SUBJECTS = ("transactions", "orders", "ruleevaluations")
PART_CUSTOMERS = 5000
# The subject read columnar where the store scans raw JSON (``_fill_transactions``), and
# its page: entries per scan, the bound on the export's memory (~0.5 KiB of JSON each).
COLUMNAR_SUBJECT = "transactions"
SCAN_PAGE = 16_384
# Threads converting scanned pages to Arrow while the caller's thread scans and writes.
CONVERTERS = 2
STATE_ID = "state"
SETTINGS_ID = "settings"
FORMATS = ("parquet", "ndjson")
DEFAULT_FORMAT = "parquet"
DEFAULT_MICRO_BATCH_MINUTES = 5
# A micro-batch's window ends this long before it starts: ledger writes stamp createdAt
# milliseconds before they commit, so 30 s covers writes in flight with a wide margin.
MICRO_BATCH_LAG = timedelta(seconds=30)
# The micro-batch timer's period (shared.jobs, ``export-microbatch``: every minute), and what a
# run is given to be written once due: the work item's pickup and the run itself (a
# micro-batch takes well under a second to a few seconds: bench/bench_exports.py).
MICRO_BATCH_TICK = timedelta(minutes=1)
MICRO_BATCH_MARGIN = timedelta(minutes=1)
# An incremental run reads only the customers whose ledger partitions were written since
# the newest run that started this long before its window: an entry is committed after its
# createdAt, give or take the writers' clocks, which this margin covers (the window's own
# lag assumes far less). Runs keep the ledger's lsn at their start (``lsnMarks``, the last
# LSN_MARKS of them); without a mark old enough, a run reads every customer.
CHANGE_MARGIN = timedelta(minutes=5)
# On a store without a change log (Cosmos DB) an incremental run finds the customers with a
# row in its window by one cross-partition query of the ledger by createdAt (indexed there),
# instead of a query per customer of the tenant every few minutes; a window holding more rows
# than this (a feed resumed after a long pause) reads every customer, as a backfill does.
WINDOW_SCAN_LIMIT = 50_000
LSN_MARKS = 8
# A compaction mark older than this is a dead compactor's (a day's compaction takes seconds to minutes).
COMPACTION_LEASE = timedelta(minutes=15)
ENCRYPTION_CSE = "azure-storage-cse-v2"

ENTRY_FIELDS = ("customerId", "seq", "transactionId", "entryType", "signedAmount", "status", "runningBalance",
                "runningPending", "runningReserved", "runningLifetimeEarned", "ordersCredited", "referenceOrderId",
                "referenceEntryId", "settlesEntryId", "ruleSetId", "ruleSetVersion", "arm", "createdAt", "recordedAt")
ATTEMPT_FIELDS = ("id", "endpointId", "messageId", "deliveryId", "eventType", "attempt", "status", "succeeded",
                  "latencyMs", "error", "createdAt")


def personal_fields() -> tuple[str, ...]:
    from shared.privacy.personal import PERSONAL_FIELDS

    return PERSONAL_FIELDS


def page_by(store: DocumentStore, container: str, pk: str | None, filters: tuple[Filter, ...], key: str,
            after: Any = None, page: int = PAGE) -> Iterator[dict[str, Any]]:
    """Every document matching ``filters``, ordered by ``key``, ``page`` at a time.

    Ties on ``key`` are safe: when a page ends on a value, every document with
    that value is read in one query before moving past it."""
    while True:
        bound = () if after is None else (Filter(key, ">", after),)
        docs = store.query(container, Query(pk=pk, filters=filters + bound, order_by=key, limit=page))
        if len(docs) < page:
            yield from docs
            return
        last = docs[-1][key]
        yield from (d for d in docs if d[key] != last)
        ties = store.query(container, Query(pk=pk, filters=filters + (Filter(key, "=", last),), order_by=key,
                                            limit=10_000))
        if len(ties) >= 10_000:
            raise Conflict(f"more than 10000 {container} documents share {key}={last!r}: cannot page them")
        yield from ties
        after = last


class ExportService:
    def __init__(self, store: DocumentStore, clock: Clock, keys: KeyProvider,
                 sink: BlobSink | Callable[[], BlobSink], *, vault: Any = None, lag: timedelta = DEFAULT_LAG,
                 chunk_size: int = 64 * 1024, page: int = PAGE, audit: Any = None,
                 part_customers: int = PART_CUSTOMERS,
                 export_keys: KeyProvider | Callable[[], KeyProvider] | None = None) -> None:
        assert part_customers >= 1
        self._store = store
        # The tenants' export keys (Parquet files), apart from the keys of personal data; built on first use.
        self._export_keys_factory = (export_keys if callable(export_keys) and not hasattr(export_keys, "wrap")
                                     else (lambda: export_keys or keys))
        self._export_keys: KeyProvider | None = None
        self._audit = audit
        self._locks_guard = threading.Lock()
        self._rewrite_locks: dict[str, threading.Lock] = {}
        self._clock = clock
        self._keys = keys
        self._sink_factory = sink if callable(sink) and not hasattr(sink, "put") else (lambda: sink)
        self._sink: BlobSink | None = None
        self._vault = vault
        self.lag = lag
        self.chunk_size = chunk_size
        self.page = page
        self.part_customers = part_customers

    @property
    def export_keys(self) -> KeyProvider:
        if self._export_keys is None:
            self._export_keys = self._export_keys_factory()  # type: ignore[operator]
        return self._export_keys

    @property
    def sink(self) -> BlobSink:
        if self._sink is None:
            self._sink = self._sink_factory()  # type: ignore[operator]
        return self._sink

    # --- settings --------------------------------------------------------------------

    def settings(self, tenant_id: str) -> dict[str, Any]:
        return self._settings_view(tenant_id, self._store.read(EXPORTS, tenant_id, SETTINGS_ID))

    @staticmethod
    def _settings_view(tenant_id: str, doc: dict[str, Any] | None) -> dict[str, Any]:
        excluded = list(personal_fields()) if doc is None else doc["excludedPersonalFields"]
        return {"tenantId": tenant_id, "excludedPersonalFields": excluded,
                "exportedPersonalFields": [f for f in personal_fields() if f not in excluded],
                "format": (doc or {}).get("format", DEFAULT_FORMAT),
                "microBatchMinutes": (doc or {}).get("microBatchMinutes", DEFAULT_MICRO_BATCH_MINUTES)}

    def save_settings(self, tenant_id: str, excluded: Iterable[str] | None = None, *, format: str | None = None,
                      micro_batch_minutes: int | None = None) -> dict[str, Any]:
        """``excluded`` personal fields, the file ``format`` (parquet | ndjson) and the
        micro-batch period in minutes (1..1440); None keeps the current value."""
        return self.change_settings(tenant_id, excluded, format=format, micro_batch_minutes=micro_batch_minutes).after

    def change_settings(self, tenant_id: str, excluded: Iterable[str] | None = None, *, format: str | None = None,
                        micro_batch_minutes: int | None = None) -> Change:
        """``save_settings`` with the settings it replaced: each change built on the stored
        settings it replaces (shared.store.replace), a repeat changing nothing."""
        if excluded is not None:
            unknown = [f for f in excluded if f not in personal_fields()]
            if unknown:
                raise ValidationFailed(f"unknown personal fields {unknown}; known: {', '.join(personal_fields())}")
        if format is not None and format not in FORMATS:
            raise ValidationFailed(f"format must be one of {', '.join(FORMATS)}")
        if micro_batch_minutes is not None and (not isinstance(micro_batch_minutes, int)
                                                or isinstance(micro_batch_minutes, bool)
                                                or not 1 <= micro_batch_minutes <= 1440):
            raise ValidationFailed("microBatchMinutes must be a whole number of minutes from 1 to 1440")

        def build(current: dict[str, Any] | None) -> dict[str, Any]:
            now = self._settings_view(tenant_id, current)
            return {"id": SETTINGS_ID, "pk": tenant_id, "docType": "exportSettings", "tenantId": tenant_id,
                    "excludedPersonalFields": sorted(set(now["excludedPersonalFields"] if excluded is None
                                                         else excluded)),
                    "format": now["format"] if format is None else format,
                    "microBatchMinutes": now["microBatchMinutes"] if micro_batch_minutes is None
                    else micro_batch_minutes, "updatedAt": iso(self._clock.now())}

        keys = ("excludedPersonalFields", "format", "microBatchMinutes")
        done = replace(self._store, EXPORTS, tenant_id, SETTINGS_ID, build,
                       content=lambda doc: {k: doc.get(k) for k in keys})
        before, after = self._settings_view(tenant_id, done.before), self._settings_view(tenant_id, done.after)
        return Change(before, after, done.changed and before != after)

    # --- runs ------------------------------------------------------------------------

    def _state(self, tenant_id: str) -> dict[str, Any]:
        return self._store.read(EXPORTS, tenant_id, STATE_ID) or {
            "id": STATE_ID, "pk": tenant_id, "docType": "exportState", "tenantId": tenant_id,
            "watermarks": {}, "pending": None}

    def _save_state(self, state: dict[str, Any]) -> dict[str, Any]:
        try:
            if "_etag" in state:
                return self._store.upsert(EXPORTS, state, if_match=state["_etag"])
            return self._store.create(EXPORTS, state)
        except (PreconditionFailed, DocumentExists):
            raise Conflict(f"another export run of tenant {state['tenantId']} is in progress") from None

    @tracing.traced("export run", from_args={"accrue.tenant": "tenant_id"})
    def run(self, tenant_id: str) -> dict[str, Any]:
        """The incremental run of one tenant (or the redo of its unfinished one); returns the manifest."""
        manifest = self.run_slice(tenant_id, max_files=None)
        assert manifest is not None, "an unbounded run finishes"
        return manifest

    def run_slice(self, tenant_id: str, max_files: int | None, run_key: str | None = None,
                  lag: timedelta | None = None) -> dict[str, Any] | None:
        """``run`` in bounded pieces: the manifest once the run is finished, else None.

        ``run_key`` names the run for its caller (the nightly work item: ``nightly:<day>``):
        once a run of that key finished, calling again returns its manifest instead of
        starting another run, so a caller that died after the last slice but before
        noting it was done does not export twice.

        Resumable per file: each file's manifest entry is recorded in the pending run
        (ETag-guarded) as soon as the file is written, and a redo writes only the files
        not recorded yet. With ``max_files``, at most that many files are written by this
        call, which returns None if the run is not finished (the nightly work item calls
        it so, one bounded slice at a time)."""
        state = self._state(tenant_id)
        pending = state.get("pending")
        if pending is None and run_key is not None and state.get("lastRunKey") == run_key:
            done = self._read_manifest(tenant_id, state["lastRunId"], f"{tenant_id}/incremental/{state['lastRunId']}")
            assert done is not None, "a finished run has its manifest"
            return done
        if pending is None:
            now = self._clock.now()
            run_id = now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
            pending = {"runId": run_id, "to": iso(now - (self.lag if lag is None else lag)), "startedAt": iso(now),
                       "from": {s: state["watermarks"].get(s) for s in SUBJECTS}, "files": [], "runKey": run_key,
                       "format": self.settings(tenant_id)["format"]}
            lsn = latest_lsn(self._store, LEDGER)
            if lsn is not None:
                pending["ledgerLsn"] = lsn
            state = self._save_state(dict(state, pending=pending))
        else:
            log.info("export of tenant %s: resuming unfinished run %s (%d of %d files written)", tenant_id,
                        pending["runId"], len(pending.get("files", [])), len(SUBJECTS), extra=fields(tenant=tenant_id))
        prefix = f"{tenant_id}/incremental/{pending['runId']}"
        manifest = self._read_manifest(tenant_id, pending["runId"], prefix)
        if manifest is None:
            files = list(pending.get("files", []))
            cursors = dict(pending.get("cursors", {}))  # subject -> the last customer of its last part
            written = 0
            allowed = self.settings(tenant_id)["exportedPersonalFields"] if self._vault is not None else []
            # By window start (the subjects' watermarks move together, so usually one): read once
            # per slice, not once per part of each per-customer subject.
            changed_since: dict[str | None, list[str] | None] = {}
            for subject in SUBJECTS:
                while not _subject_complete(files, subject):  # written by an earlier slice, or not yet
                    if max_files is not None and written >= max_files:
                        return None
                    part = _next_part(files, subject)
                    lower = pending["from"].get(subject)
                    if subject in PER_CUSTOMER_SUBJECTS and lower not in changed_since:
                        changed_since[lower] = self._changed_customers_since(tenant_id, lower, pending, state)
                    changed = changed_since.get(lower) if subject in PER_CUSTOMER_SUBJECTS else None
                    entries, last = self._write_file(tenant_id, pending["runId"], prefix, subject, lower,
                                                     pending["to"], allowed, part=part,
                                                     after_customer=cursors.get(subject),
                                                     fmt=pending.get("format", "ndjson"), changed=changed)
                    files.extend(entries)
                    cursors[subject] = last
                    written += 1
                    pending = dict(pending, files=files, cursors=cursors)
                    state = self._save_state(dict(state, pending=pending))
            manifest = self._publish_manifest(tenant_id, pending["runId"], "incremental", prefix, pending["from"],
                                              pending["to"], SUBJECTS, pending["startedAt"], files)
        else:
            # Published before the run could end (a crash): its check after publishing may
            # not have run.
            manifest = self._check_erased(tenant_id, f"{prefix}/manifest.json", manifest)
        # The run's record first (an upsert by run id: a retry writes the same one), then the state
        # that ends the run: in the other order a crash between them lost the run from the list for
        # good, since a finished state is never resumed.
        self._record_run(tenant_id, manifest, prefix)
        watermarks = dict(state["watermarks"], **{s: pending["to"] for s in SUBJECTS})
        marks = list(state.get("lsnMarks") or [])
        if pending.get("ledgerLsn") is not None:
            marks = (marks + [{"at": pending["startedAt"], "lsn": pending["ledgerLsn"]}])[-LSN_MARKS:]
        self._save_state(dict(state, watermarks=watermarks, pending=None, lastRunId=pending["runId"],
                              lastRunKey=pending.get("runKey"), lastRunAt=iso(self._clock.now()), lsnMarks=marks))
        return manifest

    # --- near-real-time feed ---------------------------------------------------------

    def microbatch_due(self, tenant_id: str) -> bool:
        """Whether the tenant's micro-batch must run at this tick to keep the feed's promise
        (``freshness_due``): a transaction reaches the warehouse within ``microBatchMinutes``
        (default 5) of its commit. An unfinished run is redone at once."""
        state = self._state(tenant_id)
        if state.get("pending") is not None or not state.get("lastRunAt"):
            return True
        marks = [state["watermarks"].get(s) for s in SUBJECTS]
        if not all(marks):
            return True  # a subject never exported: its whole history is waiting
        return freshness_due(parse_iso(min(m for m in marks if m)), self._clock.now(),
                             timedelta(minutes=self.settings(tenant_id)["microBatchMinutes"]))

    def microbatch(self, tenant_id: str, max_files: int | None = None,
                   run_key: str | None = None) -> dict[str, Any] | None:
        """One micro-batch: the incremental run (same watermarks, manifest and redo) with a
        short lag (``MICRO_BATCH_LAG``); run when ``microbatch_due`` says so, a committed row
        reaches the warehouse within the tenant's ``microBatchMinutes``."""
        return self.run_slice(tenant_id, max_files=max_files, run_key=run_key, lag=min(self.lag, MICRO_BATCH_LAG))

    def compact(self, tenant_id: str, day: str) -> dict[str, Any] | None:
        """The nightly step: every incremental file of UTC ``day`` (YYYY-MM-DD) merged into one
        Parquet file per subject, ``<tenant>/compacted/subject=<s>/date=<day>/<day>.parquet``,
        with its manifest ``<tenant>/compacted/<day>/manifest.json`` naming the runs it
        replaces. None while the feed has not passed the end of the day (retried later); the
        manifest already written is returned as is (exactly once). Rows keep their rowKey and
        rowVersion, so a warehouse loading the compacted day and the micro-batches merges them
        into the same rows."""
        prefix = f"{tenant_id}/compacted/{day}"
        done = self._read_manifest(tenant_id, f"compact-{day}", prefix)
        if done is not None:
            return done
        if self.settings(tenant_id)["format"] != "parquet":
            return None  # NDJSON runs are not compacted
        end = iso(datetime.fromisoformat(day + "T00:00:00+00:00") + timedelta(days=1) - timedelta(microseconds=1))
        state = self._state(tenant_id)
        if any((state["watermarks"].get(s) or "") < end for s in SUBJECTS):
            return None  # micro-batches of the day still to come
        # One compactor of a tenant at a time (ETag-guarded like a pending run: a racer gets
        # Conflict); a mark older than COMPACTION_LEASE is a dead compactor's, taken over.
        mark = state.get("compacting")
        now = self._clock.now()
        if mark and mark["day"] == day and now - parse_iso(mark["at"]) < COMPACTION_LEASE:
            raise Conflict(f"tenant {tenant_id}'s day {day} is being compacted")
        self._save_state(dict(state, compacting={"day": day, "at": iso(now)}))
        try:
            manifest = self._compact(tenant_id, day, prefix, end)
        finally:
            state = self._state(tenant_id)
            if (state.get("compacting") or {}).get("day") == day:
                self._save_state(dict(state, compacting=None))
        return manifest

    def _compact(self, tenant_id: str, day: str, prefix: str, end: str) -> dict[str, Any]:
        import pyarrow.parquet as pq  # noqa: PLC0415 - pyarrow on demand
        import pyarrow as pa  # noqa: PLC0415

        from shared.exports.keys import resolver  # noqa: PLC0415
        from shared.exports.parquet import arrow_schema, conform  # noqa: PLC0415

        started = iso(self._clock.now())
        manifests = []
        for info in self.sink.list(f"{tenant_id}/incremental/"):
            if info.path.endswith("/manifest.json"):
                manifests.append(json.loads(self.sink.read(info.path)))
        files: list[dict[str, Any]] = []
        replaced = sorted({m["runId"] for m in manifests
                           if any(f.get("date") == day for f in m["files"])})
        for subject in SUBJECTS:
            sources = [f for m in manifests for f in m["files"]
                       if f["subject"] == subject and f.get("format") == "parquet" and f.get("date") == day]
            schema = arrow_schema(subject)
            # What the merged sources hold, not today's settings: erasure scrubs a file by its
            # manifest's label, so the compacted file carries every personal field any source
            # carried (a source from before labels: all of them).
            held = sorted({name for f in sources for name in f.get("personalFields", PERSONAL_FIELDS)})
            spool = tempfile.TemporaryFile(prefix="accrue-compact-")
            rows = 0
            try:
                with pq.ParquetWriter(spool, schema, compression="zstd") as writer:
                    for source in sorted(sources, key=lambda f: f["path"]):
                        data = b"".join(self.sink.open(source["path"], resolver(self.export_keys, tenant_id)))
                        table = conform(pq.read_table(pa.BufferReader(data)), schema)
                        writer.write_table(table)
                        rows += table.num_rows
                path = f"{tenant_id}/compacted/subject={subject}/date={day}/{day}.parquet"
                spool.seek(0)
                sha = hashlib.sha256()
                while chunk := spool.read(1024 * 1024):
                    sha.update(chunk)
                size = spool.tell()
                spool.seek(0)
                kek = ExportKek(self.export_keys, tenant_id)
                self.sink.put(path, iter(lambda: spool.read(1024 * 1024), b""), "application/vnd.apache.parquet",
                              {"tenant": tenant_id, "subject": subject, "run": f"compact-{day}"},
                              overwrite=True, kek=kek)
            finally:
                spool.close()
            files.append({"subject": subject, "path": path, "part": 1, "complete": True, "date": day,
                          "rows": rows, "plaintextBytes": size, "plaintextSha256": sha.hexdigest(),
                          "kek": {"kid": kek.get_kid(), "alg": kek.get_key_wrap_algorithm()},
                          "format": "parquet", "encryption": ENCRYPTION_CSE, "schema": f"export.{subject}",
                          "schemaVersion": COLUMNS_VERSION, "replacesRuns": replaced,
                          "personalFields": held if subject == PERSONAL_SUBJECT else []})
        lower = {s: iso(datetime.fromisoformat(day + "T00:00:00+00:00") - timedelta(microseconds=1))
                 for s in SUBJECTS}
        manifest = self._publish_manifest(tenant_id, f"compact-{day}", "compaction", prefix, lower, end, SUBJECTS,
                                          started, files)
        self._record_run(tenant_id, manifest, prefix)
        return manifest

    def backfill(self, tenant_id: str, start: datetime, end: datetime,
                 subjects: Iterable[str] | None = None) -> dict[str, Any]:
        """Export ``[start, end)`` again under ``<tenant>/backfill/<runId>/``; no watermark moves."""
        chosen = tuple(subjects or SUBJECTS)
        bad = [s for s in chosen if s not in SUBJECTS]
        if bad or not chosen:
            raise ValidationFailed(f"subjects must be among {', '.join(SUBJECTS)}")
        if not start < end:
            raise ValidationFailed("the backfill's start must be before its end")
        outside = [FieldProblem(name, problem) for name, moment in (("from", start), ("to", end))
                   if (problem := instant_problem(moment)) is not None]
        if outside:
            raise ValidationFailed("the backfill's window is outside the instants Accrue accepts", outside)
        run_id = "bf-" + self._clock.now().strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
        prefix = f"{tenant_id}/backfill/{run_id}"
        # (from, to] with to = end - 1 µs is [start, end) on microsecond timestamps.
        lower = iso(start - timedelta(microseconds=1))
        try:
            manifest = self._write_run(tenant_id, run_id, "backfill", prefix, {s: lower for s in chosen},
                                       iso(end - timedelta(microseconds=1)), chosen)
        except BaseException:
            # A backfill has no pending state a retry would resume (a retry is a new run id), and
            # the erasure finds files through manifests: files a failed backfill wrote would keep
            # an erased customer's personal data for good (an outside review). Nothing of the
            # failed run stays. (A process killed outright skips this: docs/exports.md.)
            self._discard_run(prefix)
            raise
        self._record_run(tenant_id, manifest, prefix)
        return manifest

    def _discard_run(self, prefix: str) -> None:
        for info in self.sink.list(prefix + "/"):
            try:
                self.sink.discard(info.path)
            except Exception as exc:  # noqa: BLE001 - the run's own failure is what the caller sees
                log.error("export run files under %s: one could not be removed (%s)", prefix, type(exc).__name__,
                          extra=fields(error=type(exc).__name__))

    def run_all(self) -> dict[str, Any]:
        """The nightly job: every tenant; one tenant's failure does not stop the others."""
        tenants = self.tenant_ids()
        done, failed = [], []
        for tenant_id in tenants:
            try:
                self.run(tenant_id)
                done.append(tenant_id)
            except Exception as exc:  # noqa: BLE001 - logged per tenant, raised at the end
                failed.append(tenant_id)
                log.error("export of tenant %s failed: %s: %s; watermarks unchanged, the next run redoes it",
                          tenant_id, type(exc).__name__, exc, extra=fields(tenant=tenant_id))
        if failed:
            raise RuntimeError(f"exports failed for tenant(s) {', '.join(failed)}; see the log")
        return {"tenants": done}

    def tenant_ids(self) -> list[str]:
        return [d["id"] for d in page_by(self._store, TENANTS, None, (), "id") if d["id"] == d["pk"]]

    def runs(self, tenant_id: str, limit: int | None = 50) -> list[dict[str, Any]]:
        """Finished runs, newest first: the newest ``limit``, or every one (``None``: keyset pages)."""
        filters = (Filter("docType", "=", "exportRun"),)
        docs = (sorted(read_all(self._store, EXPORTS, tenant_id, filters), key=lambda d: (d["startedAt"], d["runId"]),
                       reverse=True) if limit is None else
                self._store.query(EXPORTS, Query(pk=tenant_id, filters=filters, order_by="startedAt", descending=True,
                                                 limit=limit)))
        return [{k: v for k, v in d.items() if k not in ("pk", "_etag", "_ts")} for d in docs]

    def _record_run(self, tenant_id: str, manifest: dict[str, Any], prefix: str) -> None:
        doc = {"id": "run." + manifest["runId"], "pk": tenant_id, "docType": "exportRun", "tenantId": tenant_id,
               "runId": manifest["runId"], "kind": manifest["kind"], "startedAt": manifest["startedAt"],
               "finishedAt": manifest["finishedAt"], "manifest": f"{prefix}/manifest.json",
               "rows": rows_per_subject(manifest),
               "from": manifest["from"], "to": manifest["to"]}
        self._store.upsert(EXPORTS, doc)

    def _read_manifest(self, tenant_id: str, run_id: str, prefix: str) -> dict[str, Any] | None:
        try:
            existing = json.loads(self.sink.read(f"{prefix}/manifest.json"))
        except BlobNotFound:
            return None
        log.info("export run %s of tenant %s: manifest already written, completing the run", run_id, tenant_id, extra=fields(tenant=tenant_id))
        return existing  # type: ignore[no-any-return]

    def _write_run(self, tenant_id: str, run_id: str, kind: str, prefix: str, lower: dict[str, str | None],
                   upper: str, subjects: Iterable[str]) -> dict[str, Any]:
        existing = self._read_manifest(tenant_id, run_id, prefix)
        if existing is not None:
            return existing
        started = iso(self._clock.now())
        allowed = self.settings(tenant_id)["exportedPersonalFields"] if self._vault is not None else []
        subjects = tuple(subjects)
        files: list[dict[str, Any]] = []
        fmt = self.settings(tenant_id)["format"]
        for subject in subjects:
            last: str | None = None
            while not _subject_complete(files, subject):
                part = _next_part(files, subject)
                entries, last = self._write_file(tenant_id, run_id, prefix, subject, lower.get(subject), upper,
                                                 allowed, part=part, after_customer=last, fmt=fmt)
                files.extend(entries)
        return self._publish_manifest(tenant_id, run_id, kind, prefix, lower, upper, subjects, started, files)

    def _changed_customers_since(self, tenant_id: str, lower: str | None, pending: dict[str, Any],
                                 state: dict[str, Any]) -> list[str] | None:
        """The customers whose ledger partitions were written between the newest run mark
        at least ``CHANGE_MARGIN`` older than ``lower`` and this run's start, sorted: every
        entry of the window ``(lower, to]`` is in one of them (committed after that mark,
        before this run). On a store without a change log: the customers with a row in the
        window (``_customers_in_window``). None: read every customer (no window start, no
        mark old enough, or a window too large to query)."""
        upto = pending.get("ledgerLsn")
        if lower is None:
            return None
        if upto is None:
            return None if hasattr(type(self._store), "changed_partitions") else \
                self._customers_in_window(tenant_id, lower, pending["to"])
        before = parse_iso(lower) - CHANGE_MARGIN
        old_enough = [m["lsn"] for m in state.get("lsnMarks") or [] if parse_iso(m["at"]) <= before]
        if not old_enough:
            return None
        prefix, below = _customer_pks(tenant_id)
        pks = changed_partitions(self._store, LEDGER, min(max(old_enough), upto), upto, prefix, below)
        return None if pks is None else [pk[len(prefix):] for pk in pks]

    def _customers_in_window(self, tenant_id: str, lower: str, upper: str) -> list[str] | None:
        """The customers (sorted) whose ledger partitions hold a row of a per-customer subject
        committed in ``(lower, upper]`` (created then; imported ones recorded then), by one
        cross-partition query (a second one while imports ran) on a store without a change
        log; None past ``WINDOW_SCAN_LIMIT`` rows: read every customer instead."""
        prefix, below = _customer_pks(tenant_id)
        tenant = (Filter("pk", ">=", prefix), Filter("pk", "<", below), Filter("docType", "in", list(WINDOW_DOC_TYPES)))
        searches = [(tenant + (Filter("createdAt", ">", lower), Filter("createdAt", "<=", upper)), "createdAt")]
        if self._imports_between(tenant_id, lower, upper):
            searches.append((tenant + (Filter("imported", "=", True), Filter("recordedAt", ">", lower),
                                       Filter("recordedAt", "<=", upper)), "recordedAt"))
        customers: set[str] = set()
        seen = 0
        for filters, key in searches:
            for doc in page_by(self._store, LEDGER, None, filters, key, page=self.page):
                seen += 1
                if seen > WINDOW_SCAN_LIMIT:
                    return None
                customers.add(doc["pk"][len(prefix):])
        return sorted(customers)

    def _customers_after(self, tenant_id: str, after_customer: str | None,
                         changed: list[str] | None) -> Iterator[dict[str, Any]]:
        """The tenant's customer documents by id after ``after_customer``: all of them, or
        (``changed``) only those among ``changed``."""
        if changed is None:
            return page_by(self._store, CUSTOMERS, None, (Filter("tenantId", "=", tenant_id),), "customerId",
                           after=after_customer, page=self.page)
        return self._registered(tenant_id, [c for c in changed if after_customer is None or c > after_customer])

    def _registered(self, tenant_id: str, customer_ids: list[str]) -> Iterator[dict[str, Any]]:
        """The customer documents of ``customer_ids`` (sorted) that exist, in that order."""
        for start in range(0, len(customer_ids), 500):
            chunk = customer_ids[start:start + 500]
            for doc in read_many(self._store, CUSTOMERS, [(customer_pk(tenant_id, c), c) for c in chunk]):
                if doc is not None:
                    yield doc

    def _write_file(self, tenant_id: str, run_id: str, prefix: str, subject: str, lower: str | None, upper: str,
                    allowed: list[str], *, part: int = 1, after_customer: str | None = None,
                    fmt: str = "ndjson", changed: list[str] | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """One file of a subject (overwritten if a died attempt left one: only the manifest
        publishes it); returns its manifest entry and, for the per-customer subjects, the
        last customer it covers (where the next part starts). The entry's ``complete``
        says whether it is the subject's last part. ``changed``: the only customers whose
        rows can be in the window (``_changed_customers_since``); None: every customer."""
        assert part >= 1 and (part == 1) == (after_customer is None or subject not in PER_CUSTOMER_SUBJECTS)
        path = ndjson_path(prefix, subject, part)
        span = _Span()
        imports = subject in IMPORTED_SUBJECTS and self._imports_between(tenant_id, lower, upper)
        if subject in PER_CUSTOMER_SUBJECTS:
            source = self._per_customer_rows(tenant_id, subject, lower, upper, after_customer, span,
                                             cap=self.part_customers, changed=changed, imports=imports)
        else:
            source = self._rows(tenant_id, subject, lower, upper, allowed)
            span.complete = True
        if fmt == "parquet":
            if subject == COLUMNAR_SUBJECT and hasattr(type(self._store), "scan_json") and not imports:
                # The columnar read (no Python object per entry); same rows, same span. Not
                # when imported rows may be in the window: the row path finds those.
                def fill(writer: Any) -> None:
                    self._fill_transactions(tenant_id, lower, upper, after_customer, span, writer, changed)
            else:
                def fill(writer: Any) -> None:
                    writer.add(source)
            entries = self._write_parquet(tenant_id, run_id, prefix, subject, lower, upper, allowed, part, fill)
            for entry in entries:
                entry["complete"] = span.complete
            return entries, span.last
        rows = _Counter(source)
        try:
            written = self._put_ndjson(tenant_id, run_id, path, subject, _gzip_lines(rows))
        except Exception as exc:
            log.error("export run %s of tenant %s: writing %s failed (%s: %s); no watermark moved, "
                      "the next run redoes this file", run_id, tenant_id, path, type(exc).__name__, exc, extra=fields(tenant=tenant_id))
            raise
        return [{
            "subject": subject, "path": path, "part": part, "complete": span.complete, "rows": rows.count,
            "from": lower, "to": upper, **written, "schema": f"export.{subject}.v1",
            # Which personal fields the rows may hold: what an erasure must rewrite (``scrub``).
            "personalFields": list(allowed) if subject == PERSONAL_SUBJECT else [],
        }], span.last

    def _put_ndjson(self, tenant_id: str, run_id: str, path: str, subject: str,
                    plaintext: Iterable[bytes]) -> dict[str, Any]:
        """Gzip NDJSON stored under Azure client-side encryption v2 (the tenant's export key,
        a content key per file), as Parquet files are: Microsoft's SDK decrypts either. The
        manifest entry's fields on the file (size and SHA-256 of the gzip bytes, key, format)."""
        plain_hash = hashlib.sha256()
        size = 0

        def counted() -> Iterator[bytes]:
            nonlocal size
            for piece in plaintext:
                plain_hash.update(piece)
                size += len(piece)
                yield piece

        kek = ExportKek(self.export_keys, tenant_id)
        self.sink.put(path, counted(), "application/gzip", {"tenant": tenant_id, "subject": subject, "run": run_id},
                      overwrite=True, kek=kek)
        return {"plaintextBytes": size, "plaintextSha256": plain_hash.hexdigest(),
                "kek": {"kid": kek.get_kid(), "alg": kek.get_key_wrap_algorithm()},
                "format": "ndjson+gzip", "encryption": ENCRYPTION_CSE}

    def _write_parquet(self, tenant_id: str, run_id: str, prefix: str, subject: str, lower: str | None,
                       upper: str, allowed: list[str], part: int,
                       fill: Callable[[Any], None]) -> list[dict[str, Any]]:
        """One part of a subject as Parquet (``fill`` gives the ``PartitionedWriter`` its rows),
        a file per date partition, each encrypted with Azure client-side encryption v2 under
        the tenant's export key (a content key per file)."""
        from shared.exports.parquet import PartitionedWriter, digest  # noqa: PLC0415 - pyarrow on demand

        writer = PartitionedWriter(subject)
        fill(writer)
        entries = []
        for partition in writer.partitions(empty_date=upper[:10]):
            try:
                path = parquet_path(tenant_id, prefix, subject, partition.date, run_id, part)
                plain_sha = digest(partition)
                kek = ExportKek(self.export_keys, tenant_id)
                try:
                    self.sink.put(path, partition.chunks(), "application/vnd.apache.parquet",
                                  {"tenant": tenant_id, "subject": subject, "run": run_id}, overwrite=True, kek=kek)
                except Exception as exc:
                    log.error("export run %s of tenant %s: writing %s failed (%s: %s); no watermark moved, "
                              "the next run redoes this file", run_id, tenant_id, path, type(exc).__name__, exc,
                              extra=fields(tenant=tenant_id))
                    raise
                size = partition.spool.tell()
            finally:
                partition.spool.close()
            entries.append({
                "subject": subject, "path": path, "part": part, "date": partition.date, "rows": partition.rows,
                "from": lower, "to": upper, "plaintextBytes": size, "plaintextSha256": plain_sha,
                "kek": {"kid": kek.get_kid(), "alg": kek.get_key_wrap_algorithm()},
                "format": "parquet", "encryption": ENCRYPTION_CSE, "schema": f"export.{subject}",
                "schemaVersion": COLUMNS_VERSION,
                "personalFields": list(allowed) if subject == PERSONAL_SUBJECT else [],
            })
        return entries

    def _publish_manifest(self, tenant_id: str, run_id: str, kind: str, prefix: str, lower: dict[str, str | None],
                          upper: str, subjects: Iterable[str], started: str,
                          files: list[dict[str, Any]]) -> dict[str, Any]:
        manifest_path = f"{prefix}/manifest.json"
        manifest = {
            "format": "accrue-export-manifest", "schemaVersion": SCHEMA_VERSION, "tenantId": tenant_id,
            "runId": run_id, "kind": kind, "from": lower, "to": upper, "startedAt": started,
            "finishedAt": iso(self._clock.now()), "subjects": list(subjects), "files": files,
            # Each subject's columns and their version travel with the data (shared.exports.columns).
            "schemas": {s: schema_of(s) for s in subjects},
        }
        try:
            self.sink.put(manifest_path, json.dumps(manifest, indent=2, sort_keys=True).encode(), "application/json",
                          _manifest_metadata(manifest))
        except BlobExists:
            return self._check_erased(tenant_id, manifest_path, json.loads(self.sink.read(manifest_path)))
        except Exception as exc:
            log.error("export run %s of tenant %s: writing its manifest failed (%s: %s); no watermark moved, "
                      "the next run redoes this run", run_id, tenant_id, type(exc).__name__, exc, extra=fields(tenant=tenant_id))
            raise
        return self._check_erased(tenant_id, manifest_path, manifest)

    def _check_erased(self, tenant_id: str, manifest_path: str, manifest: dict[str, Any]) -> dict[str, Any]:
        """The check after publishing: a customer erased while the run read profiles may be
        in its files (another process's data-key cache outlives the key by up to its TTL).
        Once the manifest is out, an erasure finds these files; one done before is caught
        here. Run on every publication, and again by a run resumed after its manifest was
        written (a crash after publishing skipped it): the manifest as it is after."""
        for entry in manifest["files"]:
            if entry.get("personalFields"):
                removed = self._scrub_file(tenant_id, manifest_path, entry["path"], set())
                self._audit_rewritten(tenant_id, {customer_id: [entry["path"]] for customer_id in removed})
        return json.loads(self.sink.read(manifest_path))  # type: ignore[no-any-return]

    # --- erasure ---------------------------------------------------------------------

    def scrub(self, tenant_id: str, erased: Iterable[str]) -> dict[str, list[str]]:
        """Rewrite every export file of the tenant that holds personal data of an erased
        customer (those of ``erased``, and any other whose profile is now erased), without
        it: their rows stay (id, tags, tier; ``erased: true``), their personal fields go.

        Found through the manifests in the blob store (not the database, so this also
        works after a database restore), only files whose manifest lists personal fields
        (or, written before manifests said so, every customers file). Each rewrite is a
        new file under a new data key, and the manifest's entry (sizes, SHA-256s, key) is
        updated. Audited ``customer.exports-rewritten`` per customer, with the files.
        Returns customer id -> files rewritten."""
        erased = set(erased)
        touched: dict[str, list[str]] = {}
        for info in self.sink.list(f"{tenant_id}/"):
            # Listed with its metadata: a run without personal data is skipped unread.
            if not info.path.endswith("/manifest.json") or info.metadata.get(PERSONAL_METADATA) == "false":
                continue
            try:
                manifest = json.loads(self.sink.read(info.path))
            except (BlobNotFound, ValueError):
                continue
            for entry in manifest.get("files", []):
                if entry.get("subject") != PERSONAL_SUBJECT or entry.get("personalFields", None) == []:
                    continue
                for customer_id in self._scrub_file(tenant_id, info.path, entry["path"], erased):
                    touched.setdefault(customer_id, []).append(entry["path"])
        self._audit_rewritten(tenant_id, touched)
        return touched

    def _audit_rewritten(self, tenant_id: str, touched: dict[str, list[str]]) -> None:
        if self._audit is None:
            return
        for customer_id, paths in sorted(touched.items()):
            self._audit.record(tenant_id, "customer.exports-rewritten", None, target=f"customer:{customer_id}",
                               after={"files": sorted(paths)}, reason="erasure")

    def _scrub_file(self, tenant_id: str, manifest_path: str, path: str, erased: set[str]) -> set[str]:
        """Rewrite one customers file until it holds no personal data of an erased customer
        and matches its manifest entry; returns the customers whose data it removed.

        Two rewriters of one file (the erasure, an export run's own check) may race: each
        checks again after writing (fresh profile reads, the file's SHA-256 against the
        manifest), so the last one to write also verifies the result."""
        with self._rewrite_lock(path):
            return self._scrub_file_locked(tenant_id, manifest_path, path, erased)

    def _rewrite_lock(self, path: str) -> threading.Lock:
        """One rewriter of a file at a time in this process (others, in other processes,
        are caught by the check after each write)."""
        with self._locks_guard:
            return self._rewrite_locks.setdefault(path, threading.Lock())

    def _scrub_file_locked(self, tenant_id: str, manifest_path: str, path: str, erased: set[str]) -> set[str]:
        removed: set[str] = set()
        for _ in range(MAX_REWRITES):
            manifest = json.loads(self.sink.read(manifest_path))
            entry = next(f for f in manifest["files"] if f["path"] == path)
            if entry.get("format") == "parquet":
                gone = self._scrub_parquet(tenant_id, manifest_path, manifest, entry, erased)
                if gone is None:
                    return removed
                removed |= gone
                continue
            digest = hashlib.sha256()
            holders = {row["customerId"] for row in self._file_rows(tenant_id, manifest, path, digest)
                       if any(k in row for k in PERSONAL_FIELDS)}
            gone = holders & (erased | self._erased_now(tenant_id, holders))
            legacy = entry.get("encryption") != ENCRYPTION_CSE
            if not gone and digest.hexdigest() == entry["ciphertextSha256" if legacy else "plaintextSha256"]:
                return removed

            def stripped() -> Iterator[dict[str, Any]]:
                for row in self._file_rows(tenant_id, manifest, path, hashlib.sha256()):
                    if row.get("customerId") in gone:
                        row = {k: v for k, v in row.items() if k not in PERSONAL_FIELDS}
                        row["erased"] = True
                    yield row

            # Rewritten under client-side encryption whatever the file was (an ACRXENC1 file
            # becomes a CSE one): a new content key, the entry's key and digests replaced.
            rows = _Counter(stripped())
            written = self._put_ndjson(tenant_id, manifest["runId"], path, entry["subject"], _gzip_lines(rows))
            for stale in ("ciphertextBytes", "ciphertextSha256", "wrappedKey"):
                entry.pop(stale, None)
            entry.update(rows=rows.count, **written, rewrittenAt=iso(self._clock.now()))
            self.sink.put(manifest_path, json.dumps(manifest, indent=2, sort_keys=True).encode(), "application/json",
                          _manifest_metadata(manifest), overwrite=True)
            removed |= gone
            log.info("export file %s of tenant %s rewritten without %d erased customer(s)", path, tenant_id,
                     len(gone), extra=fields(tenant=tenant_id))
        raise Conflict(f"export file {path} kept changing under its rewrite; the erasures job retries")

    def _scrub_parquet(self, tenant_id: str, manifest_path: str, manifest: dict[str, Any], entry: dict[str, Any],
                       erased: set[str]) -> set[str] | None:
        """One pass over a Parquet customers file: None if it holds no erased customer's personal
        data and matches its entry; else the file is rewritten (a new content key, personal columns
        nulled and ``erased`` set for them), the entry updated, and the customers removed returned."""
        import pyarrow as pa  # noqa: PLC0415
        import pyarrow.compute as pc  # noqa: PLC0415
        import pyarrow.parquet as pq  # noqa: PLC0415

        from shared.exports.keys import resolver  # noqa: PLC0415
        from shared.exports.parquet import arrow_schema, conform  # noqa: PLC0415

        data = b"".join(self.sink.open(entry["path"], resolver(self.export_keys, tenant_id)))
        table = pq.read_table(pa.BufferReader(data))
        personal = [c for c in PERSONAL_FIELDS if c in table.column_names]
        holders: set[str] = set()
        if personal:
            has = None
            for name in personal:
                valid = pc.is_valid(table.column(name))
                has = valid if has is None else pc.or_(has, valid)
            holders = set(table.filter(has).column("customerId").to_pylist())
        gone = holders & (erased | self._erased_now(tenant_id, holders))
        if not gone and hashlib.sha256(data).hexdigest() == entry["plaintextSha256"]:
            return None
        mask = pc.is_in(table.column("customerId"), value_set=pa.array(sorted(gone), pa.string()))
        for name in personal:
            index = table.column_names.index(name)
            column = pc.if_else(mask, pa.scalar(None, table.schema.field(name).type), table.column(name))
            table = table.set_column(index, table.schema.field(name), column)
        index = table.column_names.index("erased")
        table = table.set_column(index, table.schema.field("erased"), pc.or_(table.column("erased"), mask))
        sink = pa.BufferOutputStream()
        pq.write_table(conform(table, arrow_schema(entry["subject"])), sink, compression="zstd")
        plain = sink.getvalue().to_pybytes()
        kek = ExportKek(self.export_keys, tenant_id)
        self.sink.put(entry["path"], plain, "application/vnd.apache.parquet",
                      {"tenant": tenant_id, "subject": entry["subject"], "run": manifest["runId"]},
                      overwrite=True, kek=kek)
        entry.update(rows=table.num_rows, plaintextBytes=len(plain), plaintextSha256=hashlib.sha256(plain).hexdigest(),
                     kek={"kid": kek.get_kid(), "alg": kek.get_key_wrap_algorithm()},
                     rewrittenAt=iso(self._clock.now()))
        self.sink.put(manifest_path, json.dumps(manifest, indent=2, sort_keys=True).encode(), "application/json",
                      _manifest_metadata(manifest), overwrite=True)
        log.info("export file %s of tenant %s rewritten without %d erased customer(s)", entry["path"], tenant_id,
                 len(gone), extra=fields(tenant=tenant_id))
        return gone

    def file_plaintext(self, tenant_id: str, manifest: dict[str, Any], entry: dict[str, Any],
                       digest: Any = None) -> Iterator[bytes]:
        """The plaintext of one file a manifest lists, streamed: gzip NDJSON or Parquet.

        Files under Azure client-side encryption v2 (every file written now) are opened
        with the tenant's export key; NDJSON files written before (``ACRXENC1``, under the
        tenant's key) still open, checked against their tenant, subject and run. ``digest``
        sees the bytes the manifest's SHA-256 covers: the plaintext for client-side
        encryption (``plaintextSha256``), the stored bytes for ``ACRXENC1`` (``ciphertextSha256``)."""
        from shared.exports.keys import resolver  # noqa: PLC0415

        if entry.get("encryption") == ENCRYPTION_CSE:
            for chunk in self.sink.open(entry["path"], resolver(self.export_keys, tenant_id)):
                if digest is not None:
                    digest.update(chunk)
                yield chunk
            return

        def ciphertext() -> Iterator[bytes]:
            for chunk in self.sink.open(entry["path"]):
                if digest is not None:
                    digest.update(chunk)
                yield chunk

        yield from decrypt_stream(self._keys, ciphertext(), tenant_id=tenant_id, subject=entry["subject"],
                                  run_id=manifest["runId"])

    def _file_rows(self, tenant_id: str, manifest: dict[str, Any], path: str, digest: Any) -> Iterator[dict[str, Any]]:
        """The rows of an NDJSON export file, streamed (bounded memory); ``digest`` as in ``file_plaintext``."""
        entry = next(f for f in manifest["files"] if f["path"] == path)
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        tail = b""
        for plain in self.file_plaintext(tenant_id, manifest, entry, digest):
            tail += inflate.decompress(plain)
            *lines, tail = tail.split(b"\n")
            for line in lines:
                if line:
                    yield json.loads(line)
        tail += inflate.flush()
        for line in tail.split(b"\n"):
            if line:
                yield json.loads(line)

    def _erased_now(self, tenant_id: str, customer_ids: set[str]) -> set[str]:
        ids = sorted(customer_ids)
        docs = read_many(self._store, CUSTOMERS, [(customer_pk(tenant_id, c), c) for c in ids])
        return {c for c, doc in zip(ids, docs) if doc is not None and doc.get("erasedAt")}

    # --- rows ------------------------------------------------------------------------

    def _rows(self, tenant_id: str, subject: str, lower: str | None, upper: str,
              allowed: list[str]) -> Iterator[dict[str, Any]]:
        window = (Filter("createdAt", "<=", upper),) + ((Filter("createdAt", ">", lower),) if lower else ())
        if subject == "customers":
            yield from self._customer_rows(tenant_id, lower, upper, allowed)
        elif subject == "erasures":
            for doc in self._changed_customers(tenant_id, lower, upper):
                erased_at = doc.get("erasedAt")
                if erased_at and (lower is None or erased_at > lower) and erased_at <= upper:
                    yield {"tenantId": tenant_id, "customerId": doc["customerId"], "erasedAt": erased_at}
        elif subject == "agentdecisions":
            # The agents' decision trail (issue 21): rows defined by shared.agents.trail (no personal data).
            from shared.agents.trail import export_rows  # noqa: PLC0415 - the subject is self-contained there

            yield from export_rows(self._store, tenant_id, lower, upper, page=self.page)
        elif subject == "webhookdeliveries":
            # One partition per tenant and UTC day (shared/store/layout.py): the window's
            # days oldest first, so rows keep their createdAt order across days.
            # No attempt is dated after today, nor kept longer than the longest retention an
            # operator may set: a backfill to the year 9000 or from 1970 reads those days only
            # (it once queried every day of its window, 2.5 million of them).
            today = self._clock.now().date()
            last = min(parse_iso(upper).date(), today + timedelta(days=1))
            first = parse_iso(lower).date() if lower else last - timedelta(days=DEFAULT_TTL.days[WEBHOOK_ATTEMPTS] + 1)
            first = max(first, today - timedelta(days=MAX_TTL_DAYS + 1))
            for pk in reversed(attempt_pks(tenant_id, min(first, last), last)):
                for doc in page_by(self._store, WEBHOOK_ATTEMPTS, pk, window[:1], "createdAt",
                                   after=lower, page=self.page):
                    yield {"tenantId": tenant_id, **{k: doc.get(k) for k in ATTEMPT_FIELDS}}
        else:
            yield from self._per_customer_rows(tenant_id, subject, lower, upper, None, _Span(), cap=None)

    def _imports_between(self, tenant_id: str, lower: str | None, upper: str) -> bool:
        """Whether imported rows may have been recorded in ``(lower, upper]`` (an import of the
        tenant ran then, ``shared.imports.activity``): only then is the window searched for them."""
        from shared.imports.activity import wrote_between  # noqa: PLC0415 - imports' own module

        return wrote_between(self._store, tenant_id, lower, upper, CHANGE_MARGIN)

    def _per_customer_rows(self, tenant_id: str, subject: str, lower: str | None, upper: str,
                           after_customer: str | None, span: "_Span", cap: int | None,
                           changed: list[str] | None = None, imports: bool = False) -> Iterator[dict[str, Any]]:
        """The rows of a per-customer subject, customers by id after ``after_customer`` (of
        ``changed`` only, when given), at most ``cap`` of them (None: all); ``span`` learns
        the last customer read and whether none is left after it. Rows committed in the
        window: live ones by ``createdAt``, imported ones by ``recordedAt``, searched for only
        if ``imports`` (an import ran in the window); in key order either way."""
        assert subject in PER_CUSTOMER_SUBJECTS and (cap is None or cap >= 1)
        assert not imports or subject in IMPORTED_SUBJECTS
        window = (Filter("createdAt", "<=", upper),) + ((Filter("createdAt", ">", lower),) if lower else ())
        recorded = (Filter("imported", "=", True), Filter("recordedAt", "<=", upper)) + (
            (Filter("recordedAt", ">", lower),) if lower else ())
        doc_type = {"transactions": "entry", "tierhistory": "tierChange"}.get(subject, "order")
        key = "seq" if doc_type == "entry" else "id"
        customers = self._customers_after(tenant_id, after_customer, changed)
        span.last, span.complete = after_customer, False
        taken = 0
        for customer in customers:
            if cap is not None and taken >= cap:
                return  # more customers left: the next part starts after span.last
            pk = customer_pk(tenant_id, customer["customerId"])
            kind = (Filter("docType", "=", doc_type),)
            docs: Iterable[dict[str, Any]] = (
                doc for doc in page_by(self._store, LEDGER, pk, kind + window, key, page=self.page)
                if not doc.get("imported"))
            if imports:
                docs = heapq.merge(docs, page_by(self._store, LEDGER, pk, kind + recorded, key, page=self.page),
                                   key=lambda doc: doc[key])
            for doc in docs:
                yield _row(subject, tenant_id, doc)
            span.last = customer["customerId"]
            taken += 1
        span.complete = True

    def _fill_transactions(self, tenant_id: str, lower: str | None, upper: str, after_customer: str | None,
                           span: "_Span", writer: Any, changed: list[str] | None = None) -> None:
        """The ``transactions`` rows of one part (the customers after ``after_customer``, at
        most ``part_customers``; of ``changed`` only, when given) into ``writer``, read as raw JSON
        pages of the customers' ledger partitions (``scan_json``: one key range for the part, or
        each changed customer's partition) and converted column by column
        (``shared.exports.columnar``); the same rows as ``_per_customer_rows``, which a page
        that does not convert falls back to, row by row. Memory: one page (``SCAN_PAGE`` entries)."""
        import pyarrow as pa  # noqa: PLC0415 - pyarrow on demand
        import pyarrow.compute as pc  # noqa: PLC0415

        from shared.exports.columnar import (  # noqa: PLC0415
            parse_entries,
            parse_lines,
            transactions_table,
            without_imported,
        )

        customers: list[str] = []
        for customer in self._customers_after(tenant_id, after_customer, changed):
            customers.append(customer["customerId"])
            if len(customers) > self.part_customers:
                break
        span.complete = len(customers) <= self.part_customers
        customers = customers[:self.part_customers]
        span.last = customers[-1] if customers else after_customer
        if not customers:
            return
        wanted = pa.array(customers, pa.string())
        members = set(customers)
        window = (Filter("docType", "=", "entry"), Filter("createdAt", "<=", upper)) + (
            (Filter("createdAt", ">", lower),) if lower else ())

        def convert(page: tuple[bool, bytes]) -> Any:
            """A page (the entries' lines, or their JSON) as a table for ``add_table``, or
            (a JSON page the columnar reader refuses) as the row path's rows for ``add``."""
            lined, ndjson = page
            if lined:
                entries = parse_lines(ndjson)
                if entries is None:
                    # TIGER_STYLE: the store writes a line only where it holds the entry exactly.
                    raise StoreError("a page of the ledger's lines does not read as lines (shared.store.lines)")
            else:
                entries = parse_entries(ndjson)
            table = None if entries is None else transactions_table(without_imported(entries), tenant_id)
            if table is None:
                # A line holds every field the row path reads (shared.store.layout.LEDGER_LINE), so a
                # page of lines whose instants do not convert goes that way too, from its parsed lines.
                docs = entries.to_pylist() if lined else (json.loads(line) for line in ndjson.split(b"\n") if line)
                return [_row("transactions", tenant_id, doc) for doc in docs
                        if doc.get("customerId") in members and not doc.get("imported")]
            # The key range may hold partitions of ids that are not the tenant's customers.
            inside = pc.is_in(table.column("customerId"), value_set=wanted)
            return table if pc.all(inside).as_py() else table.filter(inside)

        def write(converted: Future[Any]) -> None:
            result = converted.result()
            if isinstance(result, list):
                writer.add(result)
            else:
                writer.add_table(result)

        # Stages overlap (SQLite and Arrow release the GIL while they work): this thread
        # scans pages, CONVERTERS workers parse and convert them, one writer writes the
        # converted ones in page order. At most CONVERTERS + 3 pages in memory. The
        # workers need no store connection (the store keeps one per thread).
        def pages() -> Iterator[tuple[bool, bytes]]:
            """The part's entries as pages of about ``SCAN_PAGE``: one key range for every
            customer of the part, or (``changed``) each changed customer's partition, small
            partitions joined into one page; each page of the entries' lines (True) where
            every entry has one (``scan_lines``), else of their JSON (False). Once a page of
            a range had an entry without a line, the rest of the range is read as JSON: a
            file written before lines were kept has none in its history, and trying lines
            first would scan each of its pages twice."""
            if changed is None:
                ranges = [(customer_pk(tenant_id, customers[0]), customer_pk(tenant_id, customers[-1]))]
            else:
                ranges = [(customer_pk(tenant_id, c), customer_pk(tenant_id, c)) for c in customers]
            joined: list[bytes] = []
            joined_lined = True
            count = 0
            for pk_from, pk_to in ranges:
                after = None
                try_lines = True
                while True:
                    lined = (scan_lines(self._store, LEDGER, pk_from, pk_to, window, "seq", after, SCAN_PAGE)
                             if try_lines else None)
                    if lined is not None and lined.lines is not None:
                        data, found, after, is_lined = lined.lines, lined.count, lined.after, True
                    else:
                        page = scan_json(self._store, LEDGER, pk_from, pk_to, window, "seq", after, SCAN_PAGE)
                        assert page is not None, "the store has scan_json (checked by the caller)"
                        data, found, after, is_lined = page.ndjson, page.count, page.after, False
                    try_lines = is_lined
                    if found and joined and is_lined != joined_lined:
                        yield joined_lined, b"\n".join(joined)  # pages hold one kind
                        joined, count = [], 0
                    if found:
                        joined.append(data)
                        joined_lined = is_lined
                        count += found
                    if count >= SCAN_PAGE:
                        yield joined_lined, b"\n".join(joined)
                        joined, count = [], 0
                    if after is None:
                        break
            if joined:
                yield joined_lined, b"\n".join(joined)

        pending: list[Future[Any]] = []
        writes: list[Future[None]] = []
        with ThreadPoolExecutor(max_workers=CONVERTERS, thread_name_prefix="export-convert") as workers, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-write") as writing:
            # One writing thread: pages are written in the order they were submitted.
            for page in pages():
                pending.append(workers.submit(convert, page))
                if len(pending) > CONVERTERS:
                    writes.append(writing.submit(write, pending.pop(0)))
                    if len(writes) > 1:
                        writes.pop(0).result()  # at most two pages waiting to be written
            for converted in pending:
                writes.append(writing.submit(write, converted))
            for done in writes:
                done.result()

    def _customer_rows(self, tenant_id: str, lower: str | None, upper: str,
                       exported: list[str]) -> Iterator[dict[str, Any]]:
        """Customers whose profile changed in the window (new, re-tagged, re-tiered or
        erased): a CDC feed, the newest state of each changed profile per run. ``exported``:
        the personal fields the file's manifest entry lists (read once per run: a setting
        changed during the run must not put fields in a file labelled without them, which
        erasure's scrub would then skip)."""
        allowed = set(exported)
        for doc in self._changed_customers(tenant_id, lower, upper):
            row = {"tenantId": tenant_id, "customerId": doc["customerId"], "joinDate": doc.get("joinDate"),
                   "tags": doc.get("tags", []), "tier": doc.get("tier"), "createdAt": doc.get("createdAt"),
                   "updatedAt": doc.get("updatedAt"), "erased": bool(doc.get("erasedAt"))}
            if allowed and doc.get("personal") and self._vault is not None:
                try:
                    opened = self._vault.open(doc)
                except PersonalDataDestroyed:  # erased after this page was read: nothing to export
                    row["erased"] = True
                    opened = {}
                row.update({k: (v.isoformat() if hasattr(v, "isoformat") else v)
                            for k, v in opened.items() if k in allowed})
            yield row

    def _changed_customers(self, tenant_id: str, lower: str | None, upper: str) -> Iterator[dict[str, Any]]:
        tenant = (Filter("tenantId", "=", tenant_id),)
        for key in ("updatedAt", "createdAt"):
            window = (Filter(key, "<=", upper),) + ((Filter(key, ">", lower),) if lower else ())
            for doc in page_by(self._store, CUSTOMERS, None, tenant + window, key, page=self.page):
                # By createdAt only profiles written before profiles carried updatedAt: a profile
                # with updatedAt (never earlier than its createdAt) is found by the first query.
                if key == "updatedAt" or "updatedAt" not in doc:
                    yield doc


def freshness_due(exported_to: datetime, now: datetime, freshness: timedelta) -> bool:
    """Whether a micro-batch must run now so that no transaction waits longer than
    ``freshness`` from its commit to its file. ``exported_to``: where the oldest subject's
    exported window ends; the oldest transaction not exported yet was committed just after
    it. Run if, waiting for the next tick (``MICRO_BATCH_TICK``), that transaction's file
    could no longer be written (``MICRO_BATCH_MARGIN``) in time. With the default 5 minutes
    the feed runs every 3 minutes: a window ends 30 s before its run (``MICRO_BATCH_LAG``),
    so the next run comes at most 4 minutes after that end and its file at most a minute
    later. Below 3 minutes every tick runs, and the promise is the tick plus the lag plus
    the run (about 2.5 minutes)."""
    return now >= exported_to + freshness - MICRO_BATCH_TICK - MICRO_BATCH_MARGIN


def _customer_pks(tenant_id: str) -> tuple[str, str]:
    """(first, below): the partition keys of the tenant's customers are ``first <= pk < below``."""
    prefix = customer_pk(tenant_id, "")
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _row(subject: str, tenant_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    if subject == "transactions":
        row = {"tenantId": tenant_id, "entryId": doc["id"], **{k: doc.get(k) for k in ENTRY_FIELDS},
               "imported": doc.get("imported") is True}
        row["points"] = row.pop("signedAmount")
        return row
    if subject == "tierhistory":
        qualifying = doc.get("qualifying") or {}
        return {"tenantId": tenant_id, "changeId": doc["id"], "customerId": doc.get("customerId"),
                "changeSeq": doc.get("changeSeq"), "fromTier": doc.get("fromTier"), "toTier": doc.get("toTier"),
                "direction": doc.get("direction"), "reason": doc.get("reason"), "trigger": doc.get("trigger"),
                "qualifyingPoints": qualifying.get("points"), "qualifyingSpend": qualifying.get("spend"),
                "windowStart": qualifying.get("windowStart"), "windowEnd": qualifying.get("windowEnd"),
                "evaluationAt": doc.get("evaluationAt"), "programVersion": doc.get("programVersion"),
                "createdAt": doc.get("createdAt")}
    reason = doc.get("reason") if isinstance(doc.get("reason"), dict) else {}
    if subject == "orders":
        order = doc.get("order") or {}
        return {"tenantId": tenant_id, "orderId": doc.get("orderId"), "customerId": doc.get("customerId"),
                "status": doc.get("status"), "points": doc.get("points", 0), "amount": order.get("amount"),
                "currency": order.get("currency"), "channel": order.get("channel"),
                "orderedAt": order.get("timestamp"), "items": len(order.get("items") or []),
                "ruleSetId": doc.get("ruleSetId"), "ruleSetVersion": doc.get("ruleSetVersion"),
                "arm": doc.get("arm"), "reasonCode": reason.get("code"), "acceptedAt": doc.get("acceptedAt"),
                "createdAt": doc.get("createdAt")}
    return {"tenantId": tenant_id, "orderId": doc.get("orderId"), "customerId": doc.get("customerId"),
            "status": doc.get("status"), "points": doc.get("points", 0), "ruleSetId": doc.get("ruleSetId"),
            "ruleSetVersion": doc.get("ruleSetVersion"), "arm": doc.get("arm"), "trace": doc.get("trace") or [],
            "createdAt": doc.get("createdAt")}


class _Span:
    """What a per-customer file covered: its last customer, and whether it was the subject's last part."""

    def __init__(self) -> None:
        self.last: str | None = None
        self.complete = False


def _next_part(files: list[dict[str, Any]], subject: str) -> int:
    """A part may be several files (one per date partition): the next part's number."""
    return max((f.get("part", 1) for f in files if f["subject"] == subject), default=0) + 1


def parquet_path(tenant_id: str, prefix: str, subject: str, date: str, run_id: str, part: int) -> str:
    """Hive-style partitions: ``<tenant>/subject=<s>/date=<YYYY-MM-DD>/<run>.pNNNN.parquet``
    (incremental runs and micro-batches); a backfill's under its own prefix."""
    base = tenant_id if prefix.startswith(f"{tenant_id}/incremental/") else prefix
    return f"{base}/subject={subject}/date={date}/{run_id}.p{part:04d}.parquet"


def ndjson_path(prefix: str, subject: str, part: int) -> str:
    """NDJSON files sit under their run's prefix: ``<prefix>/<subject>[.partNNNN].ndjson.gz``
    (client-side encrypted: the name is what the SDK returns; ACRXENC1 files of earlier
    runs end in ``.ndjson.gz.enc``)."""
    return f"{prefix}/{subject}.ndjson.gz" if part == 1 else f"{prefix}/{subject}.part{part:04d}.ndjson.gz"


def _subject_complete(files: list[dict[str, Any]], subject: str) -> bool:
    """Whether ``files`` hold the subject's last part (entries written before parts existed
    have no ``complete``: one file was the whole subject)."""
    return any(f["subject"] == subject and f.get("complete", True) for f in files)


def rows_per_subject(manifest: dict[str, Any]) -> dict[str, int]:
    rows: dict[str, int] = {}
    for f in manifest["files"]:
        rows[f["subject"]] = rows.get(f["subject"], 0) + f["rows"]
    return rows


def _manifest_metadata(manifest: dict[str, Any]) -> dict[str, str]:
    """The manifest blob's metadata: whether any file of the run may hold personal data."""
    personal = any(f.get("personalFields") for f in manifest["files"])
    return {PERSONAL_METADATA: "true" if personal else "false"}


class _Counter:
    def __init__(self, rows: Iterator[dict[str, Any]]) -> None:
        self._rows = rows
        self.count = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for row in self._rows:
            self.count += 1
            yield row


# An NDJSON line's text. One encoder for every line: json.dumps with options builds a new
# one on each call (about 10 us a row); sorted_ascii_json writes the same bytes faster still.
_LINE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def _gzip_lines(rows: Iterable[dict[str, Any]], flush_at: int = 256 * 1024) -> Iterator[bytes]:
    """Rows as gzip-compressed NDJSON, in bounded pieces (gzip format: ``gunzip`` reads it)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    pending: list[bytes] = []
    size = 0
    for row in rows:
        line = sorted_ascii_json(row, _LINE) + b"\n"
        pending.append(line)
        size += len(line)
        if size >= flush_at:
            out = compressor.compress(b"".join(pending))
            pending, size = [], 0
            if out:
                yield out
    out = compressor.compress(b"".join(pending)) + compressor.flush()
    if out:
        yield out


__all__ = ["ExportService", "SUBJECTS", "page_by", "rows_per_subject"]
