"""The Functions app as the host sees it, and its triggers calling the shared handlers.

No Functions host runs here (Core Tools cannot be installed), so the tests do
what the Python worker does when it indexes ``function_app.py``: list the
functions, read their bindings and retry settings, check that binding names
and Python parameters match one to one (the worker refuses a function whose
names differ), and check each trigger parameter's annotation against the
``azure.functions`` converter registered for the binding type. Then they call
the user functions with the SDK's own input objects (``func.EventHubEvent``,
``func.DocumentList``, ``func.TimerRequest``, ``func.HttpRequest``) over a
platform on SQLite.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
import typing
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest  # the concrete class the worker builds

from functions import bindings
from shared.ledger.entries import order_record_id
from shared.app.messages import order_message
from shared.domain.orders import Order
from shared.errors import StoreUnavailable
from shared.jobs import JOBS
from shared.platform import Platform
from shared.settings import BY_NAME as SETTINGS_BY_NAME
from shared.store.layout import BALANCES, LEDGER
from tests.conftest import claimed, drain, order_body

ROOT = Path(__file__).resolve().parents[3]
TRIGGER_TYPES = {"eventHubTrigger", "cosmosDBTrigger", "timerTrigger", "httpTrigger", "warmupTrigger"}


# --- helpers ---------------------------------------------------------------------------


def trigger_dict(function: Any) -> dict[str, Any]:
    return function.get_trigger().get_dict_repr()


def raw_bindings(function: Any) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in function.get_raw_bindings()]


def order_event(platform: Platform, customer: str, order_id: str, amount: str = "10.00") -> func.EventHubEvent:
    """An Event Hub event of an order the API claimed (ingestion credits claimed orders only)."""
    order = Order.model_validate(order_body(customer, order_id, amount))
    body = claimed(platform, order_message("acme", order, datetime(2026, 11, 1, 11, 0, tzinfo=timezone.utc)).to_body())
    return func.EventHubEvent(body=json.dumps(body).encode("utf-8"))


def user_function(app_functions: dict[str, Any], name: str) -> Any:
    return app_functions[name].get_user_function()


def ledger_docs(platform: Platform) -> list[dict[str, Any]]:
    return [change.doc for change in platform.store.changes(LEDGER, 0, 1000)]  # type: ignore[attr-defined]


def no_backoff(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    import sys

    from functions._resilience import InProcessRetry

    for module in modules:
        monkeypatch.setattr(sys.modules[module], "RETRY", InProcessRetry(attempts=3, backoff_seconds=(0.0,)))


# --- what the host indexes -------------------------------------------------------------


def test_the_app_is_the_only_function_app_and_lists_every_function(app_module: ModuleType,
                                                                  app_functions: dict[str, Any]) -> None:
    # The worker refuses a script with more than one top-level app object.
    registers = [v for v in vars(app_module).values() if isinstance(v, func.FunctionRegister)]
    assert registers == [app_module.app]
    assert isinstance(app_module.app, func.AsgiFunctionApp)
    expected = {bindings.HTTP_FUNCTION, bindings.INGEST_FUNCTION, bindings.PROJECTION_FUNCTION, "warmup",
                *(bindings.TIMER_FUNCTION_PREFIX + job.name for job in JOBS)}
    assert set(app_functions) == expected


def test_binding_names_and_python_parameters_match_one_to_one(app_functions: dict[str, Any]) -> None:
    for name, function in app_functions.items():
        user = function.get_user_function()
        params = dict(inspect.signature(user).parameters)
        hints = typing.get_type_hints(user)
        # The worker passes ``context`` itself when it is annotated func.Context (or not at all).
        if "context" in params and "context" not in {b.name for b in function.get_bindings()}:
            assert hints.get("context", func.Context) is func.Context
            del params["context"]
        in_bindings = {b.name for b in function.get_bindings() if b.name != "$return"}
        assert in_bindings == set(params), f"{name}: bindings {in_bindings} vs parameters {set(params)}"
        assert [b.name for b in function.get_bindings() if b.get_dict_repr()["type"] in TRIGGER_TYPES]


def test_every_trigger_parameter_is_annotated_with_a_type_its_converter_accepts(app_functions: dict[str, Any]) -> None:
    registry = func.get_binding_registry()
    for name, function in app_functions.items():
        trigger = function.get_trigger()
        hints = typing.get_type_hints(function.get_user_function())
        converter = registry.get(trigger.get_dict_repr()["type"])
        assert converter is not None, name
        assert trigger.name in hints, f"{name}: trigger parameter {trigger.name} has no annotation"
        assert converter.check_input_type_annotation(hints[trigger.name]), \
            f"{name}: {hints[trigger.name]!r} is not what {trigger.get_dict_repr()['type']} delivers"


def test_ingest_is_an_event_hub_trigger_of_batches_from_app_settings(app_functions: dict[str, Any]) -> None:
    trigger = trigger_dict(app_functions[bindings.INGEST_FUNCTION])
    assert trigger["type"] == "eventHubTrigger"
    assert str(trigger["cardinality"]).lower() == "many"
    assert str(trigger["dataType"]).lower() == "binary"
    assert trigger["eventHubName"] == "%EVENTHUB_NAME%"
    assert trigger["consumerGroup"] == "%EVENTHUB_CONSUMER_GROUP%"
    assert trigger["connection"] == "EventHubConnection"
    # What the host receives is JSON; the enum values must serialise to the host's spelling.
    [raw] = raw_bindings(app_functions[bindings.INGEST_FUNCTION])
    assert raw["cardinality"] == "MANY" and raw["direction"] == "IN"


def test_projections_is_a_change_feed_trigger_on_the_ledger(app_functions: dict[str, Any]) -> None:
    trigger = trigger_dict(app_functions[bindings.PROJECTION_FUNCTION])
    assert trigger["type"] == "cosmosDBTrigger"
    assert trigger["databaseName"] == "%COSMOS_DATABASE%"
    assert trigger["containerName"] == "ledger"
    assert trigger["leaseContainerName"] == "leases"
    assert trigger["createLeaseContainerIfNotExists"] is False
    assert trigger["connection"] == "CosmosDbConnection"
    # The v4 extension's names; the v3 ones (collectionName, connectionStringSetting) would be ignored.
    assert "collectionName" not in trigger and "connectionStringSetting" not in trigger


def test_one_timer_per_job_on_its_schedule_never_on_startup(app_functions: dict[str, Any]) -> None:
    for job in JOBS:
        trigger = trigger_dict(app_functions[bindings.TIMER_FUNCTION_PREFIX + job.name])
        assert trigger["type"] == "timerTrigger"
        assert trigger["schedule"] == job.schedule
        assert len(job.schedule.split()) == 6  # NCRONTAB with seconds
        assert trigger["runOnStartup"] is False


def test_the_api_is_one_anonymous_catch_all_http_function(app_functions: dict[str, Any]) -> None:
    function = app_functions[bindings.HTTP_FUNCTION]
    trigger = trigger_dict(function)
    assert trigger["type"] == "httpTrigger"
    assert str(trigger["authLevel"]).upper().endswith("ANONYMOUS")
    assert trigger["route"] == "/{*route}"
    assert function.http_type == "asgi"


def test_both_batch_triggers_carry_a_host_retry_policy_the_worker_can_parse(app_functions: dict[str, Any]) -> None:
    for name in (bindings.INGEST_FUNCTION, bindings.PROJECTION_FUNCTION):
        retry = app_functions[name].get_settings_dict("retry_policy")
        assert retry is not None, name
        assert retry["strategy"] == "exponential_backoff"
        assert int(retry["max_retry_count"]) == -1  # unbounded: giving up would drop the batch
        # The worker parses intervals with this exact format.
        low = time.strptime(retry["minimum_interval"], "%H:%M:%S")
        high = time.strptime(retry["maximum_interval"], "%H:%M:%S")
        assert low < high


def test_binding_facts_name_settings_the_code_declares(app_functions: dict[str, Any]) -> None:
    for fact in bindings.BINDING_FACTS:
        trigger = trigger_dict(app_functions[fact.function])
        assert trigger["type"] == fact.trigger_type
        assert trigger["connection"] == fact.connection
        for setting in (*fact.connection_settings, *fact.resolved_settings):
            assert setting in SETTINGS_BY_NAME, f"{setting} is not in shared.settings.SETTINGS"
        for setting in fact.connection_settings:
            assert setting.startswith(fact.connection + "__")
            assert SETTINGS_BY_NAME[setting].host_binding
        for setting in fact.resolved_settings:
            assert f"%{setting}%" in trigger.values()
        if fact.container:
            assert trigger["containerName"] == fact.container
            assert trigger["leaseContainerName"] == fact.lease_container
    assert set(bindings.HOST_SETTINGS) >= {"EventHubConnection__fullyQualifiedNamespace",
                                           "CosmosDbConnection__accountEndpoint", "EVENTHUB_NAME",
                                           "EVENTHUB_CONSUMER_GROUP", "COSMOS_DATABASE"}


def test_host_json_bundle_routes_and_batches() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}
    # The ASGI app owns the paths (/v1/orders, /health): no "/api" prefix in front.
    assert host["extensions"]["http"]["routePrefix"] == ""
    assert host["extensions"]["eventHubs"]["maxEventBatchSize"] == 500
    assert host["extensions"]["eventHubs"]["prefetchCount"] >= host["extensions"]["eventHubs"]["maxEventBatchSize"]
    assert "functionTimeout" in host


def test_funcignore_keeps_the_runtime_and_drops_the_tests() -> None:
    ignored = {line.strip() for line in (ROOT / ".funcignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert "tests" in ignored and "local.settings.json" in ignored
    assert not ignored & {"shared", "functions", "grammar", "function_app.py", "host.json", "requirements.txt"}


# --- what the triggers do ----------------------------------------------------------------


def test_event_hub_batch_lands_in_the_ledger(app_functions: dict[str, Any], worker_platform: Platform) -> None:
    ingest = user_function(app_functions, bindings.INGEST_FUNCTION)
    ingest(events=[order_event(worker_platform, "c1", "o1", "10.00"), order_event(worker_platform, "c2", "o2", "5.00"), order_event(worker_platform, "c1", "o3")])

    assert worker_platform.ledger.head("acme", "c1").balance == 200
    assert worker_platform.ledger.head("acme", "c2").balance == 50
    assert worker_platform.ledger.record("acme", "c1", order_record_id("o1"))["status"] == "credited"
    assert worker_platform.poison.list_all() == []

    # At-least-once delivery: the same batch again changes nothing.
    ingest(events=[order_event(worker_platform, "c1", "o1", "10.00")])
    assert worker_platform.ledger.head("acme", "c1").balance == 200


def test_change_feed_documents_move_the_balance(app_functions: dict[str, Any], worker_platform: Platform) -> None:
    user_function(app_functions, bindings.INGEST_FUNCTION)(events=[order_event(worker_platform, "c1", "o1", "7.00")])
    changes = func.DocumentList([func.Document.from_dict(doc) for doc in ledger_docs(worker_platform)])

    user_function(app_functions, bindings.PROJECTION_FUNCTION)(changes=changes)

    balance = worker_platform.store.read(BALANCES, "acme:c1", "balance")
    assert balance is not None and balance["available"] == 70
    status = worker_platform.intake.status("acme", "o1")
    assert status["status"] == "credited" and status["points"] == 70


def test_a_body_that_is_not_json_is_kept_in_the_poison_store(app_functions: dict[str, Any],
                                                            worker_platform: Platform) -> None:
    user_function(app_functions, bindings.INGEST_FUNCTION)(
        events=[func.EventHubEvent(body=b"not json"), func.EventHubEvent(body=b"\xff\xfe"), order_event(worker_platform, "c1", "o1")])

    poisoned = worker_platform.poison.list_all()
    assert sorted(repr(p["body"]) for p in poisoned) == sorted(["'not json'", "{'undecodableBodyBase64': '//4='}"])
    assert all(p["source"] == "ingest" and "malformed" in p["reason"] for p in poisoned)
    assert worker_platform.ledger.head("acme", "c1").balance == 100


def test_a_failing_batch_is_poisoned_whole_and_replayed_after_the_fix(
        app_functions: dict[str, Any], worker_platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.app.replay import replay_poison

    no_backoff(monkeypatch, "functions.ingest")
    calls: list[int] = []

    def broken(bodies: Any) -> None:
        calls.append(len(bodies))
        raise RuntimeError("rule engine bug")

    monkeypatch.setattr(worker_platform.ingest, "handle", broken)
    user_function(app_functions, bindings.INGEST_FUNCTION)(events=[order_event(worker_platform, "c1", "o1"), order_event(worker_platform, "c2", "o2")])

    assert calls == [2, 2, 2, 1, 1]  # three tries of the batch, then each message alone
    poisoned = worker_platform.poison.list_all()
    assert sorted(p["body"]["order"]["orderId"] for p in poisoned) == ["o1", "o2"]
    assert all("RuntimeError: rule engine bug" in p["reason"] and p["pk"] == "acme" for p in poisoned)
    assert worker_platform.ledger.head("acme", "c1").balance == 0

    monkeypatch.undo()  # the fix is deployed
    report = replay_poison(worker_platform.poison, worker_platform.bus, worker_platform.projector)
    assert len(report.republished) == 2 and not report.failed and not report.skipped
    assert worker_platform.poison.list_all() == []
    drain(worker_platform)
    assert worker_platform.ledger.head("acme", "c1").balance == 100
    assert worker_platform.ledger.head("acme", "c2").balance == 100


def test_one_bad_message_is_isolated_and_its_customers_later_orders_wait_with_it(
        app_functions: dict[str, Any], worker_platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.app.replay import replay_poison

    no_backoff(monkeypatch, "functions.ingest")
    real = worker_platform.ingest.handle
    tried: list[str] = []

    def fails_on_o2(bodies: Any) -> Any:
        ids = [b["order"]["orderId"] for b in bodies]
        if len(bodies) == 1:
            tried.append(ids[0])
        if "o2" in ids:
            raise KeyError("o2 breaks the handler")
        return real(bodies)

    monkeypatch.setattr(worker_platform.ingest, "handle", fails_on_o2)
    user_function(app_functions, bindings.INGEST_FUNCTION)(events=[
        order_event(worker_platform, "c1", "o1"), order_event(worker_platform, "c1", "o2"), order_event(worker_platform, "c2", "o3"), order_event(worker_platform, "c1", "o4")])

    assert tried == ["o1", "o2", "o3"]  # o4 is not tried: it must not overtake o2 of the same customer
    assert worker_platform.ledger.head("acme", "c1").balance == 100  # o1 only
    assert worker_platform.ledger.head("acme", "c2").balance == 100  # o3
    poisoned = {p["body"]["order"]["orderId"]: p["reason"] for p in worker_platform.poison.list_all()}
    assert set(poisoned) == {"o2", "o4"}
    assert "KeyError" in poisoned["o2"] and "not attempted" in poisoned["o4"]

    monkeypatch.undo()
    replay_poison(worker_platform.poison, worker_platform.bus, worker_platform.projector)
    drain(worker_platform)
    assert worker_platform.ledger.head("acme", "c1").balance == 300
    assert worker_platform.ledger.head("acme", "c1").orders_credited == 3


def test_a_store_outage_is_handed_back_to_the_host_not_poisoned(
        app_functions: dict[str, Any], worker_platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    from functions._resilience import BatchDeferred

    no_backoff(monkeypatch, "functions.ingest")
    calls: list[int] = []

    def down(bodies: Any) -> None:
        calls.append(len(bodies))
        raise StoreUnavailable("Cosmos DB 503")

    monkeypatch.setattr(worker_platform.ingest, "handle", down)
    with pytest.raises(BatchDeferred) as caught:
        user_function(app_functions, bindings.INGEST_FUNCTION)(events=[order_event(worker_platform, "c1", "o1")])
    assert isinstance(caught.value.__cause__, StoreUnavailable)
    assert calls == [1, 1, 1]
    monkeypatch.undo()
    assert worker_platform.poison.list_all() == []


def test_when_even_the_poison_write_fails_the_invocation_fails(
        app_functions: dict[str, Any], worker_platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    from functions._resilience import PoisonWriteFailed

    no_backoff(monkeypatch, "functions.ingest")

    def broken(bodies: Any) -> None:
        raise RuntimeError("bug")

    def poison_down(*args: Any, **kwargs: Any) -> str:
        raise StoreUnavailable("poison container unreachable")

    monkeypatch.setattr(worker_platform.ingest, "handle", broken)
    monkeypatch.setattr(worker_platform.poison, "put", poison_down)
    with pytest.raises(PoisonWriteFailed):
        user_function(app_functions, bindings.INGEST_FUNCTION)(events=[order_event(worker_platform, "c1", "o1")])


def test_a_failing_projection_is_poisoned_and_replayed_into_the_balance(
        app_functions: dict[str, Any], worker_platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.app.replay import replay_poison

    no_backoff(monkeypatch, "functions.projections")
    user_function(app_functions, bindings.INGEST_FUNCTION)(events=[order_event(worker_platform, "c1", "o1")])
    docs = ledger_docs(worker_platform)

    def broken(changes: Any) -> None:
        raise ValueError("projector bug")

    monkeypatch.setattr(worker_platform.projector, "apply", broken)
    user_function(app_functions, bindings.PROJECTION_FUNCTION)(
        changes=func.DocumentList([func.Document.from_dict(d) for d in docs]))

    poisoned = worker_platform.poison.list("acme")
    assert len(poisoned) == len(docs)
    assert {p["source"] for p in poisoned} == {"projection"}
    assert sorted(p["body"]["id"] for p in poisoned) == sorted(d["id"] for d in docs)
    assert worker_platform.store.read(BALANCES, "acme:c1", "balance") is None

    monkeypatch.undo()
    report = replay_poison(worker_platform.poison, worker_platform.bus, worker_platform.projector)
    assert len(report.reprojected) == len(docs)
    assert worker_platform.poison.list_all() == []
    assert worker_platform.store.read(BALANCES, "acme:c1", "balance")["available"] == 100


def test_timer_runs_its_job_on_the_platform(app_functions: dict[str, Any], worker_platform: Platform,
                                            caplog: pytest.LogCaptureFixture) -> None:
    user_function(app_functions, bindings.INGEST_FUNCTION)(events=[order_event(worker_platform, "c1", "o1")])
    changes = func.DocumentList([func.Document.from_dict(d) for d in ledger_docs(worker_platform)])
    user_function(app_functions, bindings.PROJECTION_FUNCTION)(changes=changes)

    with caplog.at_level("INFO", logger="accrue.jobs"):
        # The nightly timer only enqueues (a work item per tenant); the work-items timer runs them.
        user_function(app_functions, "timer_reconcile")(timer=TimerRequest(past_due=True))
        assert not any("reconciled" in r.getMessage() for r in caplog.records)
        user_function(app_functions, "timer_work-items")(timer=TimerRequest(past_due=False))
    assert any("reconciled 1 customers" in r.getMessage() and "0 drift" in r.getMessage() for r in caplog.records)


def test_the_timer_table_is_the_job_list_and_indexing_imports_nothing_of_shared() -> None:
    import subprocess
    import sys

    from functions import timers

    assert timers.SCHEDULES == tuple((job.name, job.schedule) for job in JOBS)
    assert timers.TIMER_FUNCTION_PREFIX == bindings.TIMER_FUNCTION_PREFIX
    probe = "import sys, functions.timers; print(sorted(m for m in sys.modules if m.startswith('shared')))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_http_function_serves_the_api_built_on_first_request(app_functions: dict[str, Any],
                                                                 worker_platform: Platform) -> None:
    http = user_function(app_functions, bindings.HTTP_FUNCTION)
    request = func.HttpRequest(method="GET", url="http://accrue.test/health", headers={}, body=b"")
    response = asyncio.run(http(request, None))  # the ASGI middleware does not need the invocation context

    assert response.status_code == 200
    assert json.loads(response.get_body()) == {"status": "ok", "region": "local", "store": "sqlite", "bus": "local"}


def test_a_poisoned_message_is_kept_once_however_often_its_batch_runs(app_functions, worker_platform,
                                                                      monkeypatch) -> None:
    """A batch re-runs after a transient failure (in process, on the host's retries, on Event
    Hubs' redelivery after a recycle); an outside review found every re-run kept another copy of
    the batch's bad message in the poison store (random ids), without bound while Cosmos DB
    throttled. The item's id is now the message's own digest."""
    no_backoff(monkeypatch, "functions.ingest")
    ledger = worker_platform.ledger
    real_append = ledger.append
    failures = {"left": 2}

    def throttled_twice(requests):  # type: ignore[no-untyped-def]
        if failures["left"]:
            failures["left"] -= 1
            raise StoreUnavailable("Cosmos DB is unavailable (429)")
        return real_append(requests)

    monkeypatch.setattr(ledger, "append", throttled_twice)
    ingest = user_function(app_functions, bindings.INGEST_FUNCTION)
    for _ in range(2):  # the batch, then Event Hubs delivering it again
        ingest(events=[func.EventHubEvent(body=b"not json"), order_event(worker_platform, "c1", "o1")])
    [kept] = worker_platform.poison.list_all()
    assert kept["source"] == "ingest" and "malformed" in kept["reason"]
    assert ledger.head("acme", "c1").balance == 100


def test_an_unexpected_error_answers_the_api_problem_through_the_function(app_functions: dict[str, Any],
                                                                         worker_platform: Platform) -> None:
    """Starlette sends the API's 500 problem and raises again; the Functions worker let that out
    of the function and the host answered its own 500 (an outside review). An app that raises
    before answering gets the same problem from the function."""
    from functions._platform import lazy_api

    http = user_function(app_functions, bindings.HTTP_FUNCTION)

    def get(path: str) -> func.HttpResponse:
        return asyncio.run(http(func.HttpRequest(method="GET", url=f"http://accrue.test{path}", headers={},
                                                 body=b""), None))

    assert get("/health").status_code == 200  # builds the API
    api = lazy_api()._app.peek()  # noqa: SLF001

    async def boom() -> None:
        raise RuntimeError("SECRET-connection-detail at /srv/app.py line 7")

    api.add_api_route("/boom", boom, methods=["GET"])
    answer = get("/boom")
    assert answer.status_code == 500 and answer.headers["content-type"] == "application/problem+json"
    assert json.loads(answer.get_body())["type"].endswith("internal-error")
    assert "SECRET" not in answer.get_body().decode()

    async def raises_at_once(scope, receive, send):  # type: ignore[no-untyped-def]
        raise RuntimeError("SECRET before any answer")

    lazy_api()._app._value = raises_at_once  # noqa: SLF001
    try:
        answer = get("/anything")
    finally:
        lazy_api()._app._value = api  # noqa: SLF001
    assert answer.status_code == 500 and json.loads(answer.get_body())["type"].endswith("internal-error")
    assert "SECRET" not in answer.get_body().decode()
