"""Settings from environment variables, with the embedded default when none are set.

Each setting has the name an Azure app setting would use; ``SETTINGS`` is the one
list of them, read by the Bicep cross-check test so the templates set every
setting the code reads. Choosing an Azure adapter makes its settings required: a
missing or malformed one fails at start with a ``ConfigurationError`` naming it,
never later on the first request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import urlparse

from shared.errors import ConfigurationError
from shared.store.layout import DEFAULT_TTL, TtlPolicy


@dataclass(frozen=True)
class Setting:
    name: str
    description: str
    default: str | None = None
    # Which adapter choice needs it ("store=cosmos", ...); None: always read.
    required_for: str | None = None
    # Read by the Functions host's bindings rather than by our code.
    host_binding: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("ACCRUE_STORE", "document store adapter: sqlite | cosmos", "sqlite"),
    Setting("ACCRUE_BUS", "order bus adapter: local | eventhubs", "local"),
    Setting("ACCRUE_KEYS", "key provider adapter: local | keyvault", "local"),
    Setting("ACCRUE_BLOBS", "blob sink adapter: local | azure", "local"),
    Setting("ACCRUE_DATA_DIR", "folder of the embedded default (SQLite files, keyring, blobs)", ".accrue-data"),
    Setting("ACCRUE_SQLITE_SYNCHRONOUS", "SQLite durability: FULL (default) or NORMAL", "FULL"),
    Setting("ACCRUE_REGION", "region label of this stack (us, eu, apac, local)", "local"),
    # Off only on the embedded default (a one-person laptop, or a locked-out operator's
    # deliberate recovery); on the Azure store it cannot be turned off (see _check_dual_control).
    Setting("ACCRUE_DUAL_CONTROL", "dual control of platform-admin acts and keys: on (default) | off", "on"),
    # Overrides of the TTL rules (shared/store/layout.py TTL_RULES): "container=days" or
    # "container/docType=days", comma-separated; empty: the rules' own days.
    # WebAuthn (FIDO2 security keys of platform operators, shared/governance/webauthn.py).
    Setting("ACCRUE_WEBAUTHN_RP_ID", "WebAuthn relying party id: the operator page's host name", "localhost"),
    Setting("ACCRUE_WEBAUTHN_ORIGIN", "origins allowed in WebAuthn ceremonies, comma-separated (empty: "
            "https://<rp id>, or any http://localhost:<port> when the rp id is localhost)", ""),
    Setting("ACCRUE_WEBAUTHN_AAGUIDS", "authenticator models (AAGUIDs, comma-separated) allowed to register; "
            "empty: any (attestation none)", ""),
    Setting("ACCRUE_TTL_DAYS", "days operational documents are kept, e.g. webhookattempts=60,poison=180", ""),
    Setting("COSMOS_ENDPOINT", "Cosmos DB account endpoint, https://<account>.documents.azure.com:443/",
            required_for="store=cosmos"),
    Setting("COSMOS_DATABASE", "Cosmos DB database name", "accrue", required_for="store=cosmos"),
    Setting("EVENTHUB_NAMESPACE", "Event Hubs fully qualified namespace, <ns>.servicebus.windows.net",
            required_for="bus=eventhubs"),
    Setting("EVENTHUB_NAME", "the orders event hub", "orders", required_for="bus=eventhubs"),
    Setting("EVENTHUB_CONSUMER_GROUP", "consumer group of the ingest trigger", "accrue-ingest",
            required_for="bus=eventhubs", host_binding=True),
    Setting("KEYVAULT_URI", "Key Vault URI, https://<vault>.vault.azure.net/", required_for="keys=keyvault"),
    # Client id of the key-manager identity (user-assigned, Key Vault Crypto Officer on the
    # vault): only tenant provisioning and KEK rotation use it; wrap/unwrap use the app's own.
    # Optional, so an operator's CLI (exports decrypt) runs with the data-path identity only;
    # main.bicep sets it on the Function App (the Bicep cross-check test demands it there).
    Setting("KEYVAULT_MANAGEMENT_CLIENT_ID", "client id of the key-manager managed identity (creates and rotates "
            "tenant keys); unset: this process creates no keys"),
    Setting("KEYVAULT_SKU", "the vault's tier: premium (keys are RSA-HSM) | standard (keys are RSA)", "premium",
            required_for="keys=keyvault"),
    # The vault of the tenants' export keys (export-<tenant>), apart from the keys of personal data so
    # a warehouse identity and network path reach export keys only (docs/exports.md); unset: KEYVAULT_URI.
    Setting("EXPORT_KEYVAULT_URI", "Key Vault URI of the export keys (default: KEYVAULT_URI)"),
    Setting("BLOB_ACCOUNT_URL", "Blob Storage account URL, https://<account>.blob.core.windows.net",
            required_for="blobs=azure"),
    # Live updates on Azure (issue 14, shared/graphql/webpubsub.py): GraphQL subscriptions cannot be
    # held by an HTTP function, so events go out through Web PubSub. Unset: no Web PubSub (locally).
    Setting("WEBPUBSUB_ENDPOINT", "Azure Web PubSub endpoint, https://<name>.webpubsub.azure.com (live updates)"),
    Setting("WEBPUBSUB_HUB", "the Web PubSub hub of live updates", "accrue"),
    # Identity-based connections of the triggers (the host reads these, not our code).
    Setting("EventHubConnection__fullyQualifiedNamespace", "Event Hubs namespace for the ingest trigger",
            required_for="bus=eventhubs", host_binding=True),
    Setting("CosmosDbConnection__accountEndpoint", "Cosmos DB endpoint for the change-feed trigger",
            required_for="store=cosmos", host_binding=True),
)

BY_NAME = {setting.name: setting for setting in SETTINGS}

CHOICES = {
    "ACCRUE_STORE": ("sqlite", "cosmos"),
    "ACCRUE_BUS": ("local", "eventhubs"),
    "ACCRUE_KEYS": ("local", "keyvault"),
    "ACCRUE_BLOBS": ("local", "azure"),
    "ACCRUE_SQLITE_SYNCHRONOUS": ("FULL", "NORMAL", "EXTRA"),
    "ACCRUE_DUAL_CONTROL": ("on", "off"),
    "KEYVAULT_SKU": ("premium", "standard"),
}


@dataclass(frozen=True)
class Settings:
    store: str
    bus: str
    keys: str
    blobs: str
    data_dir: Path
    sqlite_synchronous: str
    region: str
    dual_control: bool
    cosmos_endpoint: str | None
    cosmos_database: str
    eventhub_namespace: str | None
    eventhub_name: str
    eventhub_consumer_group: str
    keyvault_uri: str | None
    keyvault_management_client_id: str | None
    keyvault_sku: str
    blob_account_url: str | None
    ttl: TtlPolicy = DEFAULT_TTL
    webpubsub_endpoint: str | None = None
    webpubsub_hub: str = "accrue"
    export_keyvault_uri: str | None = None
    webauthn_rp_id: str = "localhost"
    webauthn_origins: tuple[str, ...] = ()
    webauthn_aaguids: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(name)
            if value is None or value.strip() == "":
                return BY_NAME[name].default
            return value.strip()

        for name, allowed in CHOICES.items():
            value = get(name)
            if value not in allowed:
                raise ConfigurationError(f"setting {name}={value!r} is not one of {', '.join(allowed)}")

        choices = {
            "store": get("ACCRUE_STORE"), "bus": get("ACCRUE_BUS"),
            "keys": get("ACCRUE_KEYS"), "blobs": get("ACCRUE_BLOBS"),
        }
        for setting in SETTINGS:
            if setting.required_for is None or setting.host_binding:
                continue
            port, adapter = setting.required_for.split("=")
            if choices[port] == adapter and not get(setting.name):
                raise ConfigurationError(
                    f"setting {setting.name} is required when ACCRUE_{port.upper()}={adapter}: {setting.description}"
                )

        settings = cls(
            store=choices["store"], bus=choices["bus"], keys=choices["keys"], blobs=choices["blobs"],
            data_dir=Path(get("ACCRUE_DATA_DIR") or ".accrue-data"),
            sqlite_synchronous=get("ACCRUE_SQLITE_SYNCHRONOUS") or "FULL",
            region=get("ACCRUE_REGION") or "local",
            dual_control=get("ACCRUE_DUAL_CONTROL") != "off",
            cosmos_endpoint=get("COSMOS_ENDPOINT"),
            cosmos_database=get("COSMOS_DATABASE") or "accrue",
            eventhub_namespace=get("EVENTHUB_NAMESPACE"),
            eventhub_name=get("EVENTHUB_NAME") or "orders",
            eventhub_consumer_group=get("EVENTHUB_CONSUMER_GROUP") or "accrue-ingest",
            keyvault_uri=get("KEYVAULT_URI"),
            keyvault_management_client_id=get("KEYVAULT_MANAGEMENT_CLIENT_ID"),
            keyvault_sku=get("KEYVAULT_SKU") or "premium",
            export_keyvault_uri=get("EXPORT_KEYVAULT_URI"),
            blob_account_url=get("BLOB_ACCOUNT_URL"),
            ttl=TtlPolicy.from_setting(get("ACCRUE_TTL_DAYS")),
            webpubsub_endpoint=get("WEBPUBSUB_ENDPOINT"),
            webpubsub_hub=get("WEBPUBSUB_HUB") or "accrue",
            webauthn_rp_id=get("ACCRUE_WEBAUTHN_RP_ID") or "localhost",
            webauthn_origins=tuple(o.strip() for o in (get("ACCRUE_WEBAUTHN_ORIGIN") or "").split(",") if o.strip()),
            webauthn_aaguids=tuple(a.strip().lower() for a in (get("ACCRUE_WEBAUTHN_AAGUIDS") or "").split(",")
                                   if a.strip()),
        )
        settings._check_urls()
        settings._check_dual_control()
        return settings

    def _check_dual_control(self) -> None:
        """Dual control may be off only on the embedded store: a shared stack never runs without it."""
        if not self.dual_control and self.store != "sqlite":
            raise ConfigurationError("setting ACCRUE_DUAL_CONTROL=off is allowed only with ACCRUE_STORE=sqlite "
                                     "(the embedded default); a shared stack keeps dual control on")

    def _check_urls(self) -> None:
        checks = (
            ("COSMOS_ENDPOINT", self.cosmos_endpoint, self.store == "cosmos"),
            ("KEYVAULT_URI", self.keyvault_uri, self.keys == "keyvault"),
            ("BLOB_ACCOUNT_URL", self.blob_account_url, self.blobs == "azure"),
            ("WEBPUBSUB_ENDPOINT", self.webpubsub_endpoint, True),
        )
        for name, value, needed in checks:
            if needed and value:
                parsed = urlparse(value)
                if parsed.scheme not in ("https", "http") or not parsed.hostname:
                    raise ConfigurationError(f"setting {name}={value!r} is not an https URL")
        if self.bus == "eventhubs" and self.eventhub_namespace:
            if "/" in self.eventhub_namespace or "." not in self.eventhub_namespace:
                raise ConfigurationError(
                    f"setting EVENTHUB_NAMESPACE={self.eventhub_namespace!r} must be a fully qualified "
                    "namespace such as accrue-eu.servicebus.windows.net"
                )
