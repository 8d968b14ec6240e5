"""The templates checked against the code: settings, containers, trigger bindings, roles.

The code is the source of truth: ``shared.settings.SETTINGS`` (what the app
reads), ``shared.store.layout`` (containers and their partition key) and
``functions.bindings`` (what the triggers resolve). When someone adds a
setting, a container or a trigger, these tests fail until main.bicep follows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from shared.settings import CHOICES, SETTINGS
from shared.store.layout import (
    CONTAINERS,
    NEVER_EXPIRE,
    PARTITION_KEY_PATH,
    UNINDEXED_PATHS,
    container_default_ttl,
    indexing_policy,
)
from tests.unit.bicep.bicep_tree import Expr, evaluate, path, properties
from tests.unit.bicep.conftest import module

# Read only by the embedded default (SQLite files, local keyring); meaningless on
# Azure, so the stack does not set them. Anything else the code reads must be set.
# ACCRUE_DUAL_CONTROL: its default (on) is the only value allowed with the Azure store.
EMBEDDED_ONLY = {"ACCRUE_DATA_DIR", "ACCRUE_SQLITE_SYNCHRONOUS", "ACCRUE_DUAL_CONTROL"}


@pytest.fixture(scope="module")
def app_settings(main) -> dict:
    return main.var("appSettings")


def module_params(main, symbol: str) -> dict:
    """The evaluated params main.bicep passes to one module."""
    return evaluate(path(main.modules[symbol].body, "params"), main)


def azure_choices() -> dict[str, str]:
    """ACCRUE_<PORT> -> the Azure adapter, derived from the settings' required_for."""
    choices: dict[str, str] = {}
    for setting in SETTINGS:
        if setting.required_for:
            port, adapter = setting.required_for.split("=")
            choices[f"ACCRUE_{port.upper()}"] = adapter
    return choices


# ---- app settings ---------------------------------------------------------------

def test_every_setting_the_code_reads_is_set_by_main_bicep(app_settings) -> None:
    missing = [s.name for s in SETTINGS if s.name not in EMBEDDED_ONLY and s.name not in app_settings]
    assert not missing, f"settings the code reads but main.bicep's appSettings does not set: {missing}"


def test_embedded_only_exemptions_are_real_settings_not_needed_on_azure() -> None:
    by_name = {s.name: s for s in SETTINGS}
    for name in EMBEDDED_ONLY:
        assert name in by_name, f"{name} is no longer a setting: drop it from EMBEDDED_ONLY"
        assert by_name[name].required_for is None, f"{name} is required by an adapter: set it in Bicep"


def test_adapter_choices_select_the_azure_adapters(app_settings) -> None:
    expected = azure_choices()
    assert set(expected) == {"ACCRUE_STORE", "ACCRUE_BUS", "ACCRUE_KEYS", "ACCRUE_BLOBS"}
    for name, adapter in expected.items():
        assert adapter in CHOICES[name]
        assert app_settings.get(name) == adapter, f"{name} must be {adapter!r}, main.bicep sets {app_settings.get(name)!r}"


def test_settings_required_by_an_azure_adapter_have_a_value(app_settings) -> None:
    for setting in SETTINGS:
        if setting.required_for:
            value = app_settings[setting.name]
            assert value not in (None, ""), f"{setting.name} is required for {setting.required_for} but empty"


def test_region_label_comes_from_the_region_parameter(app_settings, main) -> None:
    assert app_settings["ACCRUE_REGION"] == Expr("region")
    allowed = main.param_decorators["region"]["allowed"][0]
    assert set(allowed) == {"us", "eu", "apac"}


