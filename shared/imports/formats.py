"""Reading an import file a row at a time: NDJSON or CSV, resumable at a byte offset.

What it guarantees:

* **Memory flat in the file size.** Rows are cut from the blob's chunks as they
  stream in; at most one chunk plus one line is held at a time.
* **Resumable.** Every row carries the byte offset just past it (``end``), so a
  job stores ``end`` of the last row it applied and the next slice opens the blob
  there (``open_from``: a seek locally, a ranged download on Azure) with the line
  number it had reached: no re-reading from the start.
* **Line numbers are the file's.** Line 1 is the first line (the CSV header); a
  blank line is skipped but counted, so an error report's line numbers match what
  the merchant sees in an editor.

CSV: the first line names the columns; a row is one line (a quoted field may not
hold a line break: such a row is reported as malformed, never mis-joined). An
empty cell is an absent field; ``a.b`` columns nest (``postalAddress.city``);
``tags`` and ``postalAddress.lines`` split on ``;``. NDJSON: one JSON object a line.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from shared.domain.json_text import NotJson, strict_loads

FORMATS = ("ndjson", "csv")
MAX_LINE_BYTES = 64 * 1024
# CSV columns whose cell is a list, ';'-separated.
_LIST_COLUMNS = frozenset({"tags", "postalAddress.lines", "items"})


@dataclass(frozen=True)
class RawRow:
    """One line of the file: its number, the byte offset just past it, and either the
    row's fields or why it could not be read."""

    line: int
    end: int
    data: dict[str, Any] | None
    problem: str | None = None


class HeaderMissing(ValueError):
    """A CSV file whose first line is not a header."""


def lines(chunks: Iterable[bytes], offset: int) -> Iterator[tuple[bytes, int]]:
    """(line without its end of line, byte offset just past it), from ``offset``."""
    buffer = b""
    position = offset  # the file offset of buffer[0]
    for chunk in chunks:
        buffer += chunk
        start = 0
        while True:
            cut = buffer.find(b"\n", start)
            if cut < 0:
                break
            yield buffer[start:cut], position + cut + 1
            start = cut + 1
        position += start
        buffer = buffer[start:]
    if buffer:
        yield buffer, position + len(buffer)


def read_header(first_line: bytes) -> list[str]:
    text = first_line.decode("utf-8-sig").rstrip("\r")
    names = next(csv.reader([text]), [])
    if not names or any(not n.strip() for n in names) or len(set(names)) != len(names):
        raise HeaderMissing("the first line of a CSV file must name every column once")
    return [n.strip() for n in names]


def rows(chunks: Iterable[bytes], fmt: str, *, offset: int, line: int,
         header: list[str] | None) -> Iterator[RawRow]:
    """The rows after line ``line`` (0: the file's start), reading from ``offset``.
    For CSV, ``header`` is the header read when the file was opened at 0."""
    assert fmt in FORMATS
    assert fmt != "csv" or header is not None
    number = line
    opened_on: int | None = None  # the line whose quoted cell runs on past its line end (CSV)
    for raw, end in lines(chunks, offset):
        number += 1
        if len(raw) > MAX_LINE_BYTES:
            yield RawRow(number, end, None, f"the line is longer than {MAX_LINE_BYTES} bytes")
            continue
        try:
            text = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            yield RawRow(number, end, None, "the line is not UTF-8")
            continue
        if number == 1:
            text = text.removeprefix("\ufeff")  # a byte-order mark some spreadsheets write
        if not text.strip():
            continue
        if fmt == "ndjson":
            try:
                data = strict_loads(text)
            except NotJson as exc:
                yield RawRow(number, end, None, f"not JSON Accrue reads: {exc}")
                continue
            except json.JSONDecodeError as exc:
                yield RawRow(number, end, None, f"not JSON: {exc.msg} at column {exc.colno}")
                continue
            except ValueError as exc:  # an integer of more digits than Python converts
                yield RawRow(number, end, None, f"not JSON Accrue reads: {exc}")
                continue
            except RecursionError:
                yield RawRow(number, end, None, "not JSON Accrue reads: nested too deeply")
                continue
            if not isinstance(data, dict):
                yield RawRow(number, end, None, "a line must be one JSON object")
                continue
            yield RawRow(number, end, data)
        else:
            # A quoted cell may not hold a line break: read line by line, the rest of such a cell
            # would look like a row of its own. Quotes come in pairs on a line that is a whole
            # row (a cell's two, and "" for each quote inside), so an odd count opens or closes
            # a cell that spans lines; every line of it is reported, none applied.
            odd = text.count('"') % 2 == 1
            if opened_on is not None:
                yield RawRow(number, end, None, f"part of the quoted cell opened on line {opened_on}, "
                                                "which holds a line break (not accepted)")
                if odd:
                    opened_on = None
                continue
            if odd:
                opened_on = number
                yield RawRow(number, end, None, "malformed CSV: a quoted cell holds a line break (not accepted)")
                continue
            yield _csv_row(number, end, text, header or [])


def _csv_row(number: int, end: int, text: str, header: list[str]) -> RawRow:
    try:
        cells = next(csv.reader([text], strict=True), [])
    except csv.Error as exc:
        return RawRow(number, end, None, f"malformed CSV: {exc}")
    if len(cells) != len(header):
        return RawRow(number, end, None, f"{len(cells)} cells where the header names {len(header)} columns")
    data: dict[str, Any] = {}
    for name, cell in zip(header, cells):
        if cell == "":
            continue
        value: Any = [part.strip() for part in cell.split(";") if part.strip()] if name in _LIST_COLUMNS else cell
        target = data
        *parents, leaf = name.split(".")
        for parent in parents:
            nested = target.setdefault(parent, {})
            if not isinstance(nested, dict):
                return RawRow(number, end, None, f"column {name!r} clashes with column {parent!r}")
            target = nested
        target[leaf] = value
    return RawRow(number, end, data)
