"""Monitoring in every regional stack: diagnostic settings on every service, and the alerts.

main.bicep is the one template of every region, so what it deploys here is
deployed in US, EU and APAC alike. Checked against the code: every alert on a
platform metric names a metric of ``shared.telemetry.names``, and the Function
App sets the settings ``shared.telemetry.azure_monitor`` reads.
"""

from __future__ import annotations

import pytest

from shared.telemetry import azure_monitor, names
from tests.unit.bicep.bicep_tree import Expr, evaluate, load, path, properties, references
from tests.unit.bicep.conftest import MAIN, MODULES, module

DIAGNOSTIC = "Microsoft.Insights/diagnosticSettings"
# Top-level resource types that must send their logs and metrics to the workspace.
DIAGNOSABLE = {
    "Microsoft.DocumentDB/databaseAccounts",
    "Microsoft.EventHub/namespaces",
    "Microsoft.KeyVault/vaults",
    "Microsoft.Storage/storageAccounts",
    "Microsoft.Web/sites",
    "Microsoft.SignalRService/webPubSub",
}
# Top-level types that need none, and why; a new type must be put in one of the two lists.
EXEMPT = {
    "Microsoft.OperationalInsights/workspaces": "the destination itself",
    "Microsoft.Insights/components": "Application Insights writes into the workspace already",
    "Microsoft.Web/serverfarms": "a Flex Consumption plan has no logs; the app's setting covers its metrics",
    "Microsoft.Network/virtualNetworks": "no resource logs; flow logs are a network team's choice",
    "Microsoft.Network/privateEndpoints": "no resource logs",
    "Microsoft.Network/privateDnsZones": "no resource logs",
    "Microsoft.Authorization/roleAssignments": "not a service (the activity log records them)",
    "Microsoft.Insights/diagnosticSettings": "the settings themselves",
    "Microsoft.Insights/scheduledQueryRules": "alert rules",
    "Microsoft.Insights/metricAlerts": "alert rules",
    "Microsoft.ManagedIdentity/userAssignedIdentities": "no resource logs; the key manager's acts are in the vault's",
}
# Storage services whose resource logs are set per service (the account takes metrics only).
STORAGE_SERVICES = {"blobServices", "queueServices", "tableServices"}
# The alerts issue 15 asks of every region.
REQUIRED_ALERTS = {"projection-lag", "ingest-lag", "poison-items", "api-5xx-rate", "ingest-deferred-batches",
                   "eventhubs-unread", "cosmos-throttling", "keyvault-throttling", "failing-webhook-endpoints"}
# Platform metrics by namespace, as Azure Monitor names them (the alert fails to deploy otherwise).
PLATFORM_METRICS = {
    "Microsoft.DocumentDB/databaseAccounts": {"TotalRequests", "TotalRequestUnits", "NormalizedRUConsumption"},
    "Microsoft.KeyVault/vaults": {"ServiceApiResult", "ServiceApiHit", "ServiceApiLatency", "Availability"},
    "Microsoft.EventHub/namespaces": {"IncomingMessages", "OutgoingMessages", "IncomingRequests", "ThrottledRequests"},
}


def _top_level(target: str) -> str | None:
    """The resource type of a top-level resource (provider/type), None for a child resource."""
    kind = target.split("@")[0]
    return kind if kind.count("/") == 1 else None


def deployed() -> dict[str, list[tuple[str, str]]]:
    """Top-level resource type -> (module file, symbol) of every resource deployed in bicep/modules."""
    found: dict[str, list[tuple[str, str]]] = {}
    for path_ in sorted(MODULES.glob("*.bicep")):
        for resource in load(path_).resources.values():
            kind = resource.target.split("@")[0]
            if not resource.existing and kind.count("/") == 1:
                found.setdefault(kind, []).append((path_.stem, resource.symbol))
    return found


@pytest.fixture(scope="module")
def diagnostics():
    return module("diagnostics")


def settings_by_scope(template) -> dict[str, dict]:
    """Symbol of the scoped (existing) resource -> the evaluated diagnostic setting body."""
    by_scope = {}
    for resource in template.resources_of_type(DIAGNOSTIC):
        scope = path(resource.body, "scope")
        assert scope is not None and scope.type == "identifier", f"{resource.symbol}: scope must name a resource"
        by_scope[scope.text.decode()] = evaluate(resource.body, template)
    return by_scope


# ---- diagnostic settings -------------------------------------------------------

def test_every_deployed_resource_type_is_either_diagnosed_or_exempt_with_a_reason() -> None:
    unknown = set(deployed()) - DIAGNOSABLE - set(EXEMPT)
    assert not unknown, f"new resource types: add a diagnostic setting or an exemption: {sorted(unknown)}"


