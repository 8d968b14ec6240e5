"""The export key-encryption key: a tenant's **export** key (not the key of personal
data), seen through the interface Azure Storage's client-side encryption calls
(``wrap_key``, ``unwrap_key``, ``get_kid``, ``get_key_wrap_algorithm``).

The key id (``kid``) written into each file's ``encryptiondata`` names the key
version that wrapped the file's content key: on Key Vault its key identifier URL
(``https://<vault>/keys/export-<tenant>/<version>``), which the SDKs' Key Vault key
resolvers open in any language; locally ``local:<tenant>/<version>``. Rotation makes
a new version current; files already written keep their kid and keep decrypting
with the older version (never disabled by a rotation).
"""

from __future__ import annotations

from shared.keys.port import KeyProvider, UnwrapFailed, WrappedKey


class ExportKek:
    """One tenant's export key for one upload (``get_kid`` answers the version its last
    ``wrap_key`` used, so use one instance per blob) or for reading (``for_kid``)."""

    def __init__(self, keys: KeyProvider, tenant_id: str, kid: str | None = None) -> None:
        self._keys = keys
        self.tenant_id = tenant_id
        self._kid = kid
        self._algorithm: str | None = None
        self.wrapped: WrappedKey | None = None

    def wrap_key(self, key: bytes) -> bytes:
        self._keys.ensure_tenant_key(self.tenant_id)
        wrapped = self._keys.wrap(self.tenant_id, key)
        self.wrapped = wrapped
        self._algorithm = wrapped.algorithm
        self._kid = kid_of(self._keys, wrapped)
        return wrapped.ciphertext

    def get_kid(self) -> str:
        assert self._kid is not None, "wrap_key first: the kid names the version that wrapped"
        return self._kid

    def get_key_wrap_algorithm(self) -> str:
        assert self._algorithm is not None, "wrap_key first"
        return self._algorithm

    def unwrap_key(self, key: bytes, algorithm: str) -> bytes:
        key_id, version = parse_kid(self.get_kid())
        return self._keys.unwrap(WrappedKey(self.tenant_id, key_id, version, algorithm, key))


def kid_of(keys: KeyProvider, wrapped: WrappedKey) -> str:
    uri = getattr(keys, "key_uri", None)
    return uri(wrapped) if uri is not None else f"{wrapped.key_id}/{wrapped.key_version}"


def parse_kid(kid: str) -> tuple[str, str]:
    """(key name, version) of a kid: ``.../keys/<name>/<version>`` or ``<keyId>/<version>``."""
    head, _, version = kid.rstrip("/").rpartition("/")
    name = head.rpartition("/keys/")[2] if "/keys/" in head else head
    if not name or not version:
        raise UnwrapFailed(f"not an export key id: {kid!r}")
    return name, version


def resolver(keys: KeyProvider, tenant_id: str):  # type: ignore[no-untyped-def]
    """The SDK's ``key_resolver_function`` for a tenant's export files."""
    return lambda kid: ExportKek(keys, tenant_id, kid)
