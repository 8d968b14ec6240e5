"""Column lines (``shared.store.lines``) and ``scan_lines`` on the SQLite store.

* A line reads back, through the export's CSV reader, as exactly what the JSON reader reads
  of the same entry; where it could not (another JSON type, an integer beyond 64 bits, a
  quote, backslash or control character), there is no line (hypothesis).
* Pages of lines are the pages of JSON: the same documents, the same next-page keys, in
  both parts of the staged ledger; a page with a document without a line says so.
* A file written before lines were kept opens, gains the column, and its entries are read
  from their JSON (no line), while new entries get theirs; merged rows keep theirs.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.exports.columnar import parse_entries, parse_lines
from shared.store.layout import CONTAINERS, CUSTOMERS, LEDGER, LEDGER_LINE
from shared.store.lines import LineSpec
from shared.store.port import Filter, scan_json, scan_lines
from shared.store.sqlite import SqliteDocumentStore, column_of

_KINDS = dict(LEDGER_LINE.fields)
_TEXT = st.text(alphabet=st.sampled_from(['a', 'Z', '0', ',', ' ', '"', "'", '\\', '\n', '\r', '\t', '\x00', 'é',
                                          '€', '😀', 'n', 'u', 'l']), max_size=8)
_ANY = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(1 << 70), max_value=1 << 70), _TEXT,
                 st.sampled_from(["null", "", "true", "5", "1.5"]), st.floats(allow_nan=False, allow_infinity=False))


def _value(kind: str) -> st.SearchStrategy:
    typed = {"string": st.one_of(_TEXT, st.sampled_from(["null", "", "true", "5", "2026-01-01T00:00:00Z"])),
             "int64": st.one_of(st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1),
                                st.sampled_from([0, -1, 1 << 62])),
             "bool": st.booleans()}[kind]
    # Mostly the declared kind (the lines the store keeps), sometimes anything at all.
    return st.one_of(st.none(), typed, typed, typed, _ANY)


@st.composite
def _entries(draw: st.DrawFn) -> dict:
    doc = {name: draw(_value(kind)) for name, kind in LEDGER_LINE.fields[1:]}
    doc = {k: v for k, v in doc.items() if v is not None or draw(st.booleans())}  # absent or null
    return {"pk": "t:" + draw(st.text(alphabet="abc,é", min_size=1, max_size=4)), "docType": "entry",
            "tenantId": "t", "idempotencyKey": draw(_TEXT), **doc}


def _fits(doc: dict) -> bool:
    """Whether a line can hold the entry exactly (the module's rules, said another way)."""
    for name, kind in LEDGER_LINE.fields:
        value = doc.get(name)
        if value is None:
            continue
        if kind == "string" and (type(value) is not str or any(c in value for c in '"\\') or
                                 any(ord(c) < 0x20 for c in value)):
            return False
        if kind == "int64" and (type(value) is not int or not -(1 << 63) <= value < (1 << 63)):
            return False
        if kind == "bool" and type(value) is not bool:
            return False
    return True


@settings(max_examples=150, deadline=None)
@given(st.lists(_entries(), min_size=1, max_size=6))
def test_a_line_reads_back_as_its_json_reads_or_there_is_none(docs: list[dict]) -> None:
    lines = [LEDGER_LINE.line_of(doc) for doc in docs]
    assert [line is not None for line in lines] == [_fits(doc) for doc in docs]
    kept = [doc for doc, line in zip(docs, lines) if line is not None]
    if not kept:
        return
    from_lines = parse_lines("\n".join(line for line in lines if line is not None).encode())
    from_json = parse_entries(b"\n".join(json.dumps(doc, ensure_ascii=False).encode() for doc in kept))
    assert from_lines is not None and from_json is not None
    assert from_lines.to_pylist() == from_json.to_pylist()
    for doc, line in zip(kept, (line for line in lines if line is not None)):
        assert LEDGER_LINE.key_of(line, "id")[0] == doc["pk"]


def test_only_the_documents_the_spec_describes_get_a_line() -> None:
    assert LEDGER_LINE.line_of({"pk": "t:a", "docType": "marker", "id": "m"}) is None
    line = LEDGER_LINE.line_of({"pk": "t:a", "docType": "entry", "id": "e1", "seq": 7, "imported": True})
    assert line is not None and next(csv.reader(io.StringIO(line)))[:4] == ["t:a", "e1", "null", "7"]
    assert LEDGER_LINE.key_of(line, "seq") == ("t:a", 7)
    with pytest.raises(ValueError, match="partition key"):
        LineSpec(version=1, fields=(("id", "string"),), when=("docType", "entry"))
    with pytest.raises(ValueError, match="kinds"):
        LineSpec(version=1, fields=(("pk", "string"), ("x", "float")), when=("docType", "entry"))


def _entry(customer: str, seq: int, **extra) -> dict:  # type: ignore[no-untyped-def]
    return {"id": f"e{seq}", "pk": f"t:{customer}", "docType": "entry", "tenantId": "t", "customerId": customer,
            "seq": seq, "createdAt": f"2026-01-0{1 + seq % 3}", **extra}


@pytest.fixture
def store(tmp_path):  # type: ignore[no-untyped-def]
    store = SqliteDocumentStore(tmp_path / "s.db", CONTAINERS)
    for customer, count in (("a", 5), ("b", 1), ("c", 0), ("d", 9)):
        for seq in range(1, count + 1):
            store.create(LEDGER, _entry(customer, seq))
        store.create(LEDGER, {"id": "o1", "pk": f"t:{customer}", "docType": "order", "tenantId": "t",
                              "createdAt": "2026-01-01"})  # no seq: never scanned, no line
    store.merge_recent(LEDGER)
    for seq in range(10, 13):  # some in the recent part, interleaved with merged ones
        store.create(LEDGER, _entry("a", seq))
    yield store
    store.close()


def _pages(store, reader, limit: int) -> list:  # type: ignore[no-untyped-def]
    filters = (Filter("docType", "=", "entry"), Filter("createdAt", ">", "2026-01-01"))
    pages, after = [], None
    while True:
        page = reader(store, LEDGER, "t:a", "t:d", filters, "seq", after, limit)
        pages.append(page)
        if page.after is None:
            return pages
        after = page.after


@pytest.mark.parametrize("limit", [1, 2, 4, 5, 100])
def test_pages_of_lines_are_the_pages_of_json(store, limit) -> None:  # type: ignore[no-untyped-def]
    json_pages, line_pages = _pages(store, scan_json, limit), _pages(store, scan_lines, limit)
    assert [(p.count, p.after) for p in line_pages] == [(p.count, p.after) for p in json_pages]
    for lines, page in zip(line_pages, json_pages):
        docs = [json.loads(line) for line in page.ndjson.split(b"\n") if line]
        assert lines.lines == "\n".join(LEDGER_LINE.line_of(doc) for doc in docs).encode()
    assert sum(p.count for p in line_pages) == 4 + 2 + 1 + 6  # createdAt > 2026-01-01: seq % 3 != 0


def test_a_page_with_a_document_without_its_line_says_so(store) -> None:  # type: ignore[no-untyped-def]
    store.create(LEDGER, _entry("b", 2, ruleSetVersion="7b"))  # another type: no line
    page = scan_lines(store, LEDGER, "t:b", "t:b", (), "seq", None, 100)
    assert page is not None and page.lines is None and page.count == 2
    assert scan_lines(store, LEDGER, "t:d", "t:d", (), "seq", None, 100).lines is not None
    assert scan_lines(store, CUSTOMERS, "t:a", "t:b", (), "id", None, 10) is None  # keeps no lines


def test_a_file_from_before_lines_opens_and_reads_its_entries_as_json(tmp_path) -> None:
    path = tmp_path / "old.db"
    store = SqliteDocumentStore(path, CONTAINERS)
    for seq in (1, 2):
        store.create(LEDGER, _entry("a", seq))
    store.merge_recent(LEDGER)
    store.create(LEDGER, _entry("a", 3))
    store.close()
    db = sqlite3.connect(path)  # the file as the version before wrote it: no line column
    db.execute("DROP VIEW docs")
    db.execute("DROP VIEW c_ledger")
    for part in ("c_ledger_main", "c_ledger_recent"):
        db.execute(f"ALTER TABLE {part} DROP COLUMN {LEDGER_LINE.column}")
    db.commit()
    db.close()
    store = SqliteDocumentStore(path, CONTAINERS)
    store.create(LEDGER, _entry("a", 4))
    store.create(LEDGER, _entry("b", 1))
    assert scan_lines(store, LEDGER, "t:a", "t:a", (), "seq", None, 100).lines is None
    assert scan_lines(store, LEDGER, "t:b", "t:b", (), "seq", None, 100).lines is not None
    store.merge_recent(LEDGER)  # merged rows keep their lines, and their lack of one
    seq = column_of("seq")
    rows = store._execute(f"SELECT pk, {seq}, {LEDGER_LINE.column} IS NOT NULL FROM c_ledger_main"  # noqa: SLF001
                          f" ORDER BY pk, {seq}", []).fetchall()
    assert rows == [("t:a", 1, 0), ("t:a", 2, 0), ("t:a", 3, 0), ("t:a", 4, 1), ("t:b", 1, 1)]
    store.close()
    # Opened unstaged, the recent rows merge into one table that keeps the line column.
    store = SqliteDocumentStore(path, CONTAINERS, staged=())
    store.create(LEDGER, _entry("b", 2))
    assert scan_lines(store, LEDGER, "t:b", "t:b", (), "seq", None, 100).count == 2
    store.close()


@pytest.mark.parametrize("reader", [scan_json, scan_lines])
def test_pages_read_while_merge_steps_move_rows_show_each_row_once(tmp_path, reader) -> None:  # type: ignore[no-untyped-def]
    """A page reads the main part alone when the recent part holds no row of its range and
    window, else both: either way one snapshot, so rows moving between the parts while
    pages are read are neither repeated nor missed."""
    store = SqliteDocumentStore(tmp_path / "m.db", CONTAINERS, merge_rows=7, merge_threshold=5)
    customers = [f"k{n}" for n in range(6)]
    for seq in range(1, 21):  # the window's rows: some merged, the newest still recent
        for customer in customers:
            store.create(LEDGER, _entry(customer, seq, createdAt="2026-01-01"))
        if seq == 12:
            store.merge_recent(LEDGER)
    expected = [(f"t:{c}", s) for c in customers for s in range(1, 21)]
    stop = threading.Event()

    def write() -> None:  # rows after the window, and merge steps, all along
        seq = 100
        while not stop.is_set():
            seq += 1
            for customer in customers:
                store.create(LEDGER, _entry(customer, seq, createdAt="2026-02-01"))

    writer = threading.Thread(target=write)
    try:
        for round_ in range(25):
            if round_ == 1:  # the first round with rows of the window in both parts, the others as they move
                writer.start()
            seen, after = [], None
            window = (Filter("docType", "=", "entry"), Filter("createdAt", "<=", "2026-01-31"))
            while True:
                page = reader(store, LEDGER, "t:k0", "t:k5", window, "seq", after, 7)
                text = page.ndjson if reader is scan_json else page.lines
                assert text is not None
                for line in text.split(b"\n") if page.count else []:
                    seen.append(LEDGER_LINE.key_of(line.decode(), "seq") if reader is scan_lines
                                else (json.loads(line)["pk"], json.loads(line)["seq"]))
                if page.after is None:
                    break
                after = page.after
            assert seen == expected
    finally:
        stop.set()
        if writer.is_alive():
            writer.join()
    assert store._execute("SELECT COUNT(*) FROM c_ledger_main", []).fetchone()[0] > 120  # noqa: SLF001 - merged
    store.close()


def test_filling_lines_gives_an_old_files_entries_theirs(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "accrue.db"
    store = SqliteDocumentStore(path, CONTAINERS)
    for seq in range(1, 8):
        store.create(LEDGER, _entry("a", seq))
    store.create(LEDGER, _entry("a", 8, ruleSetVersion="7b"))  # a line cannot hold it
    store.create(LEDGER, {"id": "m1", "pk": "t:a", "docType": "marker", "tenantId": "t"})
    store.merge_recent(LEDGER)
    for seq in (9, 10):
        store.create(LEDGER, _entry("a", seq))  # some in the recent part
    db = sqlite3.connect(path)
    db.execute(f"UPDATE c_ledger_main SET {LEDGER_LINE.column} = NULL")
    db.execute(f"UPDATE c_ledger_recent SET {LEDGER_LINE.column} = NULL")
    db.commit()
    assert scan_lines(store, LEDGER, "t:a", "t:a", (), "seq", None, 100).lines is None
    assert store.fill_lines(LEDGER, batch=3) == 9
    assert store.fill_lines(LEDGER) == 0  # done: nothing twice
    stored = db.execute("SELECT body, line_v1 FROM c_ledger").fetchall()
    assert {json.loads(body)["id"]: line for body, line in stored} == {
        json.loads(body)["id"]: LEDGER_LINE.line_of(json.loads(body)) for body, _ in stored}
    assert sum(line is None for _, line in stored) == 2  # the odd entry and the marker
    assert scan_lines(store, LEDGER, "t:a", "t:a", (), "seq", None, 7).lines is not None
    db.execute(f"UPDATE c_ledger_main SET {LEDGER_LINE.column} = NULL WHERE id = 'e3'")
    db.commit()
    db.close()
    store.close()
    from shared.local.__main__ import main as local_main  # the operator's command

    monkeypatch.setenv("ACCRUE_DATA_DIR", str(tmp_path))
    assert local_main(["ledger", "fill-lines", "--tenant", "t"]) == 2  # lines are the file's, not a tenant's
    assert "do not apply" in capsys.readouterr().err
    assert local_main(["ledger", "fill-lines"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"linesFilled": 1}


def test_twenty_fills_at_once_give_each_entry_its_line_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = SqliteDocumentStore(tmp_path / "f.db", CONTAINERS)
    for customer in ("a", "b", "c"):
        for seq in range(1, 41):
            store.create(LEDGER, _entry(customer, seq))
    store.merge_recent(LEDGER)
    store._execute(f"UPDATE c_ledger_main SET {LEDGER_LINE.column} = NULL", [])  # noqa: SLF001 - an old file
    barrier = threading.Barrier(20, timeout=10)
    counts: list[int] = []

    def fill() -> None:
        barrier.wait()
        counts.append(store.fill_lines(LEDGER, batch=7))

    threads = [threading.Thread(target=fill) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(counts) == 20 and sum(counts) == 120  # each entry filled by exactly one of them
    stored = store._execute("SELECT body, line_v1 FROM c_ledger", []).fetchall()  # noqa: SLF001
    assert all(line == LEDGER_LINE.line_of(json.loads(body)) for body, line in stored)
    store.close()
