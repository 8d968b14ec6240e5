"""The columnar read of the ``transactions`` subject: ledger entries from the store's
pages of lines (``shared.store.port.scan_lines``: the entry's fields as the CSV line the
SQLite store keeps beside its JSON, ``shared.store.lines``), or of raw JSON where an entry
has no line (``scan_json``), straight into Arrow tables typed by ``shared.exports.columns``,
with no Python object per entry.

What it guarantees: a table built here holds, column for column, what the row path
(``ExportService._rows`` -> ``shared.exports.parquet.PartitionedWriter.add``) writes for
the same entries: ``entryId`` is the entry's id, ``points`` its ``signedAmount``,
``ruleSetVersion`` as text, ``createdAt`` a UTC timestamp, ``rowKey`` ``customerId|entryId``,
``rowVersion`` the µs of ``createdAt`` since the epoch (a test holds both paths to the
same Parquet rows). Lines and JSON read into the same table (a hypothesis test holds
``parse_lines`` to ``parse_entries``). Arrow's JSON reader parses a page against the types
entries are stored with; a page holding any other type (a version stored as text, an
instant with another offset) is refused as a whole (``None``) and the caller converts
that page row by row, so an odd document costs speed, never correctness (such an entry
has no line: ``shared.store.lines``).
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

from shared.exports.parquet import arrow_schema
from shared.store.layout import LEDGER_LINE

SUBJECT = "transactions"

# The entry fields the subject exports, with the JSON types entries are stored with: the
# ledger's line (``shared.store.layout.LEDGER_LINE``) but its partition key. An imported
# entry belongs to the window of its recordedAt, not of its createdAt
# (``shared.exports.service``): the createdAt scan leaves it out (``without_imported``).
_ARROW = {"string": pa.string(), "int64": pa.int64(), "bool": pa.bool_()}
_LINE = pa.schema([(name, _ARROW[kind]) for name, kind in LEDGER_LINE.fields])
_STORED = pa.schema([f for f in _LINE if f.name != "pk"])
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


# The line format of ``shared.store.lines``: a quoted value is a string, even "null"; the
# unquoted word null is a missing value; no escapes (a line never holds a quote).
_LINE_READ = pa_csv.ReadOptions(column_names=_LINE.names, use_threads=False, block_size=1 << 26)
_LINE_PARSE = pa_csv.ParseOptions(double_quote=False, escape_char=False, newlines_in_values=False)
_LINE_CONVERT = pa_csv.ConvertOptions(
    column_types=_LINE, null_values=["null"], strings_can_be_null=True, quoted_strings_can_be_null=False,
    true_values=["true"], false_values=["false"], include_columns=_STORED.names)


def parse_lines(lines: bytes) -> pa.Table | None:
    """A page of entries' lines (``shared.store.lines``) as ``parse_entries``'s table of the
    same entries; None if a line does not read as the line format says (never expected:
    the store writes a line only where it holds the entry exactly)."""
    if not lines:
        return _STORED.empty_table()
    try:
        table = pa_csv.read_csv(io.BytesIO(lines), read_options=_LINE_READ, parse_options=_LINE_PARSE,
                                convert_options=_LINE_CONVERT)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return table if table.schema.equals(_STORED) else None


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
