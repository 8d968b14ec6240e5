"""Owner-only folders and files for the embedded default (the local data folder).

The data folder holds the ledger, customers' sealed personal data and their
wrapped data keys (SQLite, ``-wal``/``-shm`` included), the queue, the keyring
(tenant KEKs in the clear), the blobs (exports, the audit archive, the erasure
log) and lock files. On a shared machine none of it may be readable by another
user: folders are ``0700``, files ``0600``, whatever the process umask.

SQLite creates a database's ``-wal`` and ``-shm`` with the mode of the database
file, so creating the database file ``0600`` first covers them too; files and
folders that already exist with wider modes are narrowed on open.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_dir(path: str | Path) -> Path:
    """``path`` and each folder created on the way to it, mode 0700."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:
            pass  # created by a concurrent process: narrowed below like the rest
        os.chmod(folder, DIR_MODE)
    mode = path.stat().st_mode
    if not stat.S_ISDIR(mode):
        raise NotADirectoryError(f"{path} is not a folder")
    if stat.S_IMODE(mode) != DIR_MODE:
        os.chmod(path, DIR_MODE)
    return path


def private_file(path: str | Path) -> Path:
    """Create ``path`` empty with mode 0600 if missing (never truncates), else narrow it to 0600."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path


def private_sqlite(path: str | Path) -> Path:
    """A SQLite database file and its side files (if present), owner only, its folder 0700."""
    path = Path(path)
    private_dir(path.parent)
    private_file(path)
    for suffix in SQLITE_SIDE_FILES:
        side = path.with_name(path.name + suffix)
        try:
            os.chmod(side, FILE_MODE)
        except FileNotFoundError:
            # Absent, or gone meanwhile: another connection's rollback journal lives only
            # through its transaction (two stores opening one new file at once met this).
            pass
    return path


def open_private(path: str | Path, mode: str = "w"):  # type: ignore[no-untyped-def]
    """``open(path, mode)`` for a text file created (or narrowed) to 0600."""
    private_file(path)
    return open(path, mode)
