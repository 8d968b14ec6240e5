"""Secure defaults of the templates, and no key or connection string where an identity serves.

Every service is reached with the Function App's managed identity, so nothing in
the templates should read a key (listKeys, primaryKey, ...) or build a connection
string. The one accepted exception is Application Insights' connection string:
an ingestion endpoint plus instrumentation key, not a credential (the component
has local auth off, so sending telemetry also needs the app's Entra token).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.unit.bicep.bicep_tree import evaluate, load, parse, path
from tests.unit.bicep.conftest import BICEP, bicep_files, module

SECRET_PATTERNS = re.compile(
    r"listKeys\(|listConnectionStrings\(|listAccountSas\(|listServiceSas\(|AccountKey=|SharedAccessKey"
    r"|primaryKey|secondaryKey|primaryMasterKey|primaryReadonlyMasterKey|connectionString|InstrumentationKey",
    re.IGNORECASE,
)
# file name -> the exact source lines allowed to match SECRET_PATTERNS
ALLOWED = {
    "functionapp.bicep": {"APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString"},
}


def code_lines(path_: Path) -> list[tuple[int, str]]:
    """The file's lines with comments blanked out (comments may name what they avoid)."""
    source = bytearray(path_.read_bytes())

    def blank(node) -> None:
        if node.type == "comment":
            for i in range(node.start_byte, node.end_byte):
                if source[i] not in b"\r\n":
                    source[i] = 0x20
        for child in node.children:
            blank(child)

    blank(parse(path_).root_node)
    return list(enumerate(source.decode().splitlines(), start=1))


def secret_hits(path_: Path) -> list[str]:
    allowed = ALLOWED.get(path_.name, set())
    return [f"{path_}:{number}: {line.strip()}" for number, line in code_lines(path_)
            if SECRET_PATTERNS.search(line) and line.strip() not in allowed]


@pytest.mark.parametrize("path_", bicep_files(), ids=lambda p: str(p.relative_to(BICEP)))
def test_no_key_or_connection_string_in_templates(path_: Path) -> None:
    hits = secret_hits(path_)
    assert not hits, "keys or connection strings where a managed identity can serve:\n" + "\n".join(hits)


def test_the_secret_scan_catches_a_listkeys_output(tmp_path: Path) -> None:
    leaky = tmp_path / "leaky.bicep"
    leaky.write_text("// listKeys( in a comment is fine\nresource sa 'Microsoft.Storage/storageAccounts@2023-05-01'"
                     " existing = {\n  name: 'x'\n}\n"
                     "output key string = sa.listKeys().keys[0].value\n"
                     "var cs = 'DefaultEndpointsProtocol=https;AccountName=x;AccountKey=${sa.listKeys().keys[0].value}'\n")
    hits = secret_hits(leaky)
    assert [h.split(":")[1] for h in hits] == ["5", "6"]


@pytest.mark.parametrize("path_", bicep_files(), ids=lambda p: str(p.relative_to(BICEP)))
def test_outputs_carry_no_secrets(path_: Path) -> None:
    template = load(path_)
    for name, value in template.outputs.items():
        assert not re.search(r"connection.?string|account.?key|primary.?key|sas|password|secret", name, re.I), name
        assert not SECRET_PATTERNS.search(value.text.decode()), f"{path_.name}: output {name} = {value.text!r}"


# ---- secure defaults, per service ----------------------------------------------

def props(name: str, resource_type: str) -> dict:
    template = module(name)
    [resource] = template.resources_of_type(resource_type)
    return evaluate(path(resource.body, "properties"), template)


def test_storage_accounts_refuse_shared_keys_and_public_blobs() -> None:
    for name in ("datastorage", "hoststorage"):
        account = props(name, "Microsoft.Storage/storageAccounts")
        assert account["allowSharedKeyAccess"] is False, name
        assert account["allowBlobPublicAccess"] is False, name
        assert account["minimumTlsVersion"] == "TLS1_2", name
        assert account["supportsHttpsTrafficOnly"] is True, name


def test_exports_and_audit_storage_versions_blobs_and_locks_the_audit_archive() -> None:
    storage = module("datastorage")
    assert props("datastorage", "Microsoft.Storage/storageAccounts/blobServices")["isVersioningEnabled"] is True
    [policy] = storage.resources_of_type(
        "Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies")
    assert path(policy.body, "parent").text == b"auditContainer"
    days = path(policy.body, "properties", "immutabilityPeriodSinceCreationInDays").text.decode()
    assert evaluate(storage.params[days], storage) == 2555 == 7 * 365
    assert storage.param_decorators[days]["minValue"] == [2555], "the retention may not be lowered below 7 years"


def test_lifecycle_rules_touch_exports_and_imports_only() -> None:
    storage = module("datastorage")
    rules = props("datastorage", "Microsoft.Storage/storageAccounts/managementPolicies")["policy"]["rules"]
    assert rules
    for rule in rules:
        prefixes = rule["definition"]["filters"]["prefixMatch"]
        assert [p.text for p in prefixes] in (["'${exportsContainerName}/'"], ["'${importsContainerName}/'"]), \
            rule["name"]
        assert "delete" in rule["definition"]["actions"]["baseBlob"]
    assert "auditContainerName" not in path(storage.resources_of_type(
        "Microsoft.Storage/storageAccounts/managementPolicies")[0].body, "properties").text.decode()


def test_event_hubs_namespace_has_no_sas_keys_and_the_hub_enough_partitions(parameters) -> None:
    namespace = props("eventhubs", "Microsoft.EventHub/namespaces")
    assert namespace["disableLocalAuth"] is True
    assert namespace["minimumTlsVersion"] == "1.2"
    for region, values in parameters.items():
        assert values["eventHubPartitionCount"] == 32, f"{region}: partitions cannot grow later on Standard"


def test_key_vault_uses_rbac_soft_delete_and_purge_protection() -> None:
    vault = props("keyvault", "Microsoft.KeyVault/vaults")
    assert vault["enableRbacAuthorization"] is True
    assert vault["enableSoftDelete"] is True
    assert vault["enablePurgeProtection"] is True
    assert "accessPolicies" not in vault


def test_private_networking_is_one_switch_and_on_by_default(main) -> None:
    assert evaluate(main.params["enablePrivateNetworking"], main) is True
    assert main.modules["network"].condition.text == b"(enablePrivateNetworking)"
    assert main.modules["privateEndpoints"].condition.text == b"(enablePrivateNetworking)"
    for name in ("cosmos", "eventHubs", "keyVault", "dataStorage", "hostStorage"):
        passed = path(main.modules[name].body, "params", "privateNetworking")
        assert passed.text == b"enablePrivateNetworking", name
    targets = {t["groupId"] for t in main.var("privateEndpointTargets")}
    assert targets == {"Sql", "namespace", "vault", "blob", "queue", "table"}
