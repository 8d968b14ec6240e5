"""Fixtures shared by every test layer: a platform on the embedded default in a
temporary folder, a tenant with keys, and an HTTP client over the real ASGI app.

Emulator fixtures (cosmosdb-server, Azurite) live in tests/integration/conftest.py."""

from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pytest
from fastapi.testclient import TestClient

from shared.api.app import create_app
from shared.app.auth import Role
from shared.app.customers import CustomerProfile
from shared.bus.local_queue import LocalQueue
from shared.clock import ManualClock
from shared.domain.tenants import TenantSettings
from shared.local.workers import FeedPoller, QueueConsumer
from shared.platform import Platform, build_platform
from shared.settings import Settings
from shared.store.layout import CONTAINERS
from shared.store.sqlite import SqliteDocumentStore
from tests.contract_check import Conformance


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc))


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteDocumentStore]:
    store = SqliteDocumentStore(tmp_path / "store.db", CONTAINERS, synchronous="NORMAL")
    yield store
    store.close()


@pytest.fixture
def platform(tmp_path: Path, clock: ManualClock) -> Iterator[Platform]:
    settings = Settings.from_env({"ACCRUE_DATA_DIR": str(tmp_path / "data"), "ACCRUE_SQLITE_SYNCHRONOUS": "NORMAL"})
    built = build_platform(settings, clock=clock)
    yield built
    built.close()


@dataclass
class TenantKeys:
    tenant_id: str
    merchant: str
    admin: str
    analyst: str


def make_tenant(platform: Platform, tenant_id: str, currency: str = "EUR", rate: str = "10") -> TenantKeys:
    platform.tenants.save(TenantSettings(tenantId=tenant_id, name=f"{tenant_id} shop", currency=currency,
                                         timeZone="Europe/Paris", pointsPerUnit=Decimal(rate)))
    return TenantKeys(
        tenant_id,
        merchant=platform.keys.issue(tenant_id, Role.MERCHANT, None).secret_key,
        admin=platform.keys.issue(tenant_id, Role.TENANT_ADMIN, None).secret_key,
        analyst=platform.keys.issue(tenant_id, Role.ANALYST, None).secret_key,
    )


def add_customer(platform: Platform, tenant_id: str, customer_id: str, **extra) -> None:
    platform.customers.register(tenant_id, CustomerProfile(customerId=customer_id, joinDate=date(2025, 1, 1), **extra))


@pytest.fixture
def tenant(platform: Platform) -> TenantKeys:
    keys = make_tenant(platform, "acme")
    for number in range(1, 4):
        add_customer(platform, "acme", f"c{number}")
    return keys


@pytest.fixture
def other_tenant(platform: Platform) -> TenantKeys:
    keys = make_tenant(platform, "globex")
    add_customer(platform, "globex", "c1")
    return keys


@pytest.fixture
def running(platform: Platform) -> Iterator[None]:
    """The consumer and the projector running in the background, as locally."""
    assert isinstance(platform.bus, LocalQueue)
    workers = [QueueConsumer(platform, platform.bus), FeedPoller(platform)]
    for worker in workers:
        worker.start()
    yield
    for worker in workers:
        worker.stop()
        worker.join()


def drain(platform: Platform) -> None:
    """Run the local consumer and projector until the queue and the feed are empty."""
    assert isinstance(platform.bus, LocalQueue)
    consumer, poller = QueueConsumer(platform, platform.bus), FeedPoller(platform)
    for _ in range(1000):
        busy = consumer.step()
        busy = poller.step() or busy
        if not busy and platform.bus.depth() == 0:
            return
    raise AssertionError("the local platform did not drain")


