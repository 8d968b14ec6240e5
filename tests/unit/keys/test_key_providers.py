"""The key-provider port over the local keyring and over Key Vault (the SDK's own
clients against a fake Key Vault transport doing real RSA-OAEP-256)."""

from __future__ import annotations

import dataclasses
import json
import os
import stat

import pytest

from shared.keys import UnknownKey, UnwrapFailed, build_key_provider, rewrap
from shared.keys.keyvault import KeyManagementUnavailable, KeyVaultForbidden, KeyVaultKeyProvider, key_name
from shared.keys.local import LocalKeyring
from shared.keys.port import KeyProviderError
from shared.settings import Settings
from tests.unit.keys.fake_keyvault import CRYPTO_OFFICER, CRYPTO_USER, VAULT, FakeCredential, FakeKeyVaultTransport


@pytest.fixture(params=["local", "keyvault"])
def provider(request, tmp_path):
    if request.param == "local":
        return LocalKeyring.in_folder(tmp_path)
    return KeyVaultKeyProvider(VAULT, FakeCredential(), management_credential=FakeCredential("manager"),
                               transport=FakeKeyVaultTransport())


def test_wrap_unwrap_and_rotation_keeps_old_versions_unwrapping(provider) -> None:
    v1 = provider.ensure_tenant_key("acme")
    assert provider.ensure_tenant_key("acme") == v1 == provider.current_version("acme")
    dek = os.urandom(32)
    wrapped = provider.wrap("acme", dek)
    assert wrapped.key_version == v1 and dek not in wrapped.ciphertext
    v2 = provider.rotate("acme")
    assert v2 != v1 and provider.current_version("acme") == v2
    assert provider.unwrap(wrapped) == dek
    moved = rewrap(provider, wrapped)
    assert moved.key_version == v2 and provider.unwrap(moved) == dek
    assert rewrap(provider, moved) is moved


def test_forged_truncated_and_other_tenant_keys_fail_precisely(provider) -> None:
    wrapped = provider.wrap("acme", os.urandom(32))
    flipped = bytes([wrapped.ciphertext[0] ^ 1]) + wrapped.ciphertext[1:]
    for bad in (dataclasses.replace(wrapped, ciphertext=flipped),
                dataclasses.replace(wrapped, ciphertext=wrapped.ciphertext[:-8]),
                dataclasses.replace(wrapped, tenant_id="globex"),
                dataclasses.replace(wrapped, algorithm="dir")):
        if bad.tenant_id == "globex":
            provider.ensure_tenant_key("globex")
        with pytest.raises(UnwrapFailed):
            provider.unwrap(bad)
    with pytest.raises(UnknownKey):
        provider.current_version("nobody")


