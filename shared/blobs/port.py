"""The blob-sink port: write-once files for exports and the audit archive.

A sink is one container (on Azure a Blob Storage container, locally a folder);
a blob is named by a relative path inside it (``exports/t1/2026-11-23/part-0001.enc``).
What every adapter guarantees (the contract tests in ``tests/unit/blobs`` and
``tests/integration/blobs`` hold each adapter to them):

* ``put`` streams: it takes ``bytes`` or any iterable of byte chunks and never
  holds more than one block of it in memory, so an export of any size fits;
* a blob appears whole or not at all: no reader ever sees half a blob;
* ``put`` refuses to replace an existing blob (``BlobExists``) unless asked with
  ``overwrite=True``; the audit archive never asks (and on Azure its
  immutability policy would refuse anyway). The only removal is ``discard``, of a
  transient blob (an import's uploaded file once it is applied): exports and the
  audit archive never call it;
* paths are relative, ``/``-separated segments of letters, digits and
  ``._=+@-``, none empty, none starting with a dot: no traversal, no hidden
  files, the same names on every adapter. Metadata keys are identifiers and
  values printable ASCII (what Blob Storage accepts);
* failures are typed: ``BlobNotFound``, ``BlobExists``, ``InvalidBlobPath``,
  ``BlobUnavailable`` (all ``BlobSinkError``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping, Protocol, Union

from shared.errors import AccrueError

if TYPE_CHECKING:
    from shared.blobs.cse import KeyEncryptionKey, KeyResolver

Chunks = Union[bytes, Iterable[bytes]]

DEFAULT_CONTENT_TYPE = "application/octet-stream"
MAX_PATH_LENGTH = 1024

_SEGMENT = re.compile(r"^[A-Za-z0-9_=+@-][A-Za-z0-9._=+@-]{0,254}$")
_METADATA_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_METADATA_VALUE = re.compile(r"^[\x20-\x7e]{0,1024}$")
_CONTENT_TYPE = re.compile(r"^[\x21-\x7e]+/[\x20-\x7e]+$")


class BlobSinkError(AccrueError):
    code = "blob-sink-error"
    status = 503


class InvalidBlobPath(BlobSinkError):
    """A path, metadata key or content type that no adapter would store as given."""

    code = "invalid-blob-path"
    status = 500


class BlobNotFound(BlobSinkError):
    code = "blob-not-found"
    status = 404


class BlobExists(BlobSinkError):
    """``put`` without ``overwrite`` on a path that already holds a blob."""

    code = "blob-exists"
    status = 409


class BlobUnavailable(BlobSinkError):
    code = "blob-unavailable"
    status = 503


@dataclass(frozen=True)
class BlobInfo:
    path: str
    size: int
    content_type: str
    metadata: dict[str, str] = field(default_factory=dict)
    last_modified: datetime | None = None


class BlobSink(Protocol):
    def put(
        self,
        path: str,
        chunks: Chunks,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: Mapping[str, str] | None = None,
        *,
        overwrite: bool = False,
        kek: "KeyEncryptionKey | None" = None,
    ) -> BlobInfo:
        """With ``kek``: stored with Azure Storage client-side encryption v2.0
        (``shared.blobs.cse``), a fresh content key per blob wrapped by ``kek``, the
        ``encryptiondata`` metadata beside it: what ``azure-storage-blob`` writes."""
        ...

    def open(self, path: str, resolver: "KeyResolver | None" = None) -> Iterator[bytes]:
        """The blob's bytes as chunks, read as they are consumed (BlobNotFound if absent).

        With ``resolver`` (key id -> key-encryption key), a client-side-encrypted blob
        is decrypted (``ClientDecryptError`` if it does not authenticate); without, its
        stored bytes are returned. The check for existence happens on the call, not on
        the first ``next``."""
        ...

    def read(self, path: str) -> bytes: ...

    def list(self, prefix: str = "") -> list[BlobInfo]:
        """Blobs whose path starts with ``prefix`` (a plain string prefix), sorted by path."""
        ...

    def exists(self, path: str) -> bool: ...

    def discard(self, path: str) -> None:
        """Remove a transient blob and its metadata (nothing if it is absent): an import's
        uploaded file, which holds personal data in the clear, once applied; an export
        backfill's files when it failed before its manifest (no manifest lists them, so no
        erasure would reach them). Never called on the audit archive (on Azure, the
        account's soft delete still keeps a discarded blob recoverable for its retention)."""
        ...

    def close(self) -> None: ...


def check_path(path: str) -> str:
    if not isinstance(path, str) or not path or len(path) > MAX_PATH_LENGTH:
        raise InvalidBlobPath(f"invalid blob path {path!r}: 1 to {MAX_PATH_LENGTH} characters")
    for segment in path.split("/"):
        if not _SEGMENT.match(segment):
            raise InvalidBlobPath(
                f"invalid blob path {path!r}: segments are letters, digits and ._=+@-, "
                "not empty and not starting with a dot"
            )
    return path


def check_prefix(prefix: str) -> str:
    """A prefix may end half-way through a segment ("exports/t1/2026-") or be empty."""
    if prefix == "":
        return prefix
    head, _, last = prefix.rpartition("/")
    if head:
        check_path(head)
    if last and not _SEGMENT.match(last):
        raise InvalidBlobPath(f"invalid blob prefix {prefix!r}")
    return prefix


def check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    checked: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not _METADATA_KEY.match(key):
            raise InvalidBlobPath(f"invalid metadata key {key!r}: an identifier")
        if not isinstance(value, str) or not _METADATA_VALUE.match(value):
            raise InvalidBlobPath(f"invalid metadata value for {key!r}: printable ASCII, at most 1024 characters")
        checked[key.lower()] = value  # Blob Storage keeps keys case-insensitively; so do we
    return checked


def check_content_type(content_type: str) -> str:
    if not isinstance(content_type, str) or not _CONTENT_TYPE.match(content_type):
        raise InvalidBlobPath(f"invalid content type {content_type!r}")
    return content_type


def iter_chunks(chunks: Chunks) -> Iterator[bytes]:
    """Normalise ``bytes`` or an iterable of chunks; empty chunks are dropped."""
    if isinstance(chunks, (bytes, bytearray, memoryview)):
        if len(chunks):
            yield bytes(chunks)
        return
    for chunk in chunks:
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise TypeError(f"blob chunks must be bytes, got {type(chunk).__name__}")
        if len(chunk):
            yield bytes(chunk)
