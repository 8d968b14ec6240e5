"""Fixtures of the integration tests: real emulators, started once per session.

* ``cosmos_endpoint``: URL of a running cosmosdb-server (HTTPS, self-signed).
* ``cosmos_credential``: the key it accepts.
* ``cosmos_store``: a ``CosmosDocumentStore`` over a fresh database (one per
  test, with every container of ``shared.store.layout``), closed afterwards.
* ``sqlite_store``: the embedded store on a fresh file, same containers.
* ``cosmos_platform``: the platform over ``cosmos_store`` (a local queue and data folder),
  with tenant ``acme`` and customers ``c1`` to ``c4``.
* ``azurite_account_url`` / ``azurite_connection_string`` /
  ``azurite_credential``: a running Azurite blob service (account
  ``devstoreaccount1``).

Each emulator starts lazily, the first time a test asks for it, on a free port,
and stops (its whole process group) when the session ends. Set
``ACCRUE_TEST_COSMOS_ENDPOINT`` or ``ACCRUE_TEST_AZURITE_URL`` to use emulators
that are already running instead. Without ``tests/emulators/node_modules`` the
fixtures fail with the command to run: an integration test never skips silently.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from shared.store.layout import CONTAINERS
from tests.emulators import (
    COSMOS_EMULATOR_KEY,
    Emulator,
    EmulatorError,
    external,
    start_azurite,
    start_cosmos,
)


def _start(name: str, env_var: str, start) -> Iterator[Emulator]:  # type: ignore[no-untyped-def]
    url = os.environ.get(env_var)
    if url:
        yield external(name, url)
        return
    try:
        emulator = start()
    except EmulatorError as exc:
        problem = str(exc)
    else:
        problem = ""
    if problem:
        pytest.fail(f"{problem}\n(or set {env_var} to an emulator that is already running)", pytrace=False)
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def cosmos_emulator() -> Iterator[Emulator]:
    yield from _start("cosmosdb-server", "ACCRUE_TEST_COSMOS_ENDPOINT", start_cosmos)


@pytest.fixture(scope="session")
def cosmos_endpoint(cosmos_emulator: Emulator) -> str:
    return cosmos_emulator.url


@pytest.fixture(scope="session")
def cosmos_credential() -> str:
    return COSMOS_EMULATOR_KEY


@pytest.fixture
def cosmos_store(cosmos_endpoint: str, cosmos_credential: str) -> Iterator["CosmosDocumentStore"]:  # noqa: F821
    """A store over a database of its own: tests never see each other's documents."""
    from shared.store.cosmos import CosmosDocumentStore

    database = f"accrue-test-{uuid.uuid4().hex[:12]}"
    store = CosmosDocumentStore(
        cosmos_endpoint, database, CONTAINERS,
        credential=cosmos_credential, connection_verify=False, create_if_missing=True,
    )
    try:
        yield store
    finally:
        try:
            store._client.delete_database(store.database)  # keep the emulator's memory small
        except Exception:  # noqa: BLE001 - cleanup must not hide the test's own outcome
            pass
        store.close()


@pytest.fixture
def cosmos_platform(cosmos_store, tmp_path: Path, clock) -> Iterator["Platform"]:  # type: ignore[no-untyped-def]  # noqa: F821
    from shared.bus.local_queue import LocalQueue
    from shared.platform import build_platform
    from shared.settings import Settings
    from tests.conftest import add_customer, make_tenant

    settings = Settings.from_env({"ACCRUE_DATA_DIR": str(tmp_path / "data"), "ACCRUE_SQLITE_SYNCHRONOUS": "NORMAL"})
    (tmp_path / "data").mkdir()
    bus = LocalQueue(tmp_path / "data" / "queue.db", synchronous="NORMAL")
    platform = build_platform(settings, store=cosmos_store, bus=bus, clock=clock)
    make_tenant(platform, "acme")
    for n in range(1, 5):
        add_customer(platform, "acme", f"c{n}")
    yield platform
    bus.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator["SqliteDocumentStore"]:  # noqa: F821
    from shared.store.sqlite import SqliteDocumentStore

    store = SqliteDocumentStore(tmp_path / "store.db", CONTAINERS)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture(scope="session")
def azurite_emulator() -> Iterator[Emulator]:
    yield from _start("azurite-blob", "ACCRUE_TEST_AZURITE_URL", start_azurite)


@pytest.fixture(scope="session")
def azurite_account_url(azurite_emulator: Emulator) -> str:
    return azurite_emulator.url


@pytest.fixture(scope="session")
def azurite_connection_string(azurite_emulator: Emulator) -> str:
    return azurite_emulator.extra["connection_string"]


def pytest_configure(config: pytest.Config) -> None:
    # The emulator's certificate is self-signed on purpose; urllib3 would warn on every request.
    config.addinivalue_line("filterwarnings", "ignore::urllib3.exceptions.InsecureRequestWarning")


@pytest.fixture(scope="session")
def azurite_credential() -> dict[str, str]:
    """Shared-key credential of Azurite's development account, for ``account_url`` clients."""
    from tests.emulators import AZURITE_ACCOUNT, AZURITE_KEY

    return {"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY}