def test_local_keyring_file_is_0600_documented_format_and_shared_between_instances(tmp_path) -> None:
    ring = LocalKeyring.in_folder(tmp_path)
    path = tmp_path / "keyring.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ring.ensure_tenant_key("acme")
    ring.rotate("acme")
    data = json.loads(path.read_text())
    assert data["format"] == "accrue-keyring" and data["version"] == 1
    assert data["tenants"]["acme"]["current"] == "v2" and set(data["tenants"]["acme"]["versions"]) == {"v1", "v2"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    other = LocalKeyring.in_folder(tmp_path)  # another process on the same folder
    wrapped = ring.wrap("acme", b"k" * 32)
    assert other.unwrap(wrapped) == b"k" * 32
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_local_keyring_refuses_a_world_readable_file(tmp_path) -> None:
    LocalKeyring.in_folder(tmp_path)
    os.chmod(tmp_path / "keyring.json", 0o644)
    with pytest.raises(KeyProviderError, match="chmod 600"):
        LocalKeyring.in_folder(tmp_path)


def test_unknown_key_version_is_unknown_key(provider) -> None:
    wrapped = provider.wrap("acme", os.urandom(32))
    with pytest.raises(UnknownKey):
        provider.unwrap(dataclasses.replace(wrapped, key_version="f" * 32))


def test_key_vault_names_are_one_per_tenant_id_and_service_errors_are_typed() -> None:
    assert key_name("a-b") != key_name("a.b") != key_name("a_b")
    assert key_name("acme.eu_1") == "tenant-acme-2eeu-5f1"
    transport = FakeKeyVaultTransport()
    provider = KeyVaultKeyProvider(VAULT, FakeCredential(), management_credential=FakeCredential("manager"),
                                   transport=transport, retry_total=0)
    provider.ensure_tenant_key("acme")
    assert ("POST", "/keys/tenant-acme/create") in transport.calls
    wrapped = provider.wrap("acme", os.urandom(32))
    transport.unavailable = True
    fresh = KeyVaultKeyProvider(VAULT, FakeCredential(), transport=transport, retry_total=0)
    with pytest.raises(KeyProviderError) as caught:
        fresh.unwrap(wrapped)
    assert caught.value.status == 503 and not isinstance(caught.value, UnwrapFailed)


def test_build_key_provider_follows_the_settings(tmp_path) -> None:
    local = build_key_provider(Settings.from_env({"ACCRUE_DATA_DIR": str(tmp_path)}))
    assert isinstance(local, LocalKeyring) and (tmp_path / "keyring.json").exists()
    vault = build_key_provider(Settings.from_env({"ACCRUE_KEYS": "keyvault", "KEYVAULT_URI": VAULT}))
    assert isinstance(vault, KeyVaultKeyProvider) and vault.vault_url == VAULT
    assert vault.key_type == "RSA-HSM" and vault._manager is None  # premium by default; no manager unless set
    managed = build_key_provider(Settings.from_env({"ACCRUE_KEYS": "keyvault", "KEYVAULT_URI": VAULT,
                                                    "KEYVAULT_SKU": "standard",
                                                    "KEYVAULT_MANAGEMENT_CLIENT_ID": "0000-manager"}))
    assert managed.key_type == "RSA" and managed._manager is not None


# ---- two identities: the data path wraps, only the key manager creates and rotates ----------

def _rbac_vault() -> FakeKeyVaultTransport:
    transport = FakeKeyVaultTransport()
    transport.grant("app", CRYPTO_USER)
    transport.grant("manager", CRYPTO_OFFICER)
    return transport


def test_keys_are_created_and_rotated_by_the_manager_and_used_by_the_data_path_identity() -> None:
    transport = _rbac_vault()
    provider = KeyVaultKeyProvider(VAULT, FakeCredential("app"), management_credential=FakeCredential("manager"),
                                   hardware_protected=True, transport=transport, retry_total=0)
    v1 = provider.ensure_tenant_key("acme")
    assert transport.created_types == {"tenant-acme": "RSA-HSM"}
    dek = os.urandom(32)
    wrapped = provider.wrap("acme", dek)
    assert provider.rotate("acme") != v1 and provider.unwrap(wrapped) == dek
    # The data-path identity alone (e.g. an export decrypt on an operator's machine) reads and unwraps.
    data_only = KeyVaultKeyProvider(VAULT, FakeCredential("app"), transport=transport, retry_total=0)
    assert data_only.unwrap(wrapped) == dek and data_only.ensure_tenant_key("acme") == provider.current_version("acme")


def test_without_the_manager_a_missing_key_is_refused_before_the_vault_is_asked_to_create() -> None:
    transport = _rbac_vault()
    data_only = KeyVaultKeyProvider(VAULT, FakeCredential("app"), transport=transport, retry_total=0)
    with pytest.raises(KeyManagementUnavailable, match="KEYVAULT_MANAGEMENT_CLIENT_ID"):
        data_only.ensure_tenant_key("acme")
    with pytest.raises(KeyManagementUnavailable):
        data_only.rotate("acme")
    assert not any(path.endswith("/create") for _, path in transport.calls)


def test_a_vault_refusal_is_a_typed_403_error_not_a_crash() -> None:
    transport = _rbac_vault()
    # The data-path identity passed as the manager: what the 403 of issue 16 looked like.
    wrong = KeyVaultKeyProvider(VAULT, FakeCredential("app"), management_credential=FakeCredential("app"),
                                transport=transport, retry_total=0)
    with pytest.raises(KeyVaultForbidden, match="403") as caught:
        wrong.ensure_tenant_key("acme")
    assert caught.value.status == 503 and "tenant-acme" not in transport.keys


def test_a_soft_deleted_key_of_the_same_name_is_recovered_not_a_failure() -> None:
    transport = _rbac_vault()
    provider = KeyVaultKeyProvider(VAULT, FakeCredential("app"), management_credential=FakeCredential("manager"),
                                   transport=transport, retry_total=0)
    provider.ensure_tenant_key("acme")
    dek = os.urandom(32)
    wrapped = provider.wrap("acme", dek)
    transport.soft_delete("tenant-acme")
    fresh = KeyVaultKeyProvider(VAULT, FakeCredential("app"), management_credential=FakeCredential("manager"),
                                transport=transport, retry_total=0)
    assert fresh.ensure_tenant_key("acme") == wrapped.key_version  # recovered, with its versions
    assert ("POST", "/deletedkeys/tenant-acme/recover") in transport.calls
    assert fresh.unwrap(wrapped) == dek
