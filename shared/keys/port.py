"""The key-provider port: tenant key-encryption keys (KEKs) that wrap data keys.

A KEK never leaves the provider (the local keyring file, or Key Vault): callers
hand it a data key (DEK) to wrap and get back an opaque ``WrappedKey`` naming
the KEK version that wrapped it; unwrapping needs that version, so a rotated
KEK keeps unwrapping what its older versions wrapped. Used for customers'
personal data, webhook secrets and export files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shared.errors import AccrueError


class KeyProviderError(AccrueError):
    code = "key-provider-error"
    status = 503


class UnknownKey(KeyProviderError):
    """No KEK (or no such version) for the tenant."""

    code = "unknown-key"
    status = 404


class UnwrapFailed(KeyProviderError):
    """The wrapped key is forged, truncated or wrapped by another tenant's KEK."""

    code = "unwrap-failed"
    status = 422


@dataclass(frozen=True)
class WrappedKey:
    tenant_id: str
    key_id: str  # the KEK's name
    key_version: str  # the KEK version that wrapped it
    algorithm: str  # e.g. "A256KW" locally, "RSA-OAEP-256" on Key Vault
    ciphertext: bytes


class KeyProvider(Protocol):
    def ensure_tenant_key(self, tenant_id: str) -> str:
        """Create the tenant's KEK if missing; return its current version."""
        ...

    def wrap(self, tenant_id: str, data_key: bytes) -> WrappedKey: ...

    def unwrap(self, wrapped: WrappedKey) -> bytes: ...

    def rotate(self, tenant_id: str) -> str:
        """Make a new current version; older versions still unwrap. Returns it."""
        ...

    def current_version(self, tenant_id: str) -> str: ...