def test_every_diagnosable_resource_has_a_setting_to_the_workspace(diagnostics) -> None:
    by_scope = settings_by_scope(diagnostics)
    covered: dict[str, int] = {}
    for symbol, body in by_scope.items():
        target = diagnostics.resources[symbol]
        assert target.existing, f"{symbol}: diagnostics.bicep refers to resources, it deploys none"
        kind = target.target.split("@")[0]
        props = body["properties"]
        assert props["workspaceId"] == Expr("workspaceId"), f"{symbol}: not sent to the stack's workspace"
        assert {"category": "AllMetrics", "enabled": True} in props["metrics"], f"{symbol}: no metrics"
        if kind != "Microsoft.Storage/storageAccounts":
            assert {"categoryGroup": "allLogs", "enabled": True} in props["logs"], f"{symbol}: no logs"
        if kind.count("/") == 1:
            covered[kind] = covered.get(kind, 0) + 1
    for kind, resources in deployed().items():
        if kind in DIAGNOSABLE:
            assert covered.get(kind, 0) == len(resources), \
                f"{kind}: {len(resources)} deployed ({resources}), {covered.get(kind, 0)} with a diagnostic setting"


def test_every_storage_account_sends_the_logs_of_each_service_it_uses(diagnostics) -> None:
    by_scope = settings_by_scope(diagnostics)
    services: dict[str, set[str]] = {}
    for symbol in by_scope:
        resource = diagnostics.resources[symbol]
        parts = resource.target.split("@")[0].split("/")
        if parts[:2] == ["Microsoft.Storage", "storageAccounts"] and len(parts) == 3:
            parent = path(resource.body, "parent").text.decode()
            services.setdefault(parent, set()).add(parts[2])
    assert services.get("dataStorage") == {"blobServices"}, services
    assert services.get("hostStorage") == STORAGE_SERVICES, services


def test_main_points_the_diagnostics_at_the_resources_it_deploys(main) -> None:
    call = main.modules["diagnostics"]
    params = properties(path(call.body, "params"))
    used = set().union(*(references(node) for node in params.values()))
    for symbol, declaration in main.modules.items():
        target = load((MAIN.parent / declaration.target).resolve())
        if any(not r.existing and _top_level(r.target) in DIAGNOSABLE for r in target.resources.values()):
            assert symbol in used, f"module {symbol} deploys a service the diagnostics module is not given"
    assert params["workspaceId"].text == b"monitoring.outputs.workspaceId"
    assert set(params) == set(load(MODULES / "diagnostics.bicep").params)


# ---- alerts --------------------------------------------------------------------

@pytest.fixture(scope="module")
def alerts():
    return module("alerts")


def alert_names(template) -> set[str]:
    custom = {a["name"] for a in template.var("customMetricAlerts")}
    platform = {a["name"] for a in template.var("platformMetricAlerts")}
    single = {str(evaluate(path(r.body, "name"), template).text).split("}-")[-1].rstrip("'")
              for r in template.resources.values() if not r.loop and not r.existing}
    return custom | platform | single


def test_every_required_alert_is_deployed_in_every_region(main, alerts) -> None:
    assert "alerts" in main.modules and main.modules["alerts"].condition is None, "alerts must not be optional"
    missing = REQUIRED_ALERTS - alert_names(alerts)
    assert not missing, f"alerts missing: {sorted(missing)}"


def test_every_custom_metric_alert_queries_a_metric_the_code_records(alerts) -> None:
    declared = {value for key, value in vars(names).items() if key.isupper() and isinstance(value, str)}
    for alert in alerts.var("customMetricAlerts"):
        assert alert["metric"] in declared, f"{alert['name']}: {alert['metric']} is not in shared/telemetry/names.py"
        assert alert["column"] in ("Max", "Sum"), alert
    [rule] = [r for r in alerts.resources.values() if r.loop and r.target.startswith("Microsoft.Insights/scheduled")]
    query = path(rule.body, "properties", "criteria", "allOf").named_children[0]
    text = path(query, "query").text.decode()
    assert "AppMetrics" in text and "alert.metric" in text and "alert.column" in text


def test_the_slo_thresholds_are_the_documented_ones(alerts) -> None:
    by_name = {a["name"]: a for a in alerts.var("customMetricAlerts")}
    assert by_name["projection-lag"]["threshold"] == Expr("projectionLagSeconds")
    assert evaluate(alerts.params["projectionLagSeconds"]) == 30
    assert by_name["ingest-lag"]["threshold"] == Expr("ingestLagSloSeconds")
    assert evaluate(alerts.params["ingestLagSloSeconds"]) == 10
    assert by_name["poison-items"]["threshold"] == 0
    assert by_name["failing-webhook-endpoints"]["threshold"] == 0


