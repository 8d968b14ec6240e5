"""Clients generated from the OpenAPI document really work (issue 13, part 3).

* Python: ``openapi-python-client`` generates a client from the live platform's
  own ``/openapi/v1.json``, with no warning and no endpoint dropped; the README's
  curl walkthrough then runs again through that client against a live local
  platform (``python -m shared.local run``), including a 422, a 404, a 401 and a
  403 read as typed ``Problem`` objects.
* TypeScript: ``openapi-typescript`` generates types from docs/openapi-v1.json and
  ``tsc --noEmit`` accepts tests/clients/usage.ts, which uses them (and whose
  ``@ts-expect-error`` lines fail the check if the types are too loose).

The generators are pinned: tests/requirements.txt (openapi-python-client) and
tests/clients/package.json (openapi-typescript, typescript; ``make test`` runs
``npm ci --prefix tests/clients``)."""

from __future__ import annotations

import datetime as dt
import importlib
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from shared.ratelimit.policy import RateLimits
from tests.e2e.conftest import ROOT, LocalPlatform

CLIENTS = ROOT / "tests" / "clients"
NODE_BIN = CLIENTS / "node_modules" / ".bin"
GENERATOR = Path(sys.executable).parent / "openapi-python-client"


def _generate_python_client(document: Path, out: Path) -> str:
    config = out.parent / "openapi-python-client.yaml"
    # No ruff formatting pass (not installed here). The text bodies of file-like uploads (a voucher pool's
    # CSV or NDJSON codes) are raw bytes to the client: the generator takes them as octet streams, as
    # docs/api-clients.md tells client authors to configure it.
    config.write_text("post_hooks: []\ncontent_type_overrides:\n  text/csv: application/octet-stream\n"
                      "  application/x-ndjson: application/octet-stream\n", encoding="utf-8")
    done = subprocess.run([str(GENERATOR), "generate", "--path", str(document), "--meta", "none",
                           "--output-path", str(out), "--config", str(config)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    running = LocalPlatform(tmp_path_factory.mktemp("platform") / "data").start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client_package(live: LocalPlatform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The Python client generated from the live platform's own document, importable as ``accrue_client``."""
    folder = tmp_path_factory.mktemp("pyclient")
    document = folder / "openapi-v1.json"
    document.write_bytes(httpx.get(live.url + "/openapi/v1.json", timeout=15).content)
    output = _generate_python_client(document, folder / "accrue_client")
    warnings = [line for line in output.splitlines() if "WARNING" in line or "will not be generated" in line]
    assert not warnings, output
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module("accrue_client")
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m == "accrue_client" or m.startswith("accrue_client.")]:
            del sys.modules[name]


def _api(package: ModuleType, tag: str, operation: str) -> Any:
    return importlib.import_module(f"{package.__name__}.api.{tag}.{operation}")


def _models(package: ModuleType) -> Any:
    return importlib.import_module(f"{package.__name__}.models")


def test_the_python_client_has_every_operation(client_package: ModuleType, live: LocalPlatform) -> None:
    document = httpx.get(live.url + "/openapi/v1.json", timeout=15).json()
    operation_ids = {op["operationId"] for item in document["paths"].values() for op in item.values()}
    api = Path(client_package.__file__).parent / "api"
    generated = {f"{p.parent.name}.{p.stem}" for p in api.glob("*/*.py") if p.stem != "__init__"}
    assert len(generated) == len(operation_ids) >= 90  # none dropped


def test_the_readme_walkthrough_through_the_generated_python_client(client_package: ModuleType,
                                                                     live: LocalPlatform) -> None:
    m = _models(client_package)
    Problem = m.Problem
    merchant = client_package.AuthenticatedClient(base_url=live.url, token=live.keys["merchant"], timeout=15)
    admin = client_package.AuthenticatedClient(base_url=live.url, token=live.keys["tenant-admin"], timeout=15)
    anonymous = client_package.Client(base_url=live.url, timeout=15)

    health = _api(client_package, "health", "health_check").sync(client=anonymous)
    assert isinstance(health, m.Health) and health.status == "ok" and health.store == "sqlite"

    # Without a key: a typed 401 problem.
    balance_op = _api(client_package, "customers", "customers_balance")
    unauthenticated = balance_op.sync_detailed("cust-001", client=client_package.AuthenticatedClient(
        base_url=live.url, token="", prefix="", timeout=15))
    assert unauthenticated.status_code == 401 and isinstance(unauthenticated.parsed, Problem)
    assert unauthenticated.parsed.type_ == "https://accrue.dev/problems/unauthenticated"

    registered = _api(client_package, "customers", "customers_register").sync_detailed(
        client=merchant, body=m.NewCustomer(customer_id="alice-42", join_date=dt.date(2026, 11, 1),
                                            tags=["newsletter"]))
    assert registered.status_code == 201 and isinstance(registered.parsed, m.Customer)
    assert registered.parsed.customer_id == "alice-42" and registered.parsed.tags == ["newsletter"]

    send = _api(client_package, "orders", "orders_send")
    first = send.sync_detailed(client=merchant, wait=5, body=m.Order(
        customer_id="alice-42", order_id="ord-1001", amount="24.90", currency="EUR",
        timestamp=dt.datetime(2026, 11, 23, 9, 30, tzinfo=dt.timezone.utc), channel="store",
        items=[m.LineItem(sku="LATTE-M", category="coffee", quantity=3, unit_price="3.60"),
               m.LineItem(sku="BEANS-1KG", category="beans", quantity=1, unit_price="14.10")]))
    assert first.status_code == 200, first.content
    assert isinstance(first.parsed, m.OrderStatus) and first.parsed.status == "credited"
    assert first.parsed.points == 249 and first.parsed.status_url == "/v1/orders/ord-1001"

    queued = send.sync_detailed(client=merchant, body=m.Order(
        customer_id="alice-42", order_id="ord-1002", amount="8.40", currency="EUR",
        timestamp=dt.datetime(2026, 11, 23, 12, 5, tzinfo=dt.timezone.utc), channel="web"))
    assert queued.status_code in (200, 202) and isinstance(queued.parsed, m.OrderStatus)
    status = _api(client_package, "orders", "orders_get").sync("ord-1002", client=merchant, wait=5)
    assert isinstance(status, m.OrderStatus) and status.status == "credited" and status.points == 84

    # Invalid input: a typed 422 naming each bad field.
    invalid = send.sync_detailed(client=merchant, body=m.Order(
        customer_id="alice-42", order_id="ord-bad", amount=0, currency="XXQ",
        timestamp=dt.datetime(2026, 11, 23, 12, 5, tzinfo=dt.timezone.utc)))
    assert invalid.status_code == 422 and isinstance(invalid.parsed, Problem)
    assert {e.field for e in invalid.parsed.errors} == {"amount", "currency"}
    assert invalid.parsed.type_ == "https://accrue.dev/problems/validation-failed"
    # Unknown order: a typed 404.
    missing = _api(client_package, "orders", "orders_get").sync_detailed("ord-none", client=merchant)
    assert missing.status_code == 404 and isinstance(missing.parsed, Problem) and missing.parsed.status == 404

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        balance = balance_op.sync("alice-42", client=merchant)
        assert isinstance(balance, m.Balance)
        if balance.available == 333:
            break  # the read model caught up
        time.sleep(0.05)
    assert (balance.available, balance.pending, balance.reserved, balance.lifetime_earned) == (333, 0, 0, 333)
    assert balance.source == "read-model" and balance.data_as_of

    ledger = _api(client_package, "customers", "customers_ledger")
    page = ledger.sync("alice-42", client=merchant, limit=1)
    assert isinstance(page, m.LedgerPage) and [e.reference_order_id for e in page.items] == ["ord-1002"]
    # ``next`` is a link (path and query); a generated client passes its cursor back.
    assert page.next_.startswith("/v1/customers/alice-42/ledger?")
    rest = ledger.sync("alice-42", client=merchant, limit=1,
                       cursor=parse_qs(urlsplit(page.next_).query)["cursor"][0])
    assert [e.reference_order_id for e in rest.items] == ["ord-1001"]

    refund = _api(client_package, "orders", "orders_refund")
    body = m.RefundRequest(refund_id="rf-1", amount="14.10", currency="EUR", reason="beans returned")
    refunded = refund.sync_detailed("ord-1001", client=merchant, body=body)
    assert refunded.status_code == 201 and isinstance(refunded.parsed, m.RefundOutcome)
    assert refunded.parsed.points_clawed_back == 141 and refunded.parsed.duplicate is False
    again = refund.sync_detailed("ord-1001", client=merchant, body=body)
    assert again.status_code == 200 and again.parsed.duplicate is True
    assert again.parsed.transaction_id == refunded.parsed.transaction_id

    adjust = _api(client_package, "customers", "customers_adjust")
    adjustment = m.AdjustmentRequest(points=100, reason_code=m.AdjustmentReasonCode.GOODWILL,
                                     reason="late delivery", idempotency_key="adj-2026-11-23-1")
    refused = adjust.sync_detailed("alice-42", client=merchant, body=adjustment)
    assert refused.status_code == 403 and isinstance(refused.parsed, Problem)
    adjusted = adjust.sync_detailed("alice-42", client=admin, body=adjustment)
    assert adjusted.status_code == 201 and isinstance(adjusted.parsed, m.AdjustmentOutcome)
    assert adjusted.parsed.balance_after == 333 - 141 + 100

    corrections = ledger.sync("alice-42", client=merchant,
                              entry_type=[m.EntryType.REVERSAL, m.EntryType.ADJUST])
    assert [(e.entry_type, e.signed_amount) for e in corrections.items] == [
        (m.EntryType.ADJUST, 100), (m.EntryType.REVERSAL, -141)]


def test_the_python_client_reads_a_429_as_a_problem(client_package: ModuleType, live: LocalPlatform) -> None:
    """A tenant-admin sets a tiny per-key quota on the tenant (PATCH /v1/tenant); the merchant's key then
    gets a 429 within a few calls, which the generated client reads as a typed Problem (``rate-limited``)
    with Retry-After and the RateLimit headers the document declares. The default quota is restored after."""
    m = _models(client_package)
    admin = {"Authorization": f"Bearer {live.keys['tenant-admin']}"}
    window = 2
    tiny = {"rateLimits": {"perKey": 3, "perTenant": 1000, "windowSeconds": window}}
    assert httpx.patch(live.url + "/v1/tenant", json=tiny, headers=admin, timeout=15).status_code == 200
    try:
        merchant = client_package.AuthenticatedClient(base_url=live.url, token=live.keys["merchant"], timeout=15)
        balance_op = _api(client_package, "customers", "customers_balance")
        # Bounded: 20 quick calls put more than 3 in one window even if a window ends mid-burst.
        answer = None
        for _ in range(20):
            answer = balance_op.sync_detailed("nobody", client=merchant)
            if answer.status_code == 429:
                break
    finally:
        time.sleep(window + 0.2)  # a fresh window, so the admin's key has its quota for the restore
        defaults = {"rateLimits": RateLimits().model_dump(by_alias=True)}
        restored = httpx.patch(live.url + "/v1/tenant", json=defaults, headers=admin, timeout=15)
        assert restored.status_code == 200, restored.text
    assert answer is not None and answer.status_code == 429, answer and answer.content
    assert isinstance(answer.parsed, m.Problem) and answer.parsed.status == 429
    assert answer.parsed.type_.endswith("/rate-limited")
    assert 0 <= int(answer.headers["retry-after"]) <= window
    assert ";r=0;" in answer.headers["ratelimit"] and ";q=3;" in answer.headers["ratelimit-policy"] + ";"


@pytest.mark.skipif(not (NODE_BIN / "tsc").exists(), reason="npm ci --prefix tests/clients (make test does it)")
def test_typescript_types_generated_from_the_document_type_check(tmp_path: Path) -> None:
    for name in ("usage.ts", "tsconfig.json"):
        shutil.copy(CLIENTS / name, tmp_path / name)
    generated = subprocess.run([str(NODE_BIN / "openapi-typescript"), str(ROOT / "docs" / "openapi-v1.json"),
                                "-o", str(tmp_path / "accrue.ts")],
                               capture_output=True, text=True, timeout=120, check=False)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    checked = subprocess.run([str(NODE_BIN / "tsc"), "-p", str(tmp_path / "tsconfig.json")],
                             capture_output=True, text=True, timeout=180, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
