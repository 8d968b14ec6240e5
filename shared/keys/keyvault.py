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

**Two identities, least privilege.** Wrapping, unwrapping and reading keys (the
data path: every request) use the app's own identity, which holds Key Vault
Crypto User only. Creating, rotating and recovering keys (tenant provisioning
and the dual-controlled rotation) use a second client, authenticated as the
key-manager identity (``KEYVAULT_MANAGEMENT_CLIENT_ID``, a user-assigned
identity holding Key Vault Crypto Officer on this vault only, see
bicep/modules/keymanager.bicep). Without that client, creating or rotating a
key is refused up front (``KeyManagementUnavailable``) instead of failing in
the vault with a 403 halfway through an operation.

**Key type.** ``hardware_protected`` (the ``KEYVAULT_SKU=premium`` setting,
matching the vault's SKU) creates ``RSA-HSM`` keys: the Premium tier is paid for
HSM protection. A Standard vault cannot hold HSM keys, so it gets ``RSA``.

**Soft delete.** The vault keeps a deleted key's name for its 90-day retention
(and purge protection forbids purging it). Creating a key whose name is held by
a deleted key answers 409; the manager then recovers the deleted key (its
versions unwrap what they wrapped before) instead of failing on the name.

Errors of the SDK become the port's: an unknown key or version is ``UnknownKey``,
a ciphertext the service refuses is ``UnwrapFailed``, a refusal of the vault
(403) ``KeyVaultForbidden``, anything else (network, throttling)
``KeyProviderError`` (503).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.keyvault.keys import KeyClient, KeyOperation, KeyVaultKey
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm

from shared.keys.port import KeyProviderError, UnknownKey, UnwrapFailed, WrappedKey
from shared.telemetry import tracing

ALGORITHM = "RSA-OAEP-256"
KEY_OPERATIONS = [KeyOperation.wrap_key, KeyOperation.unwrap_key]
KEY_SIZE = 3072
CURRENT_TTL_SECONDS = 60.0  # how long a process trusts its idea of the current version


class KeyManagementUnavailable(KeyProviderError):
    """Creating or rotating a key needs the key-manager identity, which this process lacks."""

    code = "key-management-unavailable"


class KeyVaultForbidden(KeyProviderError):
    """The vault refused the identity (403): a missing role assignment, or one not yet propagated."""

    code = "key-vault-forbidden"


def key_name(tenant_id: str, purpose: str = "tenant") -> str:
    """The tenant's key of a purpose: ``tenant-<id>`` (personal data, webhook secrets) or
    ``export-<id>`` (warehouse export files: its own key, so a warehouse's role on it
    reaches nothing else)."""
    escaped = tenant_id.replace("-", "-2d").replace(".", "-2e").replace("_", "-5f")
    return f"{purpose}-{escaped}"


class KeyVaultKeyProvider:
    """``KeyProvider`` over Azure Key Vault keys (``azure-keyvault-keys``)."""

    def __init__(self, vault_url: str, credential: TokenCredential, *,
                 management_credential: TokenCredential | None = None, hardware_protected: bool = False,
                 purpose: str = "tenant", **client_kwargs: Any) -> None:
        """``credential``: the data-path identity (wrap, unwrap, read). ``management_credential``:
        the key-manager identity (create, rotate, recover); None: this process manages no keys.
        ``purpose``: which of a tenant's keys (``key_name``): ``tenant`` or ``export``."""
        assert purpose in ("tenant", "export")
        self.purpose = purpose
        self.vault_url = vault_url.rstrip("/")
        self._credential = credential
        self._client_kwargs = client_kwargs  # e.g. transport=..., for tests
        self._keys = KeyClient(self.vault_url, credential, **client_kwargs)
        self._manager = (KeyClient(self.vault_url, management_credential, **client_kwargs)
                         if management_credential is not None else None)
        self.hardware_protected = hardware_protected
        self.key_type = "RSA-HSM" if hardware_protected else "RSA"
        self._lock = threading.Lock()
        self._current: dict[str, tuple[float, KeyVaultKey]] = {}
        self._crypto: dict[tuple[str, str], CryptographyClient] = {}

    def key_uri(self, wrapped: WrappedKey) -> str:
        """The Key Vault key identifier (``kid``) of the version that wrapped ``wrapped``: what
        the Azure Storage SDKs' Key Vault key resolvers in every language resolve."""
        return f"{self.vault_url}/keys/{wrapped.key_id}/{wrapped.key_version}"

    # --- KeyProvider -------------------------------------------------------------

    @tracing.traced("keyvault ensure_tenant_key", tracing.CLIENT)
    def ensure_tenant_key(self, tenant_id: str) -> str:
        """The tenant's KEK, created (or recovered from soft delete) by the key manager if
        missing. Safe to repeat and to race: Key Vault's create of an existing name adds a
        version, so the create is only attempted after a read found nothing."""
        name = key_name(tenant_id, self.purpose)
        try:
            key = self._keys.get_key(name)
        except ResourceNotFoundError:
            key = self._create(tenant_id, name)
        except AzureError as exc:
            raise _translate(exc, f"Key Vault could not read the key of tenant {tenant_id!r}") from exc
        self._remember(tenant_id, key)
        return _version(key)

    def _management(self, what: str) -> KeyClient:
        if self._manager is None:
            raise KeyManagementUnavailable(
                f"{what} needs the key-manager identity: set KEYVAULT_MANAGEMENT_CLIENT_ID to the client id of the "
                "user-assigned identity holding Key Vault Crypto Officer on the vault (docs/deploy.md)")
        return self._manager

    def _create(self, tenant_id: str, name: str) -> KeyVaultKey:
        manager = self._management(f"creating the key of tenant {tenant_id!r}")
        try:
            return manager.create_rsa_key(name, size=KEY_SIZE, hardware_protected=self.hardware_protected,
                                          key_operations=KEY_OPERATIONS, tags={"accrueTenant": tenant_id})
        except ResourceExistsError:
            # 409: a deleted key holds the name for the vault's retention; take it back.
            return self._recover(tenant_id, name, manager)
        except AzureError as exc:
            raise _translate(exc, f"Key Vault could not create the key of tenant {tenant_id!r}") from exc

    def _recover(self, tenant_id: str, name: str, manager: KeyClient) -> KeyVaultKey:
        try:
            manager.begin_recover_deleted_key(name, _polling_interval=1).wait(timeout=60)
            return manager.get_key(name)
        except AzureError as exc:
            raise _translate(exc, f"Key Vault could not recover the deleted key of tenant {tenant_id!r}") from exc

    def current_version(self, tenant_id: str) -> str:
        return _version(self._current_key(tenant_id))

    @tracing.traced("keyvault wrap", tracing.CLIENT)
    def wrap(self, tenant_id: str, data_key: bytes) -> WrappedKey:
        key = self._current_key(tenant_id, create=True)
        client = self._client(key_name(tenant_id, self.purpose), _version(key), key)
        try:
            result = client.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, data_key)
        except AzureError as exc:
            raise _translate(exc, f"Key Vault could not wrap a key of tenant {tenant_id!r}") from exc
        return WrappedKey(tenant_id, key_name(tenant_id, self.purpose), _version(key), ALGORITHM, result.encrypted_key)

    @tracing.traced("keyvault unwrap", tracing.CLIENT)
    def unwrap(self, wrapped: WrappedKey) -> bytes:
        if wrapped.algorithm != ALGORITHM:
            raise UnwrapFailed(f"Key Vault keys unwrap {ALGORITHM}, not {wrapped.algorithm!r}")
        if wrapped.key_id != key_name(wrapped.tenant_id, self.purpose):
            raise UnwrapFailed("the wrapped key names another tenant's key-encryption key")
        client = self._client(wrapped.key_id, wrapped.key_version, None)
        try:
            return client.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.ciphertext).key
        except ResourceNotFoundError:
            raise UnknownKey(f"tenant {wrapped.tenant_id!r} has no key version {wrapped.key_version!r}") from None
        except HttpResponseError as exc:
            if exc.status_code == 400:
                raise UnwrapFailed("the wrapped key is forged, truncated or wrapped by another key") from None
            raise _translate(exc, "Key Vault could not unwrap") from exc
        except AzureError as exc:
            raise _translate(exc, "Key Vault is unavailable") from exc

    @tracing.traced("keyvault rotate", tracing.CLIENT)
    def rotate(self, tenant_id: str) -> str:
        manager = self._management(f"rotating the key of tenant {tenant_id!r}")
        self.ensure_tenant_key(tenant_id)
        try:
            key = manager.rotate_key(key_name(tenant_id, self.purpose))
        except AzureError as exc:
            raise _translate(exc, f"Key Vault could not rotate the key of tenant {tenant_id!r}") from exc
        self._remember(tenant_id, key)
        return _version(key)

    @tracing.traced("keyvault versions", tracing.CLIENT)
    def versions(self, tenant_id: str) -> list[str]:
        try:
            props = list(self._keys.list_properties_of_key_versions(key_name(tenant_id, self.purpose)))
        except ResourceNotFoundError:
            raise UnknownKey(f"tenant {tenant_id!r} has no key-encryption key") from None
        return [p.version for p in sorted(props, key=lambda p: p.created_on or 0) if p.version]

    def close(self) -> None:
        self._keys.close()
        if self._manager is not None:
            self._manager.close()
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
            key = self._keys.get_key(key_name(tenant_id, self.purpose))
        except ResourceNotFoundError:
            if not create:
                raise UnknownKey(f"tenant {tenant_id!r} has no key-encryption key yet") from None
            self.ensure_tenant_key(tenant_id)
            return self._current[tenant_id][1]
        except AzureError as exc:
            raise _translate(exc, "Key Vault is unavailable") from exc
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


def _translate(exc: AzureError, what: str) -> KeyProviderError:
    if isinstance(exc, HttpResponseError) and exc.status_code == 403:
        return KeyVaultForbidden(f"{what}: the vault refused this identity (403). Check its role on the vault "
                                 f"(docs/deploy.md, 'Identities and keys'): {exc.message}")
    return KeyProviderError(f"{what}: {exc}")


def _version(key: KeyVaultKey) -> str:
    assert key.properties.version, "Key Vault returned a key without a version"
    return key.properties.version
