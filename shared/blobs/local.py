"""The embedded blob sink: one folder on the local disk.

A blob is a plain file at ``<root>/<path>`` (so an export can be picked up with
``ls`` and ``cp``); its content type and metadata live in a sidecar,
``<root>/.meta/<path>.json``. Writes go to a temporary file in ``<root>/.tmp``
(same file system), are fsynced, then moved into place in one step:

* without ``overwrite``, ``os.link`` publishes the file and fails if the name is
  taken, so two racing writers cannot both win and nothing is ever replaced;
* with ``overwrite``, ``os.replace`` swaps the file atomically; a reader that
  already opened the old one keeps reading the old bytes to the end.

So a reader never sees half a blob. A client-side-encrypted blob (``kek``: Azure Storage
encryption v2, ``shared.blobs.cse``) keeps its ``encryptiondata`` in the sidecar; data and
sidecar are swapped under an ``flock`` on ``.meta/<path>.lock`` that a decrypting reader
also takes, so racing overwriters never leave one's bytes under another's key. The sidecar is published just after the
data: for that instant a new blob lists with the default content type and no
metadata (never wrong bytes). Paths are checked by ``shared.blobs.port`` (no
``..``, no leading ``/``, no dot files) and the resolved target must stay inside
the root, so no path reaches outside the folder. One limit of a folder that
Blob Storage does not have: ``a`` and ``a/b`` cannot both be blobs.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Mapping

from shared.blobs import cse
from shared.blobs.cse import KeyEncryptionKey, KeyResolver
from shared.blobs.port import (
    DEFAULT_CONTENT_TYPE,
    BlobExists,
    BlobInfo,
    BlobNotFound,
    BlobUnavailable,
    Chunks,
    InvalidBlobPath,
    check_content_type,
    check_metadata,
    check_path,
    check_prefix,
    iter_chunks,
)
from shared.private_files import private_dir

READ_CHUNK_BYTES = 1024 * 1024
_META_DIR = ".meta"
_TMP_DIR = ".tmp"


class LocalBlobSink:
    """The blob-sink port over a folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        try:
            # Owner only (shared.private_files): exports, the audit archive and the erasure log.
            private_dir(self.root / _TMP_DIR)
            private_dir(self.root / _META_DIR)
        except OSError as exc:
            raise BlobUnavailable(f"cannot use {self.root} as a blob folder: {exc}") from exc

    def close(self) -> None:
        pass

    # --- paths -----------------------------------------------------------------------

    def _target(self, path: str) -> Path:
        target = (self.root / check_path(path)).resolve()
        # Belt and braces: the path check already excludes "..", this also
        # catches a symlink planted inside the folder.
        if not target.is_relative_to(self.root):
            raise InvalidBlobPath(f"blob path {path!r} leaves the blob folder")
        return target

    def _sidecar(self, path: str) -> Path:
        return self.root / _META_DIR / (path + ".json")

    # --- writes ----------------------------------------------------------------------

    def put(
        self,
        path: str,
        chunks: Chunks,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: Mapping[str, str] | None = None,
        *,
        overwrite: bool = False,
        kek: KeyEncryptionKey | None = None,
    ) -> BlobInfo:
        target = self._target(path)
        content_type = check_content_type(content_type)
        meta = check_metadata(metadata)
        if kek is not None:
            # What azure-storage-blob would upload: the encrypted regions, and the
            # encryptiondata metadata (shared.blobs.cse; the SDK reads these files back).
            encryption, chunks = cse.encrypt(iter_chunks(chunks), kek)
            meta = dict(meta, **check_metadata({cse.METADATA_KEY: encryption}))
        if not overwrite and target.exists():
            raise BlobExists(f"blob {path!r} already exists")  # fail early, before streaming it all
        tmp_dir = self.root / _TMP_DIR
        data_tmp: str | None = None
        meta_tmp: str | None = None
        try:
            fd, data_tmp = tempfile.mkstemp(dir=tmp_dir, prefix="blob-")
            size = 0
            with os.fdopen(fd, "wb") as out:
                for chunk in iter_chunks(chunks):
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            fd, meta_tmp = tempfile.mkstemp(dir=tmp_dir, prefix="meta-")
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump({"content_type": content_type, "metadata": meta}, out)
                out.flush()
                os.fsync(out.fileno())
            try:
                private_dir(target.parent)
            except (FileExistsError, NotADirectoryError) as exc:
                raise BlobExists(f"blob {path!r}: a blob already exists at one of its parent paths") from exc
            sidecar = self._sidecar(path)
            private_dir(sidecar.parent)
            # Data and sidecar swap under the path's lock: a reader of an encrypted blob (whose
            # key is in the sidecar) never pairs one writer's bytes with another's metadata.
            with self._path_lock(path, exclusive=True):
                if overwrite:
                    if target.is_dir():
                        raise BlobExists(f"blob {path!r}: other blobs live under this path")
                    os.replace(data_tmp, target)
                else:
                    try:
                        os.link(data_tmp, target)  # atomic and never replaces: the first writer wins
                    except FileExistsError as exc:
                        raise BlobExists(f"blob {path!r} already exists") from exc
                    os.unlink(data_tmp)
                data_tmp = None
                os.replace(meta_tmp, sidecar)
                meta_tmp = None
            _fsync_dir(target.parent)
        except OSError as exc:
            raise BlobUnavailable(f"cannot write blob {path!r} under {self.root}: {exc}") from exc
        finally:
            for leftover in (data_tmp, meta_tmp):
                if leftover is not None:
                    try:
                        os.unlink(leftover)
                    except OSError:
                        pass
        return BlobInfo(path, size, content_type, meta, _mtime(target))

    # --- reads -----------------------------------------------------------------------

    def open(self, path: str, resolver: KeyResolver | None = None) -> Iterator[bytes]:
        target = self._target(path)
        if resolver is not None:
            with self._path_lock(path, exclusive=False):  # these bytes with their own encryptiondata
                handle = self._open_handle(target, path)
                encryption = self._info(path, target).metadata.get(cse.METADATA_KEY)
            if encryption is not None:
                return cse.decrypt(_read_chunks(handle, path), encryption, resolver)
            return _read_chunks(handle, path)
        return _read_chunks(self._open_handle(target, path), path)

    def _open_handle(self, target: Path, path: str):  # type: ignore[no-untyped-def]
        try:
            return open(target, "rb")  # opened now: a later replace does not change what we read
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise BlobNotFound(f"blob {path!r} not found") from exc
        except OSError as exc:
            raise BlobUnavailable(f"cannot read blob {path!r}: {exc}") from exc

    @contextmanager
    def _path_lock(self, path: str, exclusive: bool) -> Iterator[None]:
        """An flock on ``.meta/<path>.lock`` (across processes), held only around the swap or open."""
        lock = self.root / _META_DIR / (path + ".lock")
        private_dir(lock.parent)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def open_from(self, path: str, offset: int) -> Iterator[bytes]:
        """The blob's bytes from ``offset`` on (an import resumes mid-file without re-reading it)."""
        assert offset >= 0
        target = self._target(path)
        try:
            handle = open(target, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise BlobNotFound(f"blob {path!r} not found") from exc
        except OSError as exc:
            raise BlobUnavailable(f"cannot read blob {path!r}: {exc}") from exc
        handle.seek(offset)
        return _read_chunks(handle, path)

    def read(self, path: str) -> bytes:
        return b"".join(self.open(path))

    def exists(self, path: str) -> bool:
        return self._target(path).is_file()

    def discard(self, path: str) -> None:
        target = self._target(path)
        with self._path_lock(path, exclusive=True):
            for leftover in (target, self._sidecar(path)):
                try:
                    leftover.unlink()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise BlobUnavailable(f"cannot discard blob {path!r}: {exc}") from exc

    def list(self, prefix: str = "") -> list[BlobInfo]:
        check_prefix(prefix)
        # Walk only the folder the prefix points into, not the whole tree.
        head = prefix.rpartition("/")[0]
        start = self.root / head if head else self.root
        found: list[BlobInfo] = []
        try:
            for dirpath, dirnames, filenames in os.walk(start):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                for name in filenames:
                    if name.startswith("."):
                        continue
                    full = Path(dirpath) / name
                    rel = full.relative_to(self.root).as_posix()
                    if rel.startswith(prefix):
                        found.append(self._info(rel, full))
        except OSError as exc:
            raise BlobUnavailable(f"cannot list blobs under {self.root}: {exc}") from exc
        return sorted(found, key=lambda info: info.path)

    def _info(self, path: str, full: Path) -> BlobInfo:
        content_type, metadata = DEFAULT_CONTENT_TYPE, {}
        try:
            sidecar = json.loads(self._sidecar(path).read_text(encoding="utf-8"))
            content_type, metadata = sidecar["content_type"], sidecar["metadata"]
        except (OSError, ValueError, KeyError):
            pass  # published a moment before its sidecar, or written by hand
        stat = full.stat()
        return BlobInfo(path, stat.st_size, content_type, metadata,
                        datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc))


def _read_chunks(handle, path: str) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
    with handle:
        while True:
            try:
                chunk = handle.read(READ_CHUNK_BYTES)
            except OSError as exc:
                raise BlobUnavailable(f"cannot read blob {path!r}: {exc}") from exc
            if not chunk:
                return
            yield chunk


def _mtime(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
    except OSError:
        return None


def _fsync_dir(path: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
