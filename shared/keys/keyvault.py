"""The Azure key provider: one Key Vault RSA key per tenant, wrapping with RSA-OAEP-256.

A tenant's KEK is the Key Vault key ``tenant-<escaped tenantId>`` (Key Vault
names allow letters, digits and ``-`` only, so ``-``, ``.`` and ``_`` of a
tenant id are escaped as ``-2d``, ``-2e``, ``-5f``: one name per tenant id,
never two). Keys are RSA 3072 limited to the wrapKey/unwrapKey operations.

Wrapping and unwrapping go through the SDK's ``CryptographyClient``, one per key
version, kept for the life of the process: the client downloads the public key
once, wraps locally with it (a public-key operation; what the SDK does when
``keys/get`` is allowed) and asks the service to unwrap, so the private key never
leaves the vault. Rotation is Key Vault's ``rotate_key``: a new version becomes
current and older versions keep unwrapping what they wrapped.

Errors of the SDK become the port's: an unknown key or version is ``UnknownKey``,
a ciphertext the service refuses is ``UnwrapFailed``, anything else (network,
throttling, permissions) ``KeyProviderError`` (503).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.keyvault.keys import KeyClient, KeyOperation, KeyVaultKey
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm

from shared.keys.port import KeyProviderError, UnknownKey, UnwrapFailed, WrappedKey
from shared.telemetry import tracing

ALGORITHM = "RSA-OAEP-256"
KEY_SIZE = 3072
CURRENT_TTL_SECONDS = 60.0  # how long a process trusts its idea of the current version


def key_name(tenant_id: str) -> str:
    escaped = tenant_id.replace("-", "-2d").replace(".", "-2e").replace("_", "-5f")
    return f"tenant-{escaped}"


class KeyVaultKeyProvider:
    """``KeyProvider`` over Azure Key Vault keys (``azure-keyvault-keys``)."""

    def __init__(self, vault_url: str, credential: TokenCredential, **client_kwargs: Any) -> None:
        self.vault_url = vault_url.rstrip("/")
        self._credential = credential
        self._client_kwargs = client_kwargs  # e.g. transport=..., for tests
        self._keys = KeyClient(self.vault_url, credential, **client_kwargs)
        self._lock = threading.Lock()
        self._current: dict[str, tuple[float, KeyVaultKey]] = {}
        self._crypto: dict[tuple[str, str], CryptographyClient] = {}

    # --- KeyProvider -------------------------------------------------------------

    @tracing.traced("keyvault ensure_tenant_key", tracing.CLIENT)
    def ensure_tenant_key(self, tenant_id: str) -> str:
        name = key_name(tenant_id)
        try:
            key = self._keys.get_key(name)
        except ResourceNotFoundError:
            try:
                key = self._keys.create_rsa_key(name, size=KEY_SIZE,
                                                key_operations=[KeyOperation.wrap_key, KeyOperation.unwrap_key],
                                                tags={"accrueTenant": tenant_id})
            except AzureError as exc:
                raise KeyProviderError(f"Key Vault could not create the key of tenant {tenant_id!r}: {exc}") from exc
        except AzureError as exc:
            raise KeyProviderError(f"Key Vault is unavailable: {exc}") from exc
        self._remember(tenant_id, key)
        return _version(key)

    def current_version(self, tenant_id: str) -> str:
        return _version(self._current_key(tenant_id))

    @tracing.traced("keyvault wrap", tracing.CLIENT)
    def wrap(self, tenant_id: str, data_key: bytes) -> WrappedKey:
        key = self._current_key(tenant_id, create=True)
        client = self._client(key_name(tenant_id), _version(key), key)
        try:
            result = client.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, data_key)
        except AzureError as exc:
            raise KeyProviderError(f"Key Vault could not wrap a key of tenant {tenant_id!r}: {exc}") from exc
        return WrappedKey(tenant_id, key_name(tenant_id), _version(key), ALGORITHM, result.encrypted_key)

    @tracing.traced("keyvault unwrap", tracing.CLIENT)
    def unwrap(self, wrapped: WrappedKey) -> bytes:
        if wrapped.algorithm != ALGORITHM:
            raise UnwrapFailed(f"Key Vault keys unwrap {ALGORITHM}, not {wrapped.algorithm!r}")
        if wrapped.key_id != key_name(wrapped.tenant_id):
            raise UnwrapFailed("the wrapped key names another tenant's key-encryption key")
        client = self._client(wrapped.key_id, wrapped.key_version, None)
        try:
            return client.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.ciphertext).key
        except ResourceNotFoundError:
            raise UnknownKey(f"tenant {wrapped.tenant_id!r} has no key version {wrapped.key_version!r}") from None
        except HttpResponseError as exc:
            if exc.status_code == 400:
                raise UnwrapFailed("the wrapped key is forged, truncated or wrapped by another key") from None
            raise KeyProviderError(f"Key Vault could not unwrap: {exc.message}") from exc
        except AzureError as exc:
            raise KeyProviderError(f"Key Vault is unavailable: {exc}") from exc

    @tracing.traced("keyvault rotate", tracing.CLIENT)
    def rotate(self, tenant_id: str) -> str:
        self.ensure_tenant_key(tenant_id)
        try:
            key = self._keys.rotate_key(key_name(tenant_id))
        except AzureError as exc:
            raise KeyProviderError(f"Key Vault could not rotate the key of tenant {tenant_id!r}: {exc}") from exc
        self._remember(tenant_id, key)
        return _version(key)

    @tracing.traced("keyvault versions", tracing.CLIENT)
    def versions(self, tenant_id: str) -> list[str]:
        try:
            props = list(self._keys.list_properties_of_key_versions(key_name(tenant_id)))
        except ResourceNotFoundError:
            raise UnknownKey(f"tenant {tenant_id!r} has no key-encryption key") from None
        return [p.version for p in sorted(props, key=lambda p: p.created_on or 0) if p.version]

    def close(self) -> None:
        self._keys.close()
        for client in self._crypto.values():
            client.close()

    # --- helpers ------------------------------------------------------------------

    def _remember(self, tenant_id: str, key: KeyVaultKey) -> None:
        with self._lock:
            self._current[tenant_id] = (time.monotonic(), key)

    def _current_key(self, tenant_id: str, create: bool = False) -> KeyVaultKey:
        with self._lock:
            hit = self._current.get(tenant_id)
        if hit is not None and time.monotonic() - hit[0] < CURRENT_TTL_SECONDS:
            return hit[1]
        try:
            key = self._keys.get_key(key_name(tenant_id))
        except ResourceNotFoundError:
            if not create:
                raise UnknownKey(f"tenant {tenant_id!r} has no key-encryption key yet") from None
            self.ensure_tenant_key(tenant_id)
            return self._current[tenant_id][1]
        except AzureError as exc:
            raise KeyProviderError(f"Key Vault is unavailable: {exc}") from exc
        self._remember(tenant_id, key)
        return key

    def _client(self, name: str, version: str, key: KeyVaultKey | None) -> CryptographyClient:
        with self._lock:
            client = self._crypto.get((name, version))
            if client is None:
                target: KeyVaultKey | str = key if key is not None else f"{self.vault_url}/keys/{name}/{version}"
                client = CryptographyClient(target, self._credential, **self._client_kwargs)
                self._crypto[(name, version)] = client
            return client


def _version(key: KeyVaultKey) -> str:
    assert key.properties.version, "Key Vault returned a key without a version"
    return key.properties.version