class ConformingClient(TestClient):
    """A TestClient that checks every answer against the OpenAPI document (tests/contract_check.py)."""

    def request(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        response = super().request(*args, **kwargs)
        _conformance(self.app).check(response)
        return response


_CONFORMANCE: list[Conformance] = []


def _conformance(app: Any) -> Conformance:
    # The document is the same for every app: generate it once per session.
    if not _CONFORMANCE:
        _CONFORMANCE.append(Conformance(app.openapi()))
    return _CONFORMANCE[0]


@pytest.fixture
def client(platform: Platform) -> Iterator[TestClient]:
    """HTTP through the real ASGI app (Starlette's TestClient is httpx over ASGI); every answer is
    checked against the OpenAPI document."""
    with ConformingClient(create_app(platform), base_url="http://accrue.test",
                          raise_server_exceptions=False) as http:
        yield http


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def order_body(customer_id: str = "c1", order_id: str = "o1", amount: str = "10.00", **extra) -> dict:
    body = {
        "customerId": customer_id, "orderId": order_id, "amount": amount, "currency": "EUR",
        "timestamp": "2026-11-01T11:00:00Z", "channel": "web",
        "items": [{"sku": "SKU-1", "category": "coffee", "quantity": 1, "unitPrice": amount}],
    }
    body.update(extra)
    return body


def claimed(platform: Platform, body: dict) -> dict:
    """``body`` (an order message) after writing its order's claim as the intake does
    (shared/app/claims.py), for tests that hand messages to ingestion or the bus
    directly: ingestion credits only orders that match their claim. Idempotent."""
    from shared.app.claims import order_claim, published
    from shared.app.messages import parse_order_message
    from shared.errors import DocumentExists
    from shared.ledger.service import fingerprint_of
    from shared.store.layout import ORDER_STATUS

    message = parse_order_message(body)
    payload = message.order.to_message()
    claim = published(order_claim(message.tenant_id, message.order, payload, fingerprint_of(payload),
                                  body["acceptedAt"], body["acceptedAt"]))
    try:
        platform.store.create(ORDER_STATUS, claim)
    except DocumentExists:
        pass
    return body


class Died(BaseException):
    """The process stopped here (a BaseException: no ``except Exception`` on the way catches it)."""


class Crashed(Exception):
    """A crash injected where it must travel as an ``Exception``: through the ASGI app (answered
    500, as a dead worker's request is lost) or into a job that logs and goes on."""


def crashing(where: str, error: type[BaseException] = Crashed) -> Callable[..., Any]:
    """A stand-in for a function or method: raises ``error(where)`` whatever it is called with."""
    def crash(*args: Any, **kwargs: Any) -> Any:
        raise error(where)
    return crash


class StoreThatDies:
    """A store whose process dies at its ``at``-th write (create, upsert, batch, batches,
    delete; counted from 0); reads pass through. For crash tests at every write of an
    operation: run it with ``at`` = 0, 1, 2, ... until it completes."""

    WRITES = ("create", "upsert", "batch", "batches", "delete")

    def __init__(self, store: Any, at: int) -> None:
        self._store, self._left = store, at

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        if name not in self.WRITES:
            return method

        def write(*args: Any, **kwargs: Any) -> Any:
            if self._left == 0:
                raise Died(name)
            self._left -= 1
            return method(*args, **kwargs)
        return write


@contextmanager
def dying_before_audit(platform: Platform, action: str) -> Iterator[None]:
    """The process dies when it is about to append an ``action`` audit record (the change
    it records already written): the body must raise ``Died``; other records go in."""
    record = platform.audit.record

    def died(tenant_id: str, act: str, *args: Any, **kwargs: Any) -> Any:
        if act == action:
            raise Died(f"after the change, before its {action} record")
        return record(tenant_id, act, *args, **kwargs)

    platform.audit.record = died  # type: ignore[method-assign]
    try:
        with pytest.raises(Died):
            yield
    finally:
        del platform.audit.record  # the class's method again


class StoreThatInterleaves:
    """A store that runs a racer's writes at one chosen point of an operation: ``before``
    and ``after`` (callables on the real store) run once, around the ``nth`` (from 0)
    ``method`` call on ``container``; everything else passes through. For interleavings a
    thread race hits only by luck: the test names the point and asserts what must hold
    after it."""

    def __init__(self, store: Any, method: str, container: str, before: Callable[[], object] | None = None,
                 after: Callable[[], object] | None = None, nth: int = 0) -> None:
        self._store, self._method, self._container = store, method, container
        self._before, self._after, self.ran = before, after, False
        self._skip = nth

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        if name != self._method:
            return method

        def call(container: str, *args: Any, **kwargs: Any) -> Any:
            if container != self._container or self.ran:
                return method(container, *args, **kwargs)
            if self._skip:
                self._skip -= 1
                return method(container, *args, **kwargs)
            self.ran = True
            if self._before is not None:
                self._before()
            try:
                return method(container, *args, **kwargs)
            finally:
                if self._after is not None:
                    self._after()
        return call


def run_in_threads(target: Callable[..., object], args: Iterable[tuple[Any, ...]],
                   timeout: float | None = None) -> None:
    """One thread per argument tuple, all started before any is joined (so they race),
    then each joined (``timeout`` seconds at most each). A thread's exception is raised
    here (the first one), and a thread still running after its timeout fails the test:
    a racer that died must not pass for one that lost."""
    failures: list[BaseException] = []

    def run(*a: Any) -> None:
        try:
            target(*a)
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread below
            failures.append(error)

    threads = [threading.Thread(target=run, args=a) for a in args]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    if failures:
        raise failures[0]
    running = sum(thread.is_alive() for thread in threads)
    assert not running, f"{running} of {len(threads)} threads still running after {timeout} s"


@pytest.fixture
def spans() -> Iterator[Any]:
    """Every span recorded in this process during the test (an in-memory exporter);
    recording is switched off again afterwards."""
    from shared.telemetry import tracing

    exporter = tracing.memory_exporter()
    tracing.set_enabled(True)
    exporter.clear()
    yield exporter
    tracing.set_enabled(False)
    exporter.clear()


@pytest.fixture
def operators(platform: Platform) -> list:
    """Two platform operators with software security keys (tests/operators.py)."""
    from tests.operators import add_operators
    return add_operators(platform, 2)


@pytest.fixture
def ceremony(client: TestClient, operators: list) -> Any:
    """The two-operator ceremony over HTTP for platform acts (tests/operators.py)."""
    from tests.operators import Ceremony
    return Ceremony(client, operators)


class PerPlatform:
    """Test state kept for one platform object across a module's tests. Keyed by the
    object (a weak reference beside its ``id``), not by ``id`` alone: once a platform is
    collected a new one can get its ``id``, and would be handed the old one's state (two
    operators whose keys that platform never issued answered 401)."""

    def __init__(self) -> None:
        self._kept: dict[int, tuple[weakref.ref, Any]] = {}

    def get(self, platform: Any, make: Callable[[], Any]) -> Any:
        kept = self._kept.get(id(platform))
        if kept is None or kept[0]() is not platform:
            kept = self._kept[id(platform)] = (weakref.ref(platform), make())
        return kept[1]