def test_flex_consumption_python_runtime_and_no_worker_runtime_setting(main, app_settings) -> None:
    app = module("functionapp")
    plan = app.resources_of_type("Microsoft.Web/serverfarms")[0]
    assert evaluate(path(plan.body, "sku"), app) == {"name": "FC1", "tier": "FlexConsumption"}
    site = app.resources_of_type("Microsoft.Web/sites")[0]
    assert evaluate(path(site.body, "kind"), app) == "functionapp,linux"
    runtime = evaluate(path(site.body, "properties", "functionAppConfig", "runtime"), app)
    assert runtime["name"] == "python"
    assert evaluate(app.params["pythonVersion"], app) == "3.11"
    # Flex Consumption rejects these settings: the runtime above replaces them.
    final_settings = path(app.resources_of_type("Microsoft.Web/sites/config")[0].body, "properties").text.decode()
    for forbidden in ("FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION",
                      "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "AzureWebJobsStorage"):
        assert forbidden not in app_settings
        assert not re.search(rf"\b{forbidden}\s*:", final_settings), forbidden


def test_function_app_is_https_only_tls12_no_ftp_with_system_identity() -> None:
    app = module("functionapp")
    site = app.resources_of_type("Microsoft.Web/sites")[0]
    # Its own identity (the data path) and the key manager's, nothing else.
    assert evaluate(path(site.body, "identity", "type"), app) == "SystemAssigned, UserAssigned"
    [assigned] = properties(path(site.body, "identity", "userAssignedIdentities"))
    assert "${keyManagerIdentityId}" in assigned, assigned
    assert evaluate(path(site.body, "properties", "httpsOnly"), app) is True
    config = evaluate(path(site.body, "properties", "siteConfig"), app)
    assert config["minTlsVersion"] == "1.2" and config["ftpsState"] == "Disabled"
    deployment = evaluate(path(site.body, "properties", "functionAppConfig", "deployment", "storage"), app)
    assert deployment["authentication"] == {"type": "SystemAssignedIdentity"}
    policies = app.resources_of_type("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {evaluate(path(p.body, "name"), app): evaluate(path(p.body, "properties", "allow"), app)
            for p in policies} == {"ftp": False, "scm": False}


def test_host_storage_is_identity_based(app_settings, main) -> None:
    assert app_settings["AzureWebJobsStorage__accountName"] == Expr("hostStorage.outputs.accountName")
    assert main.modules["hostStorage"].target == "modules/hoststorage.bicep"


def test_application_insights_is_wired_with_entra_authentication() -> None:
    app = module("functionapp")
    config = app.resources_of_type("Microsoft.Web/sites/config")[0]
    text = path(config.body, "properties").text.decode()
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString" in text
    assert "APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD'" in text
    monitoring = module("monitoring")
    component = monitoring.resources_of_type("Microsoft.Insights/components")[0]
    assert evaluate(path(component.body, "properties", "DisableLocalAuth"), monitoring) is True


# ---- Cosmos DB containers -------------------------------------------------------

@pytest.fixture(scope="module")
def containers(main) -> dict[str, dict]:
    declared = main.var("cosmosContainers")
    by_name = {c["name"]: c for c in declared}
    assert len(by_name) == len(declared), "a container is declared twice"
    return by_name


@pytest.fixture(scope="module")
def bindings():
    """The trigger binding facts; settings defaults if functions/bindings.py is gone."""
    try:
        from functions import bindings as module_
    except ImportError:
        return _FallbackBindings()
    return module_


@dataclass
class _FallbackBindings:
    """What the triggers need, read from shared/settings.py's defaults (no skip: still checked)."""

    EVENTHUB_NAME_SETTING: str = "EVENTHUB_NAME"
    EVENTHUB_CONSUMER_GROUP_SETTING: str = "EVENTHUB_CONSUMER_GROUP"
    COSMOS_DATABASE_SETTING: str = "COSMOS_DATABASE"
    LEASE_CONTAINER: str = "leases"
    LEASE_CONTAINER_PARTITION_KEY: str = "/id"
    LEDGER_CONTAINER: str = "ledger"

    @property
    def HOST_SETTINGS(self) -> tuple[str, ...]:
        return tuple(s.name for s in SETTINGS if s.host_binding) + ("EVENTHUB_NAME", "COSMOS_DATABASE")

    BINDING_FACTS: tuple = ()


def test_every_container_of_the_layout_is_declared_with_its_partition_key(containers, bindings) -> None:
    expected = {spec.name for spec in CONTAINERS}
    declared = set(containers) - {bindings.LEASE_CONTAINER}
    assert declared == expected, (f"Cosmos containers drifted from shared/store/layout.py: "
                                  f"missing {sorted(expected - declared)}, extra {sorted(declared - expected)}")
    for spec in CONTAINERS:
        assert containers[spec.name]["partitionKeyPath"] == PARTITION_KEY_PATH, spec.name


def test_the_lease_container_exists_partitioned_on_id(containers, bindings) -> None:
    lease = containers.get(bindings.LEASE_CONTAINER)
    assert lease is not None, f"lease container {bindings.LEASE_CONTAINER!r} is not declared"
    assert lease["partitionKeyPath"] == bindings.LEASE_CONTAINER_PARTITION_KEY == "/id"
    assert bindings.LEDGER_CONTAINER in containers


def test_the_cosmos_module_uses_each_containers_partition_key_and_indexing(main) -> None:
    cosmos = module("cosmos")
    container = cosmos.resources_of_type("Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers")[0]
    assert container.loop
    resource = path(container.body, "properties", "resource")
    assert path(resource, "partitionKey", "paths").text.decode().split() == ["[", "container.partitionKeyPath", "]"]
    indexing = path(resource, "indexingPolicy")
    included = path(indexing, "includedPaths").text.decode()
    assert "'/*'" in included and "container.includedPaths" in included
    assert "container.excludedPaths" in path(indexing, "excludedPaths").text.decode()
    assert module_params(main, "cosmos")["containers"] == main.var("cosmosContainers")


def test_every_containers_default_ttl_is_the_layouts(containers) -> None:
    for spec in CONTAINERS:
        assert "defaultTtl" in containers[spec.name], f"{spec.name}: declare defaultTtl (null for never)"
        assert containers[spec.name]["defaultTtl"] == container_default_ttl(spec.name), spec.name


def test_the_shared_throughput_database_holds_at_most_25_containers(containers) -> None:
    # Cosmos DB limit: a database with shared (autoscale) throughput holds at most 25
    # containers. Past that, a new container needs its own throughput (or a second database).
    assert len(containers) <= 25, f"{len(containers)} containers in the shared-throughput database"


def test_the_ledger_and_the_audit_log_have_ttl_off(containers, bindings) -> None:
    # Not -1 either: with TTL off, not even a stray ttl property on an item can expire it.
    for name in NEVER_EXPIRE:
        assert containers[name]["defaultTtl"] is None, name
    assert containers["ledger"]["defaultTtl"] is None and containers["audit"]["defaultTtl"] is None
    assert containers[bindings.LEASE_CONTAINER].get("defaultTtl") is None


def test_the_system_container_expires_only_items_that_carry_a_ttl(containers) -> None:
    # Work items and cursors live there (and never carry a ttl): on, with no default.
    assert containers["system"]["defaultTtl"] == -1


def test_the_cosmos_module_sets_each_containers_default_ttl() -> None:
    cosmos = module("cosmos")
    container = cosmos.resources_of_type("Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers")[0]
    assert path(container.body, "properties", "resource", "defaultTtl").text == b"container.defaultTtl"


def test_every_containers_unindexed_paths_are_the_layouts(containers) -> None:
    for spec in CONTAINERS:
        declared = [p["path"] for p in containers[spec.name]["excludedPaths"]]
        assert declared == list(UNINDEXED_PATHS.get(spec.name, ())), spec.name
        # What the adapter creates (tests, local runs) is what Bicep deploys.
        policy = indexing_policy(spec.name)
        assert policy["includedPaths"] == [{"path": "/*"}] + containers[spec.name]["includedPaths"]
        assert policy["excludedPaths"] == [{"path": '/"_etag"/?'}] + containers[spec.name]["excludedPaths"]


def test_encrypted_personal_fields_are_not_indexed(containers) -> None:
    from shared.privacy.personal import SEALED_FIELD

    assert {"path": f"/{SEALED_FIELD}/*"} in containers["customers"]["excludedPaths"]
    assert {"path": "/attributes/*"} in containers["ledger"]["excludedPaths"]


def test_no_excluded_path_hides_a_field_the_code_queries(containers) -> None:
    for spec in CONTAINERS:
        queried = {"pk", "id", *spec.indexed}
        for excluded in containers[spec.name]["excludedPaths"]:
            top = excluded["path"].strip("/").split("/")[0].strip('"')
            assert top not in queried, f"{spec.name}: {excluded['path']} excludes {top}, which a query uses"


def test_cosmos_account_is_keyless_continuously_backed_up(main) -> None:
    cosmos = module("cosmos")
    account = evaluate(path(cosmos.resources_of_type("Microsoft.DocumentDB/databaseAccounts")[0].body,
                            "properties"), cosmos)
    assert account["disableLocalAuth"] is True
    assert account["backupPolicy"]["type"] == "Continuous"
    assert account["enableMultipleWriteLocations"] is False


# ---- trigger bindings -------------------------------------------------------------

def test_every_setting_the_host_resolves_is_set(app_settings, bindings) -> None:
    missing = [name for name in bindings.HOST_SETTINGS if name not in app_settings]
    assert not missing, f"binding settings missing from main.bicep: {missing}"


def test_the_trigger_event_hub_and_consumer_group_exist(main, app_settings, bindings) -> None:
    hub = app_settings[bindings.EVENTHUB_NAME_SETTING]
    group = app_settings[bindings.EVENTHUB_CONSUMER_GROUP_SETTING]
    passed = module_params(main, "eventHubs")
    assert (passed["hubName"], passed["consumerGroupName"]) == (hub, group)
    # One name everywhere: the stack uses the names the code defaults to locally.
    defaults = {s.name: s.default for s in SETTINGS}
    assert (hub, group) == (defaults[bindings.EVENTHUB_NAME_SETTING], defaults[bindings.EVENTHUB_CONSUMER_GROUP_SETTING])
    eventhubs = module("eventhubs")
    [declared_hub] = eventhubs.resources_of_type("Microsoft.EventHub/namespaces/eventhubs")
    [declared_group] = eventhubs.resources_of_type("Microsoft.EventHub/namespaces/eventhubs/consumergroups")
    assert path(declared_hub.body, "name").text == b"hubName"
    assert path(declared_group.body, "name").text == b"consumerGroupName"
    assert path(declared_group.body, "parent").text == b"hub"


def test_the_trigger_database_exists(main, app_settings, bindings) -> None:
    database = app_settings[bindings.COSMOS_DATABASE_SETTING]
    assert module_params(main, "cosmos")["databaseName"] == database
    assert database == {s.name: s.default for s in SETTINGS}[bindings.COSMOS_DATABASE_SETTING]


def test_trigger_connections_are_identity_based(app_settings, bindings) -> None:
    for fact in bindings.BINDING_FACTS:
        for name in fact.connection_settings:
            assert name.startswith(fact.connection + "__"), name
            assert name in app_settings, f"{fact.function}: connection setting {name} is not set"


# ---- role assignments -------------------------------------------------------------

ROLE_IDS = {
    "Azure Event Hubs Data Sender": "2b629674-e913-4c01-ae53-ef4638d8f975",
    "Azure Event Hubs Data Receiver": "a638d3c7-ab3a-418d-83e6-5f17a39d4fde",
    "Key Vault Crypto User": "12338af0-0e69-4776-bea7-57ae8d297424",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    # Gets a user-delegation key (no data access): the imports' upload SAS (shared/blobs/azure.py).
    "Storage Blob Delegator": "db58b8e5-c6ad-4a2a-8342-4190687cbf4a",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "Web PubSub Service Owner": "12cf5a90-567b-43ae-8102-96cf46c7d9b4",
}
COSMOS_DATA_CONTRIBUTOR = "00000000-0000-0000-0000-000000000002"
BROAD_ROLES = {
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24f",
    "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c4a72d9d",
    "Role Based Access Control Administrator": "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
    "Key Vault Administrator": "00482a5a-887f-4fb3-b363-3b7fe8e74483",
    "Storage Account Contributor": "17d1049b-9a84-46fb-8f53-869881c3d3ab",
}

# What each Azure adapter of the code calls, as (role, type of the scope resource,
# the module parameter naming that resource). A new adapter without an entry fails.
REQUIRED_ROLES = {
    "store=cosmos": [],  # data-plane sqlRoleAssignment, checked separately
    "bus=eventhubs": [("Azure Event Hubs Data Sender", "Microsoft.EventHub/namespaces/eventhubs", "eventHubName"),
                      ("Azure Event Hubs Data Receiver", "Microsoft.EventHub/namespaces/eventhubs", "eventHubName")],
    "keys=keyvault": [("Key Vault Crypto User", "Microsoft.KeyVault/vaults", "keyVaultName")],
    "blobs=azure": [("Storage Blob Data Contributor", "Microsoft.Storage/storageAccounts/blobServices/containers",
                     "exportsContainerName"),
                    ("Storage Blob Data Contributor", "Microsoft.Storage/storageAccounts/blobServices/containers",
                     "auditContainerName"),
                    ("Storage Blob Data Contributor", "Microsoft.Storage/storageAccounts/blobServices/containers",
                     "importsContainerName"),
                    ("Storage Blob Delegator", "Microsoft.Storage/storageAccounts", "dataStorageName")],
}
HOST_ROLES = [("Storage Blob Data Owner", "Microsoft.Storage/storageAccounts", "hostStorageName"),
              ("Storage Queue Data Contributor", "Microsoft.Storage/storageAccounts", "hostStorageName"),
              ("Storage Table Data Contributor", "Microsoft.Storage/storageAccounts", "hostStorageName"),
              ("Monitoring Metrics Publisher", "Microsoft.Insights/components", "appInsightsName"),
              # Live updates (shared/graphql/webpubsub.py): token issue and send to a group.
              ("Web PubSub Service Owner", "Microsoft.SignalRService/webPubSub", "webPubSubName")]


@dataclass(frozen=True)
class Grant:
    role_id: str
    scope_type: str
    scope_name_param: str
    principal: str


def granted(roles) -> set[Grant]:
    """Azure RBAC assignments of roles.bicep: role, scope resource type, the param naming it."""
    grants: set[Grant] = set()
    for assignment in roles.resources_of_type("Microsoft.Authorization/roleAssignments"):
        definition = path(assignment.body, "properties", "roleDefinitionId")
        role_refs = [r for r in roles.var("roleIds") if f"roleIds.{r}" in definition.text.decode()]
        assert len(role_refs) == 1, f"roles.bicep:{assignment.line}: role must come from roleIds"
        scope = roles.resources[path(assignment.body, "scope").text.decode()]
        scope_name = path(scope.body, "name").text.decode()
        principal = path(assignment.body, "properties", "principalId").text.decode()
        assert evaluate(path(assignment.body, "properties", "principalType"), roles) == "ServicePrincipal"
        grants.add(Grant(roles.var("roleIds")[role_refs[0]], scope.target.split("@")[0], scope_name, principal))
    return grants


def test_every_azure_service_the_code_calls_has_a_role_for_the_app() -> None:
    roles = module("roles")
    grants = granted(roles)
    adapters = {s.required_for for s in SETTINGS if s.required_for}
    unknown = adapters - set(REQUIRED_ROLES)
    assert not unknown, f"new Azure adapter(s) {unknown}: add its role assignment and an entry in REQUIRED_ROLES"
    needed = [need for adapter in adapters for need in REQUIRED_ROLES[adapter]] + HOST_ROLES
    for role, scope_type, scope_param in needed:
        assert Grant(ROLE_IDS[role], scope_type, scope_param, "principalId") in grants, \
            f"the app's identity lacks {role} on {scope_type} ({scope_param})"


def test_trigger_data_roles_are_granted(bindings) -> None:
    roles = module("roles")
    role_ids = {g.role_id for g in granted(roles)}
    for fact in bindings.BINDING_FACTS:
        if fact.data_role in ROLE_IDS:
            assert ROLE_IDS[fact.data_role] in role_ids, f"{fact.function} needs {fact.data_role}"


def test_cosmos_data_contributor_is_assigned_on_the_database() -> None:
    roles = module("roles")
    [assignment] = roles.resources_of_type("Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments")
    props = properties(path(assignment.body, "properties"))
    assert evaluate(roles.variables["cosmosDataContributorId"], roles) == COSMOS_DATA_CONTRIBUTOR
    assert "sqlRoleDefinitions/${cosmosDataContributorId}" in props["roleDefinitionId"].text.decode()
    assert props["principalId"].text == b"principalId"
    assert props["scope"].text.decode().endswith("/dbs/${cosmosDatabaseName}'")


def test_no_role_beyond_the_data_plane_list(main) -> None:
    roles = module("roles")
    allowed = set(ROLE_IDS.values())
    assert {g.role_id for g in granted(roles)} <= allowed
    assert set(roles.var("roleIds").values()) <= allowed
    from tests.unit.bicep.conftest import bicep_files
    for path_ in bicep_files():
        text = path_.read_text().lower()
        for name, role_id in BROAD_ROLES.items():
            assert role_id not in text, f"{path_.name} assigns {name}"


def test_roles_go_to_the_function_apps_own_identity(main) -> None:
    passed = path(main.modules["roles"].body, "params", "principalId")
    assert passed.text == b"functionApp.outputs.principalId"
    app = module("functionapp")
    assert app.outputs["principalId"].text == b"site.identity.principalId"


# ---- the key manager (issue 16): creates and rotates keys; the data path cannot ----------

KEY_VAULT_CRYPTO_OFFICER = "14b46e9e-c2b7-41b4-b07b-48a6ebf60603"


def test_the_key_manager_holds_crypto_officer_on_the_stacks_vault_only() -> None:
    manager = module("keymanager")
    assert manager.var("roleIds") == {"keyVaultCryptoOfficer": KEY_VAULT_CRYPTO_OFFICER}
    [assignment] = manager.resources_of_type("Microsoft.Authorization/roleAssignments")
    assert "roleIds.keyVaultCryptoOfficer" in path(assignment.body, "properties", "roleDefinitionId").text.decode()
    scope = manager.resources[path(assignment.body, "scope").text.decode()]
    assert scope.target.split("@")[0] == "Microsoft.KeyVault/vaults" and scope.existing
    assert path(scope.body, "name").text == b"keyVaultName"
    assert path(assignment.body, "properties", "principalId").text == b"identity.properties.principalId"
    assert evaluate(path(assignment.body, "properties", "principalType"), manager) == "ServicePrincipal"
    [identity] = manager.resources_of_type("Microsoft.ManagedIdentity/userAssignedIdentities")
    assert manager.outputs["clientId"].text == b"identity.properties.clientId"
    assert manager.outputs["id"].text == b"identity.id"


def test_the_apps_own_identity_wraps_and_unwraps_but_cannot_create_keys() -> None:
    role_ids = {g.role_id for g in granted(module("roles"))}
    assert ROLE_IDS["Key Vault Crypto User"] in role_ids and KEY_VAULT_CRYPTO_OFFICER not in role_ids
    assert KEY_VAULT_CRYPTO_OFFICER not in module("roles").path.read_text()


def test_the_code_is_told_the_key_managers_client_id_and_the_vault_tier(main, app_settings) -> None:
    assert app_settings["KEYVAULT_MANAGEMENT_CLIENT_ID"] == Expr("keyManager.outputs.clientId")
    assert app_settings["KEYVAULT_SKU"] == Expr("keyVaultSku")
    assert sorted(main.param_decorators["keyVaultSku"]["allowed"][0]) == sorted(CHOICES["KEYVAULT_SKU"])
    assert module_params(main, "keyVault")["skuName"] == Expr("keyVaultSku")
    assert module_params(main, "keyManager")["keyVaultName"] == Expr("keyVault.outputs.vaultName")
    assert module_params(main, "functionApp")["keyManagerIdentityId"] == Expr("keyManager.outputs.id")


def test_a_stack_recreated_within_the_soft_delete_retention_can_recover_its_vault(main) -> None:
    vault = module("keyvault")
    [declared] = vault.resources_of_type("Microsoft.KeyVault/vaults")
    mode = path(declared.body, "properties", "createMode").text.decode()
    assert mode == "recover ? 'recover' : 'default'"
    assert module_params(main, "keyVault")["recover"] == Expr("keyVaultRecover")
    assert evaluate(main.params["keyVaultRecover"], main) is False  # an ordinary deployment creates
