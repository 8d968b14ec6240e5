"""Experiment secrets sealed under the tenant's KEK (``KeyProviderSealer``): they open
for their tenant only, after a KEK rotation too, and rest encrypted, not encoded."""

from __future__ import annotations

import base64
import secrets

import pytest

from shared.keys.local import LocalKeyring
from shared.keys.port import KeyProviderError
from shared.rules.sealing import KeyProviderSealer, PlainSealer


@pytest.fixture
def sealer(tmp_path) -> KeyProviderSealer:
    return KeyProviderSealer(LocalKeyring.in_folder(tmp_path))


def test_a_sealed_secret_opens_for_its_tenant_and_does_not_show_the_secret(sealer) -> None:
    secret = secrets.token_bytes(32)
    sealed = sealer.seal("acme", secret)
    assert sealed.startswith("kek1:")
    assert base64.b64encode(secret).decode() not in sealed and secret.hex() not in sealed
    assert sealer.unseal("acme", sealed) == secret
    assert sealer.seal("acme", secret) != sealed                  # a fresh data key and nonce each time


def test_a_secret_copied_to_another_tenant_does_not_open(sealer) -> None:
    sealed = sealer.seal("acme", secrets.token_bytes(32))
    sealer.seal("globex", b"x" * 32)                              # globex has a KEK of its own
    with pytest.raises((ValueError, KeyProviderError)):
        sealer.unseal("globex", sealed)


def test_rotation_keeps_old_seals_opening_and_plain_seals_are_refused(tmp_path) -> None:
    ring = LocalKeyring.in_folder(tmp_path)
    sealer = KeyProviderSealer(ring)
    secret = secrets.token_bytes(32)
    sealed = sealer.seal("acme", secret)
    ring.rotate("acme")
    assert sealer.unseal("acme", sealed) == secret
    with pytest.raises(ValueError):
        sealer.unseal("acme", PlainSealer().seal("acme", secret))
