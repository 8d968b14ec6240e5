"""The binding facts of the Functions app: one place for the names the host
resolves, so the trigger decorators, the Bicep templates and their cross-check
test cannot drift.

The triggers use identity-based connections: ``connection="EventHubConnection"``
makes the host read ``EventHubConnection__fullyQualifiedNamespace``, and
``connection="CosmosDbConnection"`` reads ``CosmosDbConnection__accountEndpoint``
(both listed in ``shared.settings.SETTINGS`` with ``host_binding=True``).
``%NAME%`` values are app settings the host substitutes when it indexes the
functions, so each must exist as an app setting in every region's stack.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.store.layout import LEDGER

# --- connections (prefixes of identity-based connection settings) -----------------
EVENTHUB_CONNECTION = "EventHubConnection"
COSMOS_CONNECTION = "CosmosDbConnection"
EVENTHUB_CONNECTION_SETTING = f"{EVENTHUB_CONNECTION}__fullyQualifiedNamespace"
COSMOS_CONNECTION_SETTING = f"{COSMOS_CONNECTION}__accountEndpoint"

# --- app settings the host resolves in binding expressions -------------------------
EVENTHUB_NAME_SETTING = "EVENTHUB_NAME"
EVENTHUB_CONSUMER_GROUP_SETTING = "EVENTHUB_CONSUMER_GROUP"
COSMOS_DATABASE_SETTING = "COSMOS_DATABASE"

# --- resources --------------------------------------------------------------------
# The monitored container (change feed on) and the trigger's lease container, in
# the same database. Bicep creates ``leases`` (partition key ``/id``, as the
# change-feed processor requires); the trigger never creates it, because an
# identity-based connection may not create containers.
LEDGER_CONTAINER = LEDGER
LEASE_CONTAINER = "leases"
LEASE_CONTAINER_PARTITION_KEY = "/id"

# --- function names (stable: they name logs, metrics and retry state) -------------
INGEST_FUNCTION = "ingest_orders"
PROJECTION_FUNCTION = "project_ledger"
HTTP_FUNCTION = "http_app_func"
TIMER_FUNCTION_PREFIX = "timer_"

# Data-plane roles the app's identity needs for its triggers (built-in role names).
EVENTHUB_RECEIVER_ROLE = "Azure Event Hubs Data Receiver"
COSMOS_DATA_ROLE = "Cosmos DB Built-in Data Contributor"


def setting_ref(name: str) -> str:
    """A binding expression the host replaces with the app setting's value."""
    return f"%{name}%"


@dataclass(frozen=True)
class TriggerBinding:
    """What one trigger needs from the deployment."""

    function: str
    trigger_type: str
    connection: str
    connection_settings: tuple[str, ...]
    resolved_settings: tuple[str, ...]
    data_role: str
    event_hub_name_setting: str | None = None
    consumer_group_setting: str | None = None
    database_setting: str | None = None
    container: str | None = None
    lease_container: str | None = None


BINDING_FACTS: tuple[TriggerBinding, ...] = (
    TriggerBinding(
        function=INGEST_FUNCTION,
        trigger_type="eventHubTrigger",
        connection=EVENTHUB_CONNECTION,
        connection_settings=(EVENTHUB_CONNECTION_SETTING,),
        resolved_settings=(EVENTHUB_NAME_SETTING, EVENTHUB_CONSUMER_GROUP_SETTING),
        data_role=EVENTHUB_RECEIVER_ROLE,
        event_hub_name_setting=EVENTHUB_NAME_SETTING,
        consumer_group_setting=EVENTHUB_CONSUMER_GROUP_SETTING,
    ),
    TriggerBinding(
        function=PROJECTION_FUNCTION,
        trigger_type="cosmosDBTrigger",
        connection=COSMOS_CONNECTION,
        connection_settings=(COSMOS_CONNECTION_SETTING,),
        resolved_settings=(COSMOS_DATABASE_SETTING,),
        data_role=COSMOS_DATA_ROLE,
        database_setting=COSMOS_DATABASE_SETTING,
        container=LEDGER_CONTAINER,
        lease_container=LEASE_CONTAINER,
    ),
)

# Every app setting the host itself reads for the triggers.
HOST_SETTINGS: tuple[str, ...] = tuple(dict.fromkeys(
    name for fact in BINDING_FACTS for name in (*fact.connection_settings, *fact.resolved_settings)
))