def test_every_platform_metric_alert_names_a_real_metric_of_its_target(alerts) -> None:
    targets = evaluate(alerts.variables["targets"], alerts)
    for alert in alerts.var("platformMetricAlerts"):
        assert alert["metric"] in PLATFORM_METRICS[alert["namespace"]], alert
        symbol = targets[alert["target"]].text.split(".")[0]
        assert alerts.resources[symbol].target.split("@")[0] == alert["namespace"], alert
        assert alert["values"] == ["429"], alert


def test_the_5xx_alert_computes_a_rate_of_api_requests(alerts) -> None:
    rule = alerts.resources["api5xxRate"]
    criterion = path(rule.body, "properties", "criteria", "allOf").named_children[0]
    query = evaluate(path(criterion, "query"))
    assert "AppRequests" in query and "ResultCode" in query and "100.0 * failed / total" in query
    assert evaluate(path(criterion, "metricMeasureColumn")) == "rate"


def test_every_rule_notifies_the_action_group_parameter(main, alerts) -> None:
    assert path(main.modules["alerts"].body, "params", "actionGroupId").text == b"alertActionGroupId"
    assert evaluate(main.params["alertActionGroupId"]) == ""
    for resource in alerts.resources.values():
        if resource.existing:
            continue
        actions = path(resource.body, "properties", "actions")
        assert actions is not None, f"{resource.symbol} notifies nobody"
        assert references(actions) & {"logActionGroups", "metricActions"}, resource.symbol
    assert "actionGroupId" in references(alerts.variables["metricActions"])
    assert "actionGroupId" in references(alerts.variables["logActionGroups"])


# ---- the Function App's Azure Monitor settings ---------------------------------

def test_the_function_app_sets_what_the_azure_monitor_setup_reads() -> None:
    app = module("functionapp")
    settings = path(app.resources["settings"].body, "properties")
    assert settings is not None and settings.type == "call_expression"  # union(appSettings, {...})
    extra = evaluate(settings.named_children[-1].named_children[-1], app)
    assert azure_monitor.CONNECTION_STRING in extra
    assert extra[azure_monitor.AUTHENTICATION_STRING] == "Authorization=AAD"


def test_the_unread_hub_alert_needs_orders_in_and_none_out(main, alerts) -> None:
    """Event Hubs has no consumer-lag metric: a hub receiving orders that nobody reads for 15
    minutes is the platform's sign of a stopped consumer (both criteria must hold)."""
    rule = alerts.resources["eventHubUnread"]
    criteria = path(rule.body, "properties", "criteria", "allOf").named_children
    found = {evaluate(path(c, "metricName")): (evaluate(path(c, "operator")), evaluate(path(c, "threshold")))
             for c in criteria}
    assert found == {"IncomingMessages": ("GreaterThan", 0), "OutgoingMessages": ("LessThan", 1)}
    for criterion in criteria:
        assert evaluate(path(criterion, "metricName")) in PLATFORM_METRICS[evaluate(path(criterion, "metricNamespace"))]
    assert evaluate(path(rule.body, "properties", "windowSize")) == "PT15M"
    assert path(main.modules["alerts"].body, "params", "eventHubNamespaceName").text == \
        b"eventHubs.outputs.namespaceName"


def test_every_alerted_gauge_reports_on_azure(platform, monkeypatch) -> None:
    """An outside review: the consumer-lag alert watched accrue.bus.backlog, which only the local
    queue reports; on Event Hubs it never had a value, so the alert could never fire. Every
    gauge an alert watches must have a value when the bus is not the local queue."""
    from shared.telemetry import status

    by_gauge = {names.BUS_BACKLOG: "backlog", names.POISON_PENDING: "poison",
                names.WEBHOOK_ENDPOINTS_FAILING: "failing", names.WEBHOOK_ENDPOINTS_DISABLED: "disabled",
                names.PROJECTION_BEHIND: "projection"}
    class EventHubsShaped:  # the shape of Azure: a bus that is not the local queue
        def close(self) -> None:
            pass

    monkeypatch.setattr(platform, "bus", EventHubsShaped())
    values = status.gauges(platform)
    for alert in module("alerts").var("customMetricAlerts"):
        if alert["metric"] in by_gauge:
            assert values[by_gauge[alert["metric"]]] is not None, f"{alert['name']} never fires on Azure"
