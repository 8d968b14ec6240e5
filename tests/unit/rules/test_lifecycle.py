"""The rule set lifecycle over the embedded store: drafts, validation, immutable
versions, activation, rollback, diff, simulation, A/B experiments, and the
provider ingestion uses."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from shared.clock import ManualClock
from shared.earning import PointsPerCurrencyUnitRate
from shared.errors import Conflict, ImmutableDocument, NotFound, ValidationFailed
from shared.rules import models
from shared.rules.errors import RuleTypeError
from shared.rules.experiments import assign
from shared.rules.lifecycle import RoutingChanged, RuleSetService
from shared.rules.provider import RuleSetProvider
from shared.store.layout import CONTAINERS, RULE_VERSIONS
from shared.store.sqlite import SqliteDocumentStore

from .helpers import TENANT, customer, order

V1 = 'rule "base" then earn floor(order.total) points'
V2 = 'rule "base" then earn floor(order.total * 2) points'
REASON = models.Reason(code="campaign", text="spring campaign")


@pytest.fixture
def store(tmp_path):
    store = SqliteDocumentStore(tmp_path / "rules.db", CONTAINERS, synchronous="NORMAL")
    yield store
    store.close()


@pytest.fixture
def clock():
    return ManualClock(datetime(2026, 3, 1, tzinfo=timezone.utc))


@pytest.fixture
def service(store, clock):
    return RuleSetService(store, clock)


def save(service, source, reason=REASON, rule_set_id="main"):
    return service.save_version("t1", models.SaveVersionInput(rule_set_id=rule_set_id, source=source, reason=reason),
                                actor="key-admin")


def activate(service, version, rule_set_id="main"):
    return service.activate("t1", models.ActivateInput(
        target=models.VersionRef(rule_set_id=rule_set_id, version=version), reason=REASON), actor="key-admin")


def test_validate_reports_without_saving(service, store):
    report = service.validate('rule "a" when order.totl > 1 then earn 1 points')
    assert not report.ok and report.kind == "rule-type-error"
    assert report.diagnostics[0].hint == "did you mean order.total?"
    assert service.list_versions("t1", "main") == []
    ok = service.validate(V1)
    assert ok.ok and ok.cost == ok.cost_per_rule["base"] and ok.budget == 10_000


def test_versions_are_numbered_immutable_and_carry_author_time_and_reason(service, store, clock):
    first = save(service, V1)
    clock.advance(timedelta(minutes=5))
    second = save(service, V2, models.Reason(code="correction", text="double points"))
    assert (first.version, second.version) == (1, 2)
    assert second.author == "key-admin" and second.reason.code == "correction"
    assert second.created_at == clock.now()
    assert [v.version for v in service.list_versions("t1", "main")] == [2, 1]
    assert service.get_version("t1", "main", 1).source == V1
    doc = store.read(RULE_VERSIONS, "t1", "version:main:000001")
    with pytest.raises(ImmutableDocument):
        store.upsert(RULE_VERSIONS, {**{k: v for k, v in doc.items() if not k.startswith("_")}, "body": {}})


def test_invalid_source_is_not_saved(service):
    with pytest.raises(RuleTypeError):
        save(service, 'rule "a" then earn order.channel points')
    assert service.list_versions("t1", "main") == []


def test_reason_is_mandatory():
    with pytest.raises(ValueError):
        models.SaveVersionInput.model_validate({"ruleSetId": "main", "source": V1})
    with pytest.raises(ValueError):
        models.Reason(code="campaign", text="")


def test_drafts_save_and_diff(service):
    draft = service.create_draft("t1", models.DraftInput(rule_set_id="main", source=V1), actor="key-a")
    service.update_draft("t1", draft.draft_id, V2, actor="key-b")
    saved = service.save_version("t1", models.SaveVersionInput(rule_set_id="main", draft_id=draft.draft_id,
                                                               reason=REASON), actor="key-b")
    assert service.get_version("t1", "main", saved.version).source == V2
    save(service, V1)
    diff = service.diff("t1", "main", 1, 2).diff
    assert "-rule \"base\" then earn floor(order.total * 2) points" in diff
    assert "+rule \"base\" then earn floor(order.total) points" in diff


def test_activate_rollback_and_provider(service, clock):
    provider = RuleSetProvider(service, ttl_seconds=0)
    assert isinstance(provider.for_tenant(TENANT, "c1"), PointsPerCurrencyUnitRate)
    save(service, V1)
    save(service, V2)
    activate(service, 2)
    result = provider.for_tenant(TENANT, "c1").evaluate(TENANT, order("10.00"), customer())
    assert (result.points, result.rule_set_id, result.rule_set_version, result.arm) == (20, "main", 2, None)
    with pytest.raises(ValidationFailed):
        service.rollback("t1", models.ActivateInput(target=models.VersionRef(rule_set_id="main", version=3),
                                                    reason=REASON), actor="k")
    clock.advance(timedelta(seconds=1))
    service.rollback("t1", models.ActivateInput(target=models.VersionRef(rule_set_id="main", version=1),
                                                reason=models.Reason(code="rollback", text="bad campaign")),
                     actor="key-ops")
    assert provider.for_tenant(TENANT, "c1").evaluate(TENANT, order("10.00"), customer()).points == 10
    log = service.activations("t1")
    assert [(a.version, a.reason.code) for a in log] == [(1, "rollback"), (2, "campaign")]
    assert log[0].previous_version == models.VersionRef(rule_set_id="main", version=2)
    with pytest.raises(NotFound):
        activate(service, 9)


def test_registry_compiles_each_version_once(service):
    save(service, V1)
    activate(service, 1)
    provider = RuleSetProvider(service, ttl_seconds=60)
    for n in range(20):
        provider.for_tenant(TENANT, f"c{n}").evaluate(TENANT, order(), customer())
    assert service.registry.compilations == 1


def test_simulation_writes_nothing(service, store):
    save(service, V1)
    before = store.query(RULE_VERSIONS, __import__("shared.store.port", fromlist=["Query"]).Query(pk="t1"))
    cases = (models.SimulationCase(order=order("12.50"), customer=models.SimulationCustomer(
        customer_id="c1", join_date=date(2025, 1, 1))),)
    by_source = service.simulate(TENANT, models.SimulationInput(source=V2, cases=cases))
    by_version = service.simulate(TENANT, models.SimulationInput(
        version=models.VersionRef(rule_set_id="main", version=1), cases=cases, evaluator="wasm"))
    assert (by_source.total_points, by_version.total_points) == (25, 12)
    assert by_source.orders[0].trace[0]["status"] == "applied"
    after = store.query(RULE_VERSIONS, __import__("shared.store.port", fromlist=["Query"]).Query(pk="t1"))
    assert before == after


def test_ab_experiment_assigns_deterministically_and_promotes(service):
    save(service, V1)
    save(service, V2)
    activate(service, 1)
    experiment = service.start_experiment("t1", models.ExperimentInput(
        name="double", control=models.VersionRef(rule_set_id="main", version=1),
        treatment=models.VersionRef(rule_set_id="main", version=2), treatment_share=Decimal("0.3"),
        reason=REASON), actor="key-admin")
    provider = RuleSetProvider(service, ttl_seconds=60)
    arms = {}
    for n in range(200):
        result = provider.for_tenant(TENANT, f"c{n}").evaluate(TENANT, order("10.00"), customer())
        arms[f"c{n}"] = result.arm
        assert result.points == (20 if result.arm == "B" else 10)
        assert result.rule_set_version == (2 if result.arm == "B" else 1)
    # Same customer, same arm, in another process (a fresh provider).
    again = RuleSetProvider(service, ttl_seconds=0)
    assert all(again.for_tenant(TENANT, c).evaluate(TENANT, order(), customer()).arm == a for c, a in arms.items())
    with pytest.raises(Conflict):
        activate(service, 2)
    service.promote("t1", experiment.experiment_id, "B", REASON, actor="key-admin")
    provider.invalidate()
    result = provider.for_tenant(TENANT, "c1").evaluate(TENANT, order("10.00"), customer())
    assert (result.arm, result.rule_set_version) == (None, 2)
    assert service.get_experiment("t1", experiment.experiment_id).status == "promoted"


def test_stopping_an_experiment_returns_everyone_to_the_active_version(service):
    save(service, V1)
    save(service, V2)
    activate(service, 1)
    experiment = service.start_experiment("t1", models.ExperimentInput(
        name="x", control=models.VersionRef(rule_set_id="main", version=1),
        treatment=models.VersionRef(rule_set_id="main", version=2), treatment_share=Decimal("1"),
        reason=REASON), actor="k")
    provider = RuleSetProvider(service, ttl_seconds=0)
    assert provider.for_tenant(TENANT, "c1").evaluate(TENANT, order(), customer()).arm == "B"
    service.stop_experiment("t1", experiment.experiment_id, actor="k")
    result = provider.for_tenant(TENANT, "c1").evaluate(TENANT, order(), customer())
    assert (result.arm, result.rule_set_version) == (None, 1)
    with pytest.raises(Conflict):
        service.stop_experiment("t1", experiment.experiment_id, actor="k")


def _start(service, name="x"):
    return service.start_experiment("t1", models.ExperimentInput(
        name=name, control=models.VersionRef(rule_set_id="main", version=1),
        treatment=models.VersionRef(rule_set_id="main", version=2), treatment_share=Decimal("0.5"),
        reason=REASON), actor="k")


def _experiment_records(store):
    from shared.store.layout import RULESETS
    from shared.store.port import Query
    return [d for d in store.query(RULESETS, Query(pk="t1")) if d.get("docType") == "ruleset-experiment"]


def test_a_start_that_loses_the_routing_race_leaves_no_record(service, store, monkeypatch):
    save(service, V1)
    save(service, V2)
    activate(service, 1)

    def lost(*args, **kwargs):
        raise RoutingChanged("another start won")
    monkeypatch.setattr(service, "_write_routing", lost)
    with pytest.raises(Conflict):
        _start(service)
    assert _experiment_records(store) == []


def test_a_start_that_died_after_its_claim_reads_and_ends_from_the_claim(service, store):
    from shared.store.layout import RULESETS
    save(service, V1)
    save(service, V2)
    activate(service, 1)
    experiment = _start(service)
    store.delete(RULESETS, "t1", f"experiment:{experiment.experiment_id}")    # the crash: claim, no record
    assert service.get_experiment("t1", experiment.experiment_id) == experiment
    assert service.active("t1").experiment == experiment
    assert service.stop_experiment("t1", experiment.experiment_id, actor="k").status == "stopped"
    assert [d["body"]["status"] for d in _experiment_records(store)] == ["stopped"]
    assert service.active("t1").experiment is None


def test_a_rollback_that_lost_its_race_to_an_earlier_one_never_goes_forward(service, store, clock, monkeypatch):
    """Active 3; a rollback to 2 loses its routing write to a rollback to 1: on its retry 2 is
    later than what is active, so it is refused instead of activating 2 (the check used to be
    made once, before the retries)."""
    for source in (V1, V2, V1):
        save(service, source)
    activate(service, 3)
    other = RuleSetService(store, clock)
    real = RuleSetService._write_routing
    raced = []

    def lose_once(self, *args, **kwargs):
        if not raced:
            raced.append(self)  # the other rollback's own write goes through
            other.rollback("t1", models.ActivateInput(target=models.VersionRef(rule_set_id="main", version=1),
                                                      reason=REASON), actor="other")
            raise RoutingChanged("the other rollback won")
        return real(self, *args, **kwargs)
    monkeypatch.setattr(RuleSetService, "_write_routing", lose_once)
    with pytest.raises(ValidationFailed):
        service.rollback("t1", models.ActivateInput(target=models.VersionRef(rule_set_id="main", version=2),
                                                    reason=REASON), actor="k")
    assert service.active("t1").version == 1


@pytest.mark.parametrize("end", ["stop", "promote"])
def test_a_crash_at_any_write_of_an_ending_leaves_record_and_routing_agreeing(tmp_path, clock, end) -> None:
    """Ending an experiment writes its record and the routing ingestion reads: at every crash
    point the record says "running" exactly when the routing still splits orders, and the
    retry ends it (before stop 30 a crash between the two left a "stopped" record while
    orders were still split, until someone retried)."""
    from tests.conftest import Died, StoreThatDies

    for at in range(10):
        store = SqliteDocumentStore(tmp_path / f"end-{end}-{at}.db", CONTAINERS, synchronous="NORMAL")
        try:
            service = RuleSetService(store, clock)
            save(service, V1)
            save(service, V2)
            activate(service, 1)
            experiment_id = _start(service).experiment_id
            dying = RuleSetService(StoreThatDies(store, at), clock)  # type: ignore[arg-type]
            ending = {"stop": lambda s: s.stop_experiment("t1", experiment_id, actor="k"),
                      "promote": lambda s: s.promote("t1", experiment_id, "B", REASON, actor="k")}[end]
            try:
                ending(dying)
                finished = True
            except Died:
                finished = False
            running = service.active("t1").experiment is not None
            [record] = _experiment_records(store)
            assert (record["body"]["status"] == "running") == running
            if running:
                ending(service)  # the retry
            assert service.active("t1").experiment is None
            assert service.active("t1").version == (2 if end == "promote" else 1)
            if finished:
                break
        finally:
            store.close()
    assert finished and at >= 1


@pytest.mark.parametrize("share", ["0.1", "0.3", "0.5", "0.9"])
def test_assignment_distribution_matches_the_share(share):
    secret = b"s" * 32
    n = 20_000
    treated = sum(assign(secret, f"customer-{i}", Decimal(share)) == "B" for i in range(n))
    p = float(share)
    sigma = (n * p * (1 - p)) ** 0.5
    assert abs(treated - n * p) < 4 * sigma


def test_assignment_depends_on_the_secret():
    a = [assign(b"a" * 32, f"c{i}", Decimal("0.5")) for i in range(200)]
    b = [assign(b"b" * 32, f"c{i}", Decimal("0.5")) for i in range(200)]
    assert a != b


def test_an_activation_that_died_before_its_log_entry_is_logged_all_the_same(service, store, clock) -> None:
    """Routing and activation log are in different containers: a crash between them left
    the activation unlogged, and the next activation made the log skip it (an import
    evaluating its history then used the version before it). The log is repaired from the
    routing when it is read and before the next activation."""
    from tests.conftest import Died, StoreThatDies

    save(service, V1)
    save(service, V2)
    activate(service, 1)
    clock.advance(timedelta(minutes=1))
    dying = RuleSetService(StoreThatDies(store, 1), clock)  # type: ignore[arg-type]
    with pytest.raises(Died):
        activate(dying, 2)  # the routing written, the process gone before its log entry
    assert service.active("t1").version == 2
    clock.advance(timedelta(minutes=1))
    activate(service, 1)
    logged = service.activations("t1")
    assert [(a.version, a.previous_version.version if a.previous_version else None) for a in logged] == \
        [(1, 2), (2, 1), (1, None)]
    assert [a.at for a in logged] == sorted((a.at for a in logged), reverse=True)
    assert len(service.activations("t1")) == 3  # reading again logs nothing twice


def test_the_log_read_after_a_crash_with_no_activation_since_shows_it_and_writes_nothing(service, store,
                                                                                        clock) -> None:
    from tests.conftest import Died, StoreThatDies

    save(service, V1)
    dying = RuleSetService(StoreThatDies(store, 1), clock)  # type: ignore[arg-type]
    with pytest.raises(Died):
        activate(dying, 1)
    assert [(a.rule_set_id, a.version) for a in service.activations("t1")] == [("main", 1)]
    assert service._activation_docs("t1", 10) == []  # a read shows it from the routing, writes nothing
