"""The export keys in the templates (issue 18): a vault of their own, each warehouse identity
on its tenant's export key only (Crypto Service Encryption User scoped to the key), key names
as the code names them, the app pointed at the vault, and a private endpoint for it."""

from __future__ import annotations

from shared.keys.keyvault import key_name
from tests.unit.bicep.bicep_tree import evaluate, path, properties
from tests.unit.bicep.conftest import module

SERVICE_ENCRYPTION_USER = "e147488a-f6f5-4113-8e2d-b22465e65bf6"


def test_a_warehouse_is_granted_unwrap_on_its_tenants_export_key_only() -> None:
    template = module("exportkeys")
    assignments = template.resources_of_type("Microsoft.Authorization/roleAssignments")
    [grant] = [a for a in assignments if a.symbol == "warehouseUnwrap"]
    assert grant.loop
    assert path(grant.body, "scope").text.decode() == "exportKeys[i]"  # the key, not the vault
    assert "roleIds.keyVaultCryptoServiceEncryptionUser" in path(grant.body, "properties").text.decode()
    assert evaluate(template.variables["roleIds"], template)["keyVaultCryptoServiceEncryptionUser"] == \
        SERVICE_ENCRYPTION_USER
    # The other grants are the app (wrap) and the key manager (create, rotate), on this vault.
    others = {a.symbol for a in assignments} - {grant.symbol}
    assert others == {"appCrypto", "keyOfficer"}


def test_export_key_names_match_the_code() -> None:
    template = module("exportkeys")
    [keys] = template.resources_of_type("Microsoft.KeyVault/vaults/keys")
    name = path(keys.body, "name").text.decode()
    assert "replace(replace(replace(access.tenantId, '-', '-2d'), '.', '-2e'), '_', '-5f')" in name
    tenant = "acme.eu_1-x"
    escaped = tenant.replace("-", "-2d").replace(".", "-2e").replace("_", "-5f")
    assert key_name(tenant, "export") == f"export-{escaped}"
    ops = properties(path(keys.body, "properties"))["keyOps"].text.decode()
    assert "wrapKey" in ops and "unwrapKey" in ops and "sign" not in ops


def test_the_app_uses_the_export_vault_and_reaches_it_privately(main) -> None:
    settings = main.var("appSettings")
    assert "names.exportVault" in str(settings["EXPORT_KEYVAULT_URI"])
    targets = evaluate(main.variables["privateEndpointTargets"], main)
    assert any(t["name"] == "exportkeys" and t["groupId"] == "vault" for t in targets)
    assert main.param_types["warehouseAccess"] == "array" and main.param_types["warehouseIpRules"] == "array"
    assert "warehouseAccess" in path(main.modules["exportKeys"].body, "params").text.decode()
