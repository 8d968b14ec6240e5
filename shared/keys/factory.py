"""Builds the key provider the settings choose, and the rewrap step of a rotation."""

from __future__ import annotations

from shared.errors import ConfigurationError
from shared.keys.port import KeyProvider, WrappedKey
from shared.settings import Settings


def build_key_provider(settings: Settings) -> KeyProvider:
    """``ACCRUE_KEYS=local``: the keyring file under the data folder (created 0600 on
    first start); ``ACCRUE_KEYS=keyvault``: Key Vault at ``KEYVAULT_URI`` with
    ``DefaultAzureCredential`` (the Function App's own identity: wrap and unwrap)
    and, when ``KEYVAULT_MANAGEMENT_CLIENT_ID`` is set, the key-manager identity
    (that user-assigned managed identity: create, rotate, recover). ``KEYVAULT_SKU``
    picks the key type: premium -> RSA-HSM, standard -> RSA."""
    if settings.keys == "local":
        from shared.keys.local import LocalKeyring

        return LocalKeyring.in_folder(settings.data_dir)
    if settings.keys == "keyvault":
        if not settings.keyvault_uri:
            raise ConfigurationError("setting KEYVAULT_URI is required when ACCRUE_KEYS=keyvault")
        from azure.identity import DefaultAzureCredential

        from shared.keys.keyvault import KeyVaultKeyProvider

        management = None
        if settings.keyvault_management_client_id:
            from azure.identity import ManagedIdentityCredential

            management = ManagedIdentityCredential(client_id=settings.keyvault_management_client_id)
        return KeyVaultKeyProvider(settings.keyvault_uri, DefaultAzureCredential(), management_credential=management,
                                   hardware_protected=settings.keyvault_sku == "premium")
    raise ConfigurationError(f"setting ACCRUE_KEYS={settings.keys!r} is not one of local, keyvault")


def build_export_key_provider(settings: Settings) -> KeyProvider:
    """The tenants' **export** keys, separate from the keys of personal data: locally a keyring
    file of its own (``export-keyring.json``), on Azure the keys ``export-<tenant>`` in the
    export vault (``EXPORT_KEYVAULT_URI``, default ``KEYVAULT_URI``). A warehouse identity is
    granted unwrap on its tenant's export key only (bicep/modules/exportkeys.bicep)."""
    if settings.keys == "local":
        from shared.keys.local import LocalKeyring

        return LocalKeyring(settings.data_dir / EXPORT_KEYRING)
    if settings.keys == "keyvault":
        vault = settings.export_keyvault_uri or settings.keyvault_uri
        if not vault:
            raise ConfigurationError("setting KEYVAULT_URI (or EXPORT_KEYVAULT_URI) is required when ACCRUE_KEYS=keyvault")
        from azure.identity import DefaultAzureCredential

        from shared.keys.keyvault import KeyVaultKeyProvider

        management = None
        if settings.keyvault_management_client_id:
            from azure.identity import ManagedIdentityCredential

            management = ManagedIdentityCredential(client_id=settings.keyvault_management_client_id)
        return KeyVaultKeyProvider(vault, DefaultAzureCredential(), management_credential=management,
                                   hardware_protected=settings.keyvault_sku == "premium", purpose="export")
    raise ConfigurationError(f"setting ACCRUE_KEYS={settings.keys!r} is not one of local, keyvault")


EXPORT_KEYRING = "export-keyring.json"


def needs_rewrap(provider: KeyProvider, wrapped: WrappedKey) -> bool:
    return wrapped.key_version != provider.current_version(wrapped.tenant_id)


def rewrap(provider: KeyProvider, wrapped: WrappedKey) -> WrappedKey:
    """The same data key wrapped by the tenant's current KEK version (itself if it already is).

    The rewrap job of a rotation calls this for every stored wrapped key; the data
    key is in memory only between the two calls and is never returned."""
    if not needs_rewrap(provider, wrapped):
        return wrapped
    return provider.wrap(wrapped.tenant_id, provider.unwrap(wrapped))
