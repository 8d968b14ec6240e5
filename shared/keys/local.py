"""The embedded key provider: a keyring file of tenant KEKs under the data folder.

The file is ``<ACCRUE_DATA_DIR>/keyring.json``, created on first start with mode
0600 (owner read/write only) and rewritten atomically (temporary file with mode
0600 in the same folder, fsync, ``os.replace``) under an exclusive ``flock`` on
``keyring.json.lock``, so two processes on one data folder never lose a version.

Format (version 1)::

    {
      "format": "accrue-keyring",
      "version": 1,
      "tenants": {
        "<tenantId>": {
          "current": "v2",
          "versions": {
            "v1": {"key": "<base64 of 32 random bytes>", "createdAt": "2026-11-01T12:00:00.000000Z"},
            "v2": {"key": "...", "createdAt": "..."}
          }
        }
      }
    }

Each version is an AES-256 key; data keys are wrapped with AES Key Wrap
(RFC 3394, ``A256KW``), whose integrity check makes a forged, truncated or
other-tenant wrapped key fail to unwrap (``UnwrapFailed``) instead of yielding
a wrong key. The keyring holds its KEKs in the clear, protected by the file's
permissions only: it is the laptop default. Production uses Key Vault, where the
KEK never leaves the service.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
import stat
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from shared.keys.port import KeyProviderError, UnknownKey, UnwrapFailed, WrappedKey
from shared.private_files import private_dir

FORMAT = "accrue-keyring"
FORMAT_VERSION = 1
ALGORITHM = "A256KW"
FILE_NAME = "keyring.json"


class LocalKeyring:
    """``KeyProvider`` over a 0600 JSON file (see the module docstring for its format)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        private_dir(self.path.parent)  # the data folder: owner only (shared.private_files)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        with self._exclusive():
            if not self.path.exists():
                self._write({"format": FORMAT, "version": FORMAT_VERSION, "tenants": {}})
        self._data = self._read()

    @classmethod
    def in_folder(cls, data_dir: str | Path) -> "LocalKeyring":
        return cls(Path(data_dir) / FILE_NAME)

    # --- KeyProvider -------------------------------------------------------------

    def ensure_tenant_key(self, tenant_id: str) -> str:
        entry = self._tenant(tenant_id, reload=True)
        if entry is not None:
            return entry["current"]
        with self._mutate() as data:
            tenants = data["tenants"]
            if tenant_id not in tenants:
                tenants[tenant_id] = {"current": "v1", "versions": {"v1": _new_version()}}
            return tenants[tenant_id]["current"]

    def current_version(self, tenant_id: str) -> str:
        entry = self._tenant(tenant_id, reload=True)
        if entry is None:
            raise UnknownKey(f"tenant {tenant_id!r} has no key-encryption key yet")
        return entry["current"]

    def versions(self, tenant_id: str) -> list[str]:
        entry = self._tenant(tenant_id, reload=True)
        if entry is None:
            raise UnknownKey(f"tenant {tenant_id!r} has no key-encryption key yet")
        return sorted(entry["versions"], key=lambda v: int(v[1:]))

    def wrap(self, tenant_id: str, data_key: bytes) -> WrappedKey:
        if len(data_key) < 16 or len(data_key) % 8:
            raise KeyProviderError("a data key must be at least 16 bytes and a multiple of 8")
        self.ensure_tenant_key(tenant_id)
        entry = self._tenant(tenant_id)
        assert entry is not None
        version = entry["current"]
        kek = base64.b64decode(entry["versions"][version]["key"])
        return WrappedKey(tenant_id, _key_id(tenant_id), version, ALGORITHM, aes_key_wrap(kek, data_key))

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        if wrapped.algorithm != ALGORITHM:
            raise UnwrapFailed(f"the local keyring unwraps {ALGORITHM} keys, not {wrapped.algorithm!r}")
        if wrapped.key_id != _key_id(wrapped.tenant_id):
            raise UnwrapFailed("the wrapped key names another tenant's key-encryption key")
        kek = self._kek(wrapped.tenant_id, wrapped.key_version)
        try:
            return aes_key_unwrap(kek, wrapped.ciphertext)
        except (InvalidUnwrap, ValueError):
            raise UnwrapFailed("the wrapped key is forged, truncated or wrapped by another key") from None

    def rotate(self, tenant_id: str) -> str:
        self.ensure_tenant_key(tenant_id)
        with self._mutate() as data:
            entry = data["tenants"][tenant_id]
            number = max(int(v[1:]) for v in entry["versions"]) + 1
            version = f"v{number}"
            entry["versions"][version] = _new_version()
            entry["current"] = version
            return version

    # --- file handling ------------------------------------------------------------

    def _kek(self, tenant_id: str, version: str) -> bytes:
        entry = self._tenant(tenant_id)
        if entry is None or version not in entry["versions"]:
            entry = self._tenant(tenant_id, reload=True)
        if entry is None:
            raise UnknownKey(f"tenant {tenant_id!r} has no key-encryption key")
        if version not in entry["versions"]:
            raise UnknownKey(f"tenant {tenant_id!r} has no key-encryption key version {version!r}")
        return base64.b64decode(entry["versions"][version]["key"])

    def _tenant(self, tenant_id: str, reload: bool = False) -> dict[str, Any] | None:
        with self._lock:
            entry = self._data["tenants"].get(tenant_id)
            if entry is None and reload:
                self._data = self._read()
                entry = self._data["tenants"].get(tenant_id)
            return entry

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        with self._lock:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    @contextmanager
    def _mutate(self) -> Iterator[dict[str, Any]]:
        with self._exclusive():
            data = self._read()
            yield data
            self._write(data)
            self._data = data

    def _read(self) -> dict[str, Any]:
        mode = stat.S_IMODE(os.stat(self.path).st_mode)
        if mode & 0o077:
            raise KeyProviderError(f"the keyring {self.path} is readable by others (mode {mode:o}); chmod 600 it")
        with open(self.path, "rb") as handle:
            data = json.loads(handle.read())
        if data.get("format") != FORMAT or data.get("version") != FORMAT_VERSION:
            raise KeyProviderError(f"{self.path} is not an Accrue keyring of format version {FORMAT_VERSION}")
        return data

    def _write(self, data: dict[str, Any]) -> None:
        temp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, json.dumps(data, indent=1, sort_keys=True).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(temp, 0o600)  # whatever the umask
        os.replace(temp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _key_id(tenant_id: str) -> str:
    return f"local:{tenant_id}"


def _new_version() -> dict[str, str]:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"key": base64.b64encode(secrets.token_bytes(32)).decode(), "createdAt": now}
