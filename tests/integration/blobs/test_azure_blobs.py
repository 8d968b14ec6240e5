"""The blob-sink contract, held against both adapters; Azure specifics against Azurite.

Tests taking ``sink`` run on the local folder and on the Azure adapter over
Azurite (a fresh container each). The Azure-only tests pin the staged-block
path (a blob bigger than one block is invisible until committed), the
conditional commit, and the start-up checks.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from shared.blobs.azure import AzureBlobSink
from shared.blobs.local import LocalBlobSink
from shared.blobs.port import BlobExists, BlobNotFound, BlobSink, InvalidBlobPath
from shared.errors import ConfigurationError
from tests.emulators import free_port

SMALL_BLOCK = 64 * 1024  # the adapter's minimum: lets a test cross block boundaries cheaply


@pytest.fixture
def azure_sink(azurite_connection_string: str) -> Iterator[AzureBlobSink]:
    sink = AzureBlobSink(f"t{uuid.uuid4().hex[:16]}", connection_string=azurite_connection_string,
                         create_container=True, block_bytes=SMALL_BLOCK)
    try:
        yield sink
    finally:
        sink.close()


@pytest.fixture
def local_sink(tmp_path: Path) -> LocalBlobSink:
    return LocalBlobSink(tmp_path / "blobs")


@pytest.fixture(params=["local", pytest.param("azure", marks=pytest.mark.azurite)])
def sink(request: pytest.FixtureRequest) -> BlobSink:
    return request.getfixturevalue(f"{request.param}_sink")


def stream(total: int, chunk: int) -> Iterator[bytes]:
    """Deterministic pseudo-random bytes, produced lazily."""
    produced, counter = 0, 0
    while produced < total:
        block = hashlib.sha256(counter.to_bytes(8, "big")).digest() * (chunk // 32 + 1)
        piece = block[: min(chunk, total - produced)]
        produced += len(piece)
        counter += 1
        yield piece


# --- the contract ------------------------------------------------------------------------


def test_put_from_bytes_then_read(sink: BlobSink) -> None:
    info = sink.put("exports/t1/a.json", b'{"x": 1}', "application/json", {"tenant": "t1"})
    assert (info.path, info.size, info.content_type, info.metadata) == (
        "exports/t1/a.json", 8, "application/json", {"tenant": "t1"})
    assert sink.read("exports/t1/a.json") == b'{"x": 1}'
    assert sink.exists("exports/t1/a.json")


def test_put_streams_from_chunks_across_block_boundaries(sink: BlobSink) -> None:
    total = 3 * SMALL_BLOCK + 12345  # several blocks and a short tail, in odd-sized chunks
    expected = b"".join(stream(total, 10_000))
    info = sink.put("exports/big.bin", stream(total, 10_000))
    assert info.size == total
    assert b"".join(sink.open("exports/big.bin")) == expected
    assert sink.list("exports/big")[0].size == total


def test_empty_blob(sink: BlobSink) -> None:
    sink.put("empty", [])
    assert sink.read("empty") == b"" and sink.exists("empty")


def test_binary_content_round_trips(sink: BlobSink) -> None:
    data = bytes(range(256)) * 10
    sink.put("bin", [data[:100], b"", data[100:]])
    assert sink.read("bin") == data


def test_put_refuses_to_replace_unless_asked(sink: BlobSink) -> None:
    sink.put("audit/2026-11-23.log", b"first")
    with pytest.raises(BlobExists):
        sink.put("audit/2026-11-23.log", b"second")
    assert sink.read("audit/2026-11-23.log") == b"first"

    sink.put("audit/2026-11-23.log", b"third", overwrite=True)
    assert sink.read("audit/2026-11-23.log") == b"third"


def test_missing_blob(sink: BlobSink) -> None:
    assert not sink.exists("nope")
    with pytest.raises(BlobNotFound):
        sink.read("nope")
    with pytest.raises(BlobNotFound):
        sink.open("nope")


def test_list_by_prefix_is_sorted_and_carries_properties(sink: BlobSink) -> None:
    sink.put("exports/t1/2026-11-22/part-1", b"aa", "text/csv", {"rows": "1"})
    sink.put("exports/t1/2026-11-23/part-1", b"bbb", "text/csv")
    sink.put("exports/t2/2026-11-23/part-1", b"c")
    sink.put("audit/x", b"d")

    assert [b.path for b in sink.list("exports/t1/")] == ["exports/t1/2026-11-22/part-1", "exports/t1/2026-11-23/part-1"]
    assert [b.path for b in sink.list("exports/t1/2026-11-2")] == [
        "exports/t1/2026-11-22/part-1", "exports/t1/2026-11-23/part-1"]
    assert [b.path for b in sink.list("exports/t")] == [
        "exports/t1/2026-11-22/part-1", "exports/t1/2026-11-23/part-1", "exports/t2/2026-11-23/part-1"]
    assert len(sink.list()) == 4
    assert sink.list("nothing/") == []
    first = sink.list("exports/t1/2026-11-22")[0]
    assert (first.size, first.content_type, first.metadata) == (2, "text/csv", {"rows": "1"})
    assert first.last_modified is not None


@pytest.mark.parametrize("path", ["../x", "/x", "a//b", ".hidden", "a/./b", "a/../b", ""])
def test_invalid_paths_are_refused_by_every_adapter(sink: BlobSink, path: str) -> None:
    with pytest.raises(InvalidBlobPath):
        sink.put(path, b"x")


def test_invalid_metadata_is_refused_before_writing(sink: BlobSink) -> None:
    with pytest.raises(InvalidBlobPath):
        sink.put("m", b"x", metadata={"bad key": "v"})
    with pytest.raises(InvalidBlobPath):
        sink.put("m", b"x", metadata={"k": "naïve"})  # Blob Storage metadata is ASCII
    assert not sink.exists("m")


def test_a_failing_producer_leaves_no_blob(sink: BlobSink) -> None:
    def broken() -> Iterator[bytes]:
        yield from stream(2 * SMALL_BLOCK, 8192)  # some blocks already staged on Azure
        raise RuntimeError("producer died")

    with pytest.raises(RuntimeError):
        sink.put("broken.bin", broken())
    assert not sink.exists("broken.bin")
    assert sink.list("broken") == []

    # A retry after the crash must succeed (on Azure the blocks left staged must not count).
    sink.put("broken.bin", b"complete")
    assert sink.read("broken.bin") == b"complete"


# --- Azure only ------------------------------------------------------------------------------

@pytest.mark.azurite
def test_staged_blocks_are_invisible_until_committed(azure_sink: AzureBlobSink) -> None:
    seen: list[bool] = []

    def watched() -> Iterator[bytes]:
        for piece in stream(3 * SMALL_BLOCK, SMALL_BLOCK):
            yield piece
            seen.append(azure_sink.exists("staged.bin"))

    azure_sink.put("staged.bin", watched())
    assert seen and not any(seen)
    assert azure_sink.exists("staged.bin")


@pytest.mark.azurite
def test_a_writer_that_loses_the_race_after_staging_is_refused(azure_sink: AzureBlobSink) -> None:
    # Our early exists() check passes, every block is staged, then another
    # writer commits the name first: the conditional commit (If-None-Match: *)
    # must still refuse us and leave the other writer's blob alone.
    def racing() -> Iterator[bytes]:
        yield from stream(2 * SMALL_BLOCK, SMALL_BLOCK)
        other = azure_sink._container.get_blob_client("race.bin")
        other.upload_blob(b"winner", overwrite=True)

    with pytest.raises(BlobExists):
        azure_sink.put("race.bin", racing())
    assert azure_sink.read("race.bin") == b"winner"


@pytest.mark.azurite
def test_account_url_with_a_shared_key_credential(azurite_account_url: str, azurite_credential: dict[str, str],
                                                  azure_sink: AzureBlobSink) -> None:
    other = AzureBlobSink(azure_sink.container, account_url=azurite_account_url, credential=azurite_credential)
    try:
        azure_sink.put("shared", b"seen by both")
        assert other.read("shared") == b"seen by both"
    finally:
        other.close()


@pytest.mark.azurite
def test_a_missing_container_fails_at_start(azurite_connection_string: str) -> None:
    with pytest.raises(ConfigurationError, match="BLOB_ACCOUNT_URL"):
        AzureBlobSink("no-such-container", connection_string=azurite_connection_string)


def test_an_unreachable_account_fails_at_start_naming_the_setting(azurite_credential: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{free_port()}/devstoreaccount1"
    with pytest.raises(ConfigurationError, match="BLOB_ACCOUNT_URL"):
        AzureBlobSink("exports", account_url=url, credential=azurite_credential)


def test_open_from_reads_from_an_offset(sink: BlobSink) -> None:
    # An import resumes mid-file without re-reading it (shared/imports): a seek locally, a
    # ranged download on Azure; at the end, nothing.
    data = b"".join(stream(300 * 1024, 50 * 1024))
    sink.put("imports/t/i/source.ndjson", data)
    for offset in (0, 1, 70_000, len(data) - 1, len(data)):
        assert b"".join(sink.open_from("imports/t/i/source.ndjson", offset)) == data[offset:]
    with pytest.raises(BlobNotFound):
        b"".join(sink.open_from("imports/t/i/missing.ndjson", 0))


def test_discard_removes_a_blob_and_its_metadata_and_is_idempotent(sink: BlobSink) -> None:
    sink.put("imports/t1/i1/source.csv", b"email\nann@example.com\n", "text/csv", {"kind": "customers"})
    sink.put("imports/t1/i1/other.csv", b"kept")
    sink.discard("imports/t1/i1/source.csv")
    assert not sink.exists("imports/t1/i1/source.csv")
    assert [info.path for info in sink.list("imports/t1/")] == ["imports/t1/i1/other.csv"]
    with pytest.raises(BlobNotFound):
        sink.read("imports/t1/i1/source.csv")
    sink.discard("imports/t1/i1/source.csv")  # gone already: nothing to do
    sink.put("imports/t1/i1/source.csv", b"new")  # the path is free again, metadata and all
    assert sink.read("imports/t1/i1/source.csv") == b"new"
    assert sink.list("imports/t1/i1/source")[0].metadata == {}
