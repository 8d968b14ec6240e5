"""The key-provider port (tenant key-encryption keys) and its adapters.

``build_key_provider(settings)`` chooses the adapter (``ACCRUE_KEYS``):
``shared.keys.local.LocalKeyring`` or ``shared.keys.keyvault.KeyVaultKeyProvider``.
``rewrap`` moves one wrapped data key to the tenant's current KEK version.
"""

from shared.keys.factory import build_key_provider, needs_rewrap, rewrap
from shared.keys.port import KeyProvider, KeyProviderError, UnknownKey, UnwrapFailed, WrappedKey

__all__ = ["KeyProvider", "KeyProviderError", "UnknownKey", "UnwrapFailed", "WrappedKey", "build_key_provider",
           "needs_rewrap", "rewrap"]
