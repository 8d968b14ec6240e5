"""The local-folder blob sink: what a folder must do to keep the port's promises.

The behaviour shared with Blob Storage is held against both adapters in
``tests/integration/blobs/test_azure_blobs.py``; these tests need no emulator
and pin what is particular to a folder: atomic publication, no traversal,
temporary files cleaned up, first writer wins.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Iterator

import pytest

from shared.blobs.local import LocalBlobSink
from shared.blobs.port import BlobExists, BlobNotFound, InvalidBlobPath
from tests.conftest import run_in_threads


@pytest.fixture
def sink(tmp_path: Path) -> LocalBlobSink:
    return LocalBlobSink(tmp_path / "blobs")


def test_a_blob_is_a_plain_file_with_its_bytes(sink: LocalBlobSink) -> None:
    sink.put("exports/t1/part-1.bin", [b"abc", b"def"], "application/octet-stream", {"rows": "2"})
    assert (sink.root / "exports" / "t1" / "part-1.bin").read_bytes() == b"abcdef"
    assert sink.list("exports/")[0].metadata == {"rows": "2"}


@pytest.mark.parametrize("path", [
    "../escape", "a/../../escape", "/abs/path", "a//b", "a/./b", ".hidden", "a/.meta", "", "a/", "a\\b",
    "a/b\x00c", "white space", "x" * 1100,
])
def test_paths_that_could_leave_the_folder_or_hide_are_refused(sink: LocalBlobSink, path: str) -> None:
    with pytest.raises(InvalidBlobPath):
        sink.put(path, b"x")
    with pytest.raises(InvalidBlobPath):
        sink.read(path)
    assert not (sink.root.parent / "escape").exists()


def test_a_symlink_inside_the_folder_cannot_lead_outside(sink: LocalBlobSink, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, sink.root / "link")
    with pytest.raises(InvalidBlobPath):
        sink.put("link/file", b"x")
    assert list(outside.iterdir()) == []


def test_a_reader_never_sees_half_a_blob(sink: LocalBlobSink) -> None:
    seen_during_write: list[object] = []

    def slow_chunks() -> Iterator[bytes]:
        for i in range(5):
            yield bytes([i]) * 1000
            # Mid-write: the blob must not exist yet, in any form.
            seen_during_write.append((sink.exists("big.bin"), [b.path for b in sink.list()]))

    sink.put("big.bin", slow_chunks())
    assert seen_during_write == [(False, [])] * 5
    assert sink.read("big.bin") == b"".join(bytes([i]) * 1000 for i in range(5))


def test_a_failing_producer_leaves_no_blob_and_no_temporary_file(sink: LocalBlobSink) -> None:
    def broken() -> Iterator[bytes]:
        yield b"partial"
        raise RuntimeError("producer died")

    with pytest.raises(RuntimeError):
        sink.put("broken.bin", broken())
    assert not sink.exists("broken.bin")
    assert list((sink.root / ".tmp").iterdir()) == []


def test_overwrite_keeps_an_open_reader_on_the_old_bytes(sink: LocalBlobSink) -> None:
    sink.put("f.bin", b"old" * 1000)
    reader = sink.open("f.bin")
    sink.put("f.bin", b"new", overwrite=True)
    assert b"".join(reader) == b"old" * 1000
    assert sink.read("f.bin") == b"new"


def test_racing_writers_without_overwrite_have_exactly_one_winner(sink: LocalBlobSink) -> None:
    barrier = threading.Barrier(6)
    outcomes: list[str] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        barrier.wait()
        try:
            sink.put("audit/day.log", [str(n).encode()] * 1000)
            result = f"won:{n}"
        except BlobExists:
            result = "lost"
        with lock:
            outcomes.append(result)

    run_in_threads(writer, [(n,) for n in range(6)], timeout=30)
    winners = [o for o in outcomes if o.startswith("won")]
    assert len(winners) == 1 and outcomes.count("lost") == 5
    assert sink.read("audit/day.log") == winners[0].split(":")[1].encode() * 1000
    assert list((sink.root / ".tmp").iterdir()) == []


def test_a_blob_cannot_sit_where_a_folder_of_blobs_is(sink: LocalBlobSink) -> None:
    sink.put("a/b", b"x")
    with pytest.raises(BlobExists):
        sink.put("a", b"y", overwrite=True)
    with pytest.raises(BlobExists):
        sink.put("a/b/c", b"z")
    assert sink.read("a/b") == b"x"


def test_open_fails_at_once_for_a_missing_blob(sink: LocalBlobSink) -> None:
    with pytest.raises(BlobNotFound):
        sink.open("nope")  # not on the first next(): the caller learns before streaming


def test_open_streams_in_bounded_chunks(sink: LocalBlobSink) -> None:
    sink.put("big.bin", (b"x" * 65536 for _ in range(40)))  # 2.5 MiB from a generator
    sizes = [len(chunk) for chunk in sink.open("big.bin")]
    assert sum(sizes) == 40 * 65536 and max(sizes) <= 1024 * 1024


def test_internal_folders_are_not_listed(sink: LocalBlobSink) -> None:
    sink.put("one", b"1", "text/plain", {"k": "v"})
    assert [b.path for b in sink.list()] == ["one"]
