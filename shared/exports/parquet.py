"""Export rows as Parquet (pyarrow), one file per date partition, typed by
``shared.exports.columns``.

Rows arrive as the dicts of ``ExportService`` (ISO instants, money as decimal
strings); each batch of ``BATCH`` rows becomes one row group, converted column by
column (strings cast to timestamps and decimals by Arrow, so money never passes
through a float). Rows go to the partition of their change stamp's UTC date
(``date=YYYY-MM-DD``); each partition is spooled to a temporary file, so memory
is bounded by one batch per open partition whatever the history's size, and the
file is then streamed to the blob sink (encrypted there). A subject without rows
still gets one valid file with its schema and no rows.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Any, Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shared.domain.money import MINOR_UNITS
from shared.exports.columns import COLUMNS, KEYS, STAMP

BATCH = 16_384
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _arrow_type(kind: str) -> pa.DataType:
    if kind.startswith("decimal("):
        precision, scale = kind[len("decimal("):-1].split(",")
        return pa.decimal128(int(precision), int(scale))
    return {"string": pa.string(), "json": pa.string(), "int64": pa.int64(), "bool": pa.bool_(),
            "timestamp": pa.timestamp("us", tz="UTC"), "date": pa.date32(),
            "list<string>": pa.list_(pa.string())}[kind]


def arrow_schema(subject: str) -> pa.Schema:
    return pa.schema([pa.field(name, _arrow_type(kind), nullable=nullable)
                      for name, kind, nullable, _ in COLUMNS[subject]],
                     metadata={"accrue.subject": subject})


# A json column's cell text; one encoder for every cell (json.dumps with options builds one per call).
_JSON_CELL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def _column(values: list[Any], kind: str) -> pa.Array:
    if kind in ("timestamp", "date") or kind.startswith("decimal("):
        return pa.array([None if v is None else str(v) for v in values], pa.string()).cast(_arrow_type(kind))
    if kind == "json":
        return pa.array([None if v is None else _JSON_CELL.encode(v) for v in values], pa.string())
    if kind == "string":
        return pa.array([None if v is None else (v if isinstance(v, str) else str(v)) for v in values], pa.string())
    return pa.array(values, _arrow_type(kind))


# Columns whose values are (nearly) all distinct: a dictionary page would hold every value
# once more and cost its build; measured ~20% of the Parquet write and ~14% of the file.
UNIQUE_COLUMNS = frozenset({"rowKey", "rowVersion", "entryId", "transactionId", "referenceOrderId",
                            "referenceEntryId", "settlesEntryId", "orderId", "changeId", "id", "messageId",
                            "deliveryId", "callId", "createdAt", "runningBalance", "runningLifetimeEarned",
                            "ordersCredited", "seq"})


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """The columns worth dictionary encoding: all but ``UNIQUE_COLUMNS``."""
    return [name for name in schema.names if name not in UNIQUE_COLUMNS]


def stamp_of(subject: str, row: dict[str, Any]) -> str:
    stamp = row.get(STAMP.get(subject, "createdAt")) or row.get("createdAt")
    assert isinstance(stamp, str), f"a {subject} row without its change stamp"
    return stamp


def keyed(subject: str, row: dict[str, Any]) -> dict[str, Any]:
    """The row with its ``rowKey`` and ``rowVersion`` (and ``currencyScale`` for orders)."""
    stamp = datetime.fromisoformat(stamp_of(subject, row))
    row["rowKey"] = "|".join(str(row.get(k)) for k in KEYS[subject])
    row["rowVersion"] = (stamp - _EPOCH) // _MICRO
    if subject == "orders":
        row["currencyScale"] = MINOR_UNITS.get(row.get("currency") or "")
    return row


_MICRO = __import__("datetime").timedelta(microseconds=1)


@dataclass
class Partition:
    """One date partition's Parquet file, spooled: its rows and the SHA-256 of its bytes."""

    date: str
    spool: IO[bytes]
    writer: pq.ParquetWriter
    rows: int = 0
    pending: list[dict[str, Any]] = field(default_factory=list)

    def chunks(self, size: int = 1024 * 1024) -> Iterator[bytes]:
        self.spool.seek(0)
        while chunk := self.spool.read(size):
            yield chunk


class PartitionedWriter:
    """Rows of one subject -> one Parquet file per date partition (``partitions()``)."""

    def __init__(self, subject: str, batch: int = BATCH) -> None:
        self.subject = subject
        self.schema = arrow_schema(subject)
        self._kinds = [(name, kind) for name, kind, _, _ in COLUMNS[subject]]
        self._batch = batch
        self._open: dict[str, Partition] = {}
        self._pending = 0

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            date = stamp_of(self.subject, row)[:10]
            part = self._open.get(date) or self._start(date)
            part.pending.append(keyed(self.subject, row))
            self._pending += 1
            if self._pending >= self._batch:
                # Bounded across partitions (a backfill spans many dates): flush the fullest.
                self._flush(max(self._open.values(), key=lambda p: len(p.pending)))

    def add_table(self, table: pa.Table) -> None:
        """Rows already typed as the subject's schema plus a ``_date`` column (their partition),
        as ``shared.exports.columnar`` builds them: each date's slice written as it comes."""
        assert table.schema.remove(table.schema.get_field_index("_date")).equals(self.schema, check_metadata=False)
        dates = table.column("_date")
        rows = table.drop_columns(["_date"])
        unique = pc.unique(dates).to_pylist()
        for date in unique:
            part = self._open.get(date) or self._start(date)
            self._flush(part)  # rows of the row path first, in arrival order
            chunk = rows if len(unique) == 1 else rows.filter(pc.equal(dates, date))
            part.writer.write_table(chunk.replace_schema_metadata(self.schema.metadata))
            part.rows += chunk.num_rows

    def _start(self, date: str) -> Partition:
        spool = tempfile.TemporaryFile(prefix="accrue-export-")
        part = Partition(date, spool, pq.ParquetWriter(spool, self.schema, compression="zstd",
                                                       use_dictionary=dictionary_columns(self.schema)))
        self._open[date] = part
        return part

    def _flush(self, part: Partition) -> None:
        if not part.pending:
            return
        arrays = [_column([r.get(name) for r in part.pending], kind) for name, kind in self._kinds]
        part.writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        part.rows += len(part.pending)
        self._pending -= len(part.pending)
        part.pending = []

    def partitions(self, empty_date: str) -> list[Partition]:
        """Every partition, closed, by date; no rows at all: one empty file dated ``empty_date``."""
        if not self._open:
            self._start(empty_date)
        for part in self._open.values():
            self._flush(part)
            part.writer.close()
        return [self._open[d] for d in sorted(self._open)]


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table``, a file written under an earlier version of the subject's columns, as
    ``schema``: a column added since then is null in its rows (columns are only ever added
    nullable, ``shared.exports.columns.COLUMNS_VERSION``)."""
    arrays = []
    for column in schema:
        if column.name in table.column_names:
            arrays.append(table.column(column.name))
        else:
            assert column.nullable, f"column {column.name} is missing and cannot be null"
            arrays.append(pa.nulls(table.num_rows, column.type))
    return pa.Table.from_arrays(arrays, names=schema.names).cast(schema)


def digest(part: Partition) -> str:
    sha = hashlib.sha256()
    for chunk in part.chunks():
        sha.update(chunk)
    return sha.hexdigest()
