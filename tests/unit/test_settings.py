"""Settings: the embedded default with nothing set; Azure adapters demand their settings."""

from __future__ import annotations

import pytest

from shared.errors import ConfigurationError
from shared.settings import Settings


def test_nothing_set_means_the_embedded_default() -> None:
    settings = Settings.from_env({})
    assert (settings.store, settings.bus, settings.keys, settings.blobs) == ("sqlite", "local", "local", "local")
    assert settings.sqlite_synchronous == "FULL"


@pytest.mark.parametrize("env, named", [
    ({"ACCRUE_STORE": "cosmos"}, "COSMOS_ENDPOINT"),
    ({"ACCRUE_STORE": "cosmos", "COSMOS_ENDPOINT": "not a url"}, "COSMOS_ENDPOINT"),
    ({"ACCRUE_BUS": "eventhubs"}, "EVENTHUB_NAMESPACE"),
    ({"ACCRUE_BUS": "eventhubs", "EVENTHUB_NAMESPACE": "https://x/"}, "EVENTHUB_NAMESPACE"),
    ({"ACCRUE_KEYS": "keyvault"}, "KEYVAULT_URI"),
    ({"ACCRUE_BLOBS": "azure"}, "BLOB_ACCOUNT_URL"),
    ({"ACCRUE_STORE": "mongo"}, "ACCRUE_STORE"),
    ({"ACCRUE_SQLITE_SYNCHRONOUS": "OFF"}, "ACCRUE_SQLITE_SYNCHRONOUS"),
])
def test_a_missing_or_wrong_setting_fails_at_start_naming_it(env, named) -> None:
    with pytest.raises(ConfigurationError, match=named):
        Settings.from_env(env)


def test_a_complete_azure_configuration_is_accepted() -> None:
    settings = Settings.from_env({
        "ACCRUE_STORE": "cosmos", "COSMOS_ENDPOINT": "https://acc-eu.documents.azure.com:443/",
        "ACCRUE_BUS": "eventhubs", "EVENTHUB_NAMESPACE": "acc-eu.servicebus.windows.net",
        "ACCRUE_KEYS": "keyvault", "KEYVAULT_URI": "https://acc-eu.vault.azure.net/",
        "ACCRUE_BLOBS": "azure", "BLOB_ACCOUNT_URL": "https://acceu.blob.core.windows.net"})
    assert settings.cosmos_database == "accrue" and settings.eventhub_name == "orders"
