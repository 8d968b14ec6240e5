"""Fixtures of the Functions-app tests: ``function_app`` imported the way the host
imports it (Azure settings, no network), and the worker's platform built on the
embedded default in a temporary folder."""

from __future__ import annotations

import importlib
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import pytest

from shared.platform import Platform
from shared.settings import Settings
from tests.conftest import add_customer, make_tenant

AZURE_ENV = {
    "ACCRUE_STORE": "cosmos",
    "ACCRUE_BUS": "eventhubs",
    "COSMOS_ENDPOINT": "https://accrue-test.documents.azure.com:443/",
    "COSMOS_DATABASE": "accrue",
    "EVENTHUB_NAMESPACE": "accrue-test.servicebus.windows.net",
    "EVENTHUB_NAME": "orders",
    "EVENTHUB_CONSUMER_GROUP": "accrue-ingest",
    "EventHubConnection__fullyQualifiedNamespace": "accrue-test.servicebus.windows.net",
    "CosmosDbConnection__accountEndpoint": "https://accrue-test.documents.azure.com:443/",
}
EMBEDDED_ENV_NAMES = ("ACCRUE_STORE", "ACCRUE_BUS", "COSMOS_ENDPOINT", "EVENTHUB_NAMESPACE")


def _no_network(*args: Any, **kwargs: Any) -> None:
    raise AssertionError(f"importing function_app connected or built something: {args!r}")


@dataclass(frozen=True)
class IndexedApp:
    module: ModuleType
    # ``get_functions()`` may run once per app (it records names to refuse
    # duplicates), as in the worker: the fixture indexes once and keeps the list.
    functions: dict[str, Any]


@pytest.fixture(scope="module")
def indexed_app() -> Iterator[IndexedApp]:
    """A fresh import of ``function_app`` with Azure settings, sockets forbidden,
    and building the platform forbidden: the import must build nothing."""
    for name in list(sys.modules):
        if name == "function_app" or name == "functions" or name.startswith("functions."):
            del sys.modules[name]
    with pytest.MonkeyPatch.context() as patch:
        for name, value in AZURE_ENV.items():
            patch.setenv(name, value)
        patch.setattr(socket.socket, "connect", _no_network)
        patch.setattr(socket, "create_connection", _no_network)
        # Building the platform starts with reading the settings: forbidden too.
        patch.setattr(Settings, "from_env", _no_network)
        module = importlib.import_module("function_app")
        functions = module.app.get_functions()
    assert not sys.modules["functions._platform"].is_built()
    assert functions
    yield IndexedApp(module, {f.get_function_name(): f for f in functions})
    sys.modules["functions._platform"].reset_platform()


@pytest.fixture(scope="module")
def app_module(indexed_app: IndexedApp) -> ModuleType:
    return indexed_app.module


@pytest.fixture(scope="module")
def app_functions(indexed_app: IndexedApp) -> dict[str, Any]:
    return indexed_app.functions


@pytest.fixture
def worker_platform(app_module: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    """The platform the functions build for themselves, from app settings that
    choose the embedded default (SQLite store, local queue) in ``tmp_path``."""
    for name in EMBEDDED_ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ACCRUE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ACCRUE_SQLITE_SYNCHRONOUS", "NORMAL")
    platform_module = sys.modules["functions._platform"]
    platform_module.reset_platform()
    built = platform_module.get_platform()
    make_tenant(built, "acme")
    for customer in ("c1", "c2"):
        add_customer(built, "acme", customer)
    yield built
    platform_module.reset_platform()
