"""Sealing of per-experiment secrets before they are stored.

``SecretSealer`` is the seam: the lifecycle service seals the HMAC key of an
A/B experiment before writing it into the experiment document and unseals it
when the provider loads the experiment. ``PlainSealer`` stores the bytes
base64-encoded and marked ``plain:``; an implementation over the key-provider
port (the tenant's KEK wrapping the secret) drops in without changing the
service, and documents sealed by it are recognised by their own prefix.
"""

from __future__ import annotations

import base64
from typing import Protocol


class SecretSealer(Protocol):
    def seal(self, tenant_id: str, secret: bytes) -> str: ...

    def unseal(self, tenant_id: str, sealed: str) -> bytes: ...


class PlainSealer:
    """Encoding only, no encryption: for the embedded default until a KEK-backed sealer is wired in."""

    PREFIX = "plain:"

    def seal(self, tenant_id: str, secret: bytes) -> str:
        return self.PREFIX + base64.b64encode(secret).decode("ascii")

    def unseal(self, tenant_id: str, sealed: str) -> bytes:
        if not sealed.startswith(self.PREFIX):
            raise ValueError("secret was sealed by another sealer")
        return base64.b64decode(sealed[len(self.PREFIX):])
