"""The columnar read of the ``transactions`` subject: ledger entries from the store's
raw JSON pages (``shared.store.port.scan_json``) straight into Arrow tables typed by
``shared.exports.columns``, with no Python object per entry.

What it guarantees: a table built here holds, column for column, what the row path
(``ExportService._rows`` -> ``shared.exports.parquet.PartitionedWriter.add``) writes for
the same entries: ``entryId`` is the entry's id, ``points`` its ``signedAmount``,
``ruleSetVersion`` as text, ``createdAt`` a UTC timestamp, ``rowKey`` ``customerId|entryId``,
``rowVersion`` the µs of ``createdAt`` since the epoch (a test holds both paths to the
same Parquet rows). Arrow's JSON reader parses a page against the types entries are
stored with; a page holding any other type (a version stored as text, an instant with
another offset) is refused as a whole (``None``) and the caller converts that page row
by row, so an odd document costs speed, never correctness.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from shared.exports.parquet import arrow_schema

SUBJECT = "transactions"

# The entry fields the subject exports, with the JSON types entries are stored with.
_STORED = pa.schema([
    ("id", pa.string()), ("customerId", pa.string()), ("seq", pa.int64()), ("transactionId", pa.string()),
    ("entryType", pa.string()), ("signedAmount", pa.int64()), ("status", pa.string()),
    ("runningBalance", pa.int64()), ("runningPending", pa.int64()), ("runningReserved", pa.int64()),
    ("runningLifetimeEarned", pa.int64()),
    ("ordersCredited", pa.int64()), ("referenceOrderId", pa.string()), ("referenceEntryId", pa.string()),
    ("settlesEntryId", pa.string()), ("ruleSetId", pa.string()), ("ruleSetVersion", pa.int64()),
    ("arm", pa.string()), ("createdAt", pa.string()),
    # An imported entry belongs to the window of its recordedAt, not of its createdAt
    # (``shared.exports.service``): the createdAt scan leaves it out (``without_imported``).
    ("imported", pa.bool_()), ("recordedAt", pa.string()),
])
_PARSE = pa_json.ParseOptions(explicit_schema=_STORED, unexpected_field_behavior="ignore")
_UTC_MICROS = pa.timestamp("us", tz="UTC")
BLOCK = 1 << 20


def parse_entries(ndjson: bytes) -> pa.Table | None:
    """A page of stored entries (JSON lines) as a table of their stored fields; None if
    any document has a field of another type than entries are stored with."""
    if not ndjson:
        return _STORED.empty_table()
    try:
        # Single-threaded: pages are parsed in parallel by the caller's converter threads;
        # Arrow's own threads on top cost ~25% more CPU for the same work (measured).
        return pa_json.read_json(io.BytesIO(ndjson), parse_options=_PARSE,
                                 read_options=pa_json.ReadOptions(use_threads=False, block_size=BLOCK))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def without_imported(entries: pa.Table) -> pa.Table:
    """``entries`` less the imported ones (``imported: true``)."""
    flags = entries.column("imported")
    if flags.null_count == entries.num_rows:
        return entries
    return entries.filter(pc.invert(pc.fill_null(flags, False)))


def transactions_table(entries: pa.Table, tenant_id: str) -> pa.Table | None:
    """The ``transactions`` rows of parsed entries, typed as the subject's schema, plus a
    ``_date`` column (the UTC date of ``createdAt``, the row's partition); None if an
    instant does not convert (the caller falls back to the row path for the page)."""
    schema = arrow_schema(SUBJECT)
    created_text = entries.column("createdAt")
    try:
        created = pc.cast(created_text, _UTC_MICROS)
        recorded = pc.cast(entries.column("recordedAt"), _UTC_MICROS)
        version = pc.cast(entries.column("ruleSetVersion"), pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if created.null_count:
        return None  # an entry without its instant: the row path says which
    n = entries.num_rows
    columns = {
        "rowKey": pc.binary_join_element_wise(entries.column("customerId"), entries.column("id"), "|"),
        "rowVersion": pc.cast(created, pa.int64()),
        "tenantId": pa.array([tenant_id] * n, pa.string()) if n else pa.array([], pa.string()),
        "entryId": entries.column("id"),
        "points": entries.column("signedAmount"),
        "ruleSetVersion": version,
        "createdAt": created,
        "imported": pc.fill_null(entries.column("imported"), False),
        "recordedAt": recorded,
    }
    arrays = [columns[f.name] if f.name in columns else entries.column(f.name) for f in schema]
    table = pa.Table.from_arrays(arrays, schema=schema)
    return table.append_column("_date", pc.utf8_slice_codeunits(created_text, 0, 10))
