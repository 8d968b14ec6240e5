"""The rule set lifecycle: drafts, validation, immutable versions, activation,
rollback, simulation and A/B experiments, over the document-store port.

Storage (both containers partitioned by tenant id):

* ``ruleversions`` (append-only): ``version:{ruleSetId}:{000001}`` — the source,
  author key id, time, reason code and text, cost; and ``activation:...``, the
  log of every activation, rollback and promotion. A saved version can never
  change: the store refuses anything but a create in this container.
* ``rulesets``: ``draft:{id}`` (editable), ``experiment:{id}`` (records), and
  ``routing``, the single document ingestion reads: the active version and the
  running experiment (with its sealed secret). It is replaced under an ETag
  precondition, so two concurrent activations cannot both win silently.

Every method takes typed inputs and returns pydantic models (``shared.rules.models``)
so HTTP routes stay thin. Nothing here evaluates orders except ``simulate``,
which writes nothing.
"""

from __future__ import annotations

import difflib
import hashlib
import secrets as random_source
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from shared.clock import Clock, iso
from shared.domain.tenants import TenantSettings
from shared.earning import CustomerContext
from shared.errors import BatchFailed, Conflict, DocumentExists, NotFound, PreconditionFailed, ValidationFailed
from shared.rules import models
from shared.rules.errors import Diagnostic, RuleBudgetExceeded, RuleError
from shared.rules.experiments import SECRET_BYTES
from shared.rules.limits import COST_BUDGET
from shared.rules.program import build
from shared.rules.registry import RuleSetRegistry
from shared.rules.ruleset import CompiledRuleSet
from shared.rules.sealing import PlainSealer, SecretSealer
from shared.store.contention import attempts
from shared.store.layout import RULE_VERSIONS, RULESETS
from shared.store.pages import read_all
from shared.store.port import Create, DocumentStore, Filter, Operation, Query, Upsert

ROUTING_ID = "routing"


def _ended_meanwhile(experiment_id: str) -> Conflict:
    return Conflict(f"experiment {experiment_id} is not running (another request ended it)")


class RoutingChanged(Conflict):
    """The routing document changed between its read and its write (another activation won)."""


@dataclass(frozen=True)
class Activated:
    """An activation's outcome: what was active before, what is now, and whether this call changed it."""

    before: models.ActiveRuleSet | None
    after: models.ActiveRuleSet
    changed: bool


def _version_id(rule_set_id: str, version: int) -> str:
    return f"version:{rule_set_id}:{version:06d}"


def diagnostic_model(diagnostic: Diagnostic) -> models.Diagnostic:
    """One positioned problem as the API shows it, with the offending line and its caret."""
    shown = diagnostic.source_line[:200] if diagnostic.source_line is not None else None
    return models.Diagnostic(**diagnostic.to_dict(), source_line=shown, rendered=diagnostic.render())


def validate_source(source: str) -> models.ValidationReport:
    """Check a source without saving: diagnostics, cost and cost per rule."""
    try:
        program = build(source)
    except RuleError as error:
        diagnostics = tuple(diagnostic_model(d) for d in error.diagnostics)
        per_rule = error.per_rule if isinstance(error, RuleBudgetExceeded) else {}
        cost = error.total if isinstance(error, RuleBudgetExceeded) else None
        return models.ValidationReport(ok=False, kind=error.code, diagnostics=diagnostics, cost=cost,
                                       budget=COST_BUDGET, cost_per_rule=per_rule, rendered=error.message)
    return models.ValidationReport(ok=True, cost=program.cost.total, budget=COST_BUDGET,
                                   cost_per_rule=program.cost.per_rule)


class RuleSetService:
    def __init__(self, store: DocumentStore, clock: Clock, sealer: SecretSealer | None = None,
                 registry: RuleSetRegistry | None = None) -> None:
        self.store = store
        self.clock = clock
        self.sealer = sealer or PlainSealer()
        self.registry = registry or RuleSetRegistry(self.load_source)

    # --- drafts ---------------------------------------------------------------------

    def create_draft(self, tenant_id: str, data: models.DraftInput, actor: str) -> models.Draft:
        if data.based_on_version is not None:
            self.get_version(tenant_id, data.rule_set_id, data.based_on_version)
        draft_id = uuid.uuid4().hex[:16]
        return self._write_draft(tenant_id, draft_id, data.rule_set_id, data.source, data.based_on_version, actor)

    def update_draft(self, tenant_id: str, draft_id: str, source: str, actor: str) -> models.Draft:
        draft = self.get_draft(tenant_id, draft_id)
        return self._write_draft(tenant_id, draft_id, draft.rule_set_id, source, draft.based_on_version, actor)

    def get_draft(self, tenant_id: str, draft_id: str) -> models.Draft:
        doc = self.store.read(RULESETS, tenant_id, f"draft:{draft_id}")
        if doc is None:
            raise NotFound(f"no draft {draft_id}")
        return models.Draft.model_validate(doc["draft"])

    def _write_draft(self, tenant_id: str, draft_id: str, rule_set_id: str, source: str,
                     based_on: int | None, actor: str) -> models.Draft:
        draft = models.Draft(draft_id=draft_id, rule_set_id=rule_set_id, source=source, based_on_version=based_on,
                             updated_at=self.clock.now(), updated_by=actor)
        self.store.upsert(RULESETS, {"id": f"draft:{draft_id}", "pk": tenant_id, "docType": "ruleset-draft",
                                     "draft": draft.model_dump(mode="json", by_alias=True)})
        return draft

    # --- validation and versions ------------------------------------------------------

    def validate(self, source: str) -> models.ValidationReport:
        return validate_source(source)

    def save_version(self, tenant_id: str, data: models.SaveVersionInput, actor: str) -> models.VersionInfo:
        """Validate and store as the next immutable version. Raises a ``RuleError`` if invalid."""
        if (data.source is None) == (data.draft_id is None):
            raise ValidationFailed("give either source or draftId")
        source = data.source if data.source is not None else self.get_draft(tenant_id, data.draft_id).source
        program = build(source)                       # raises RuleError with positioned diagnostics
        for _ in attempts():
            latest = self._latest_version(tenant_id, data.rule_set_id)
            info = models.Version(rule_set_id=data.rule_set_id, version=latest + 1, author=actor,
                                  created_at=self.clock.now(), reason=data.reason, cost=program.cost.total,
                                  rules=len(program.rules), source=source)
            try:
                self.store.create(RULE_VERSIONS, {
                    "id": _version_id(data.rule_set_id, info.version), "pk": tenant_id,
                    "docType": "ruleset-version", "ruleSetId": data.rule_set_id, "version": info.version,
                    "at": iso(info.created_at), "body": info.model_dump(mode="json", by_alias=True)})
            except DocumentExists:
                continue                                # another save took this number: take the next
            return models.VersionInfo.model_validate(info.model_dump(exclude={"source"}))
        raise Conflict("could not allocate a version number; retry")

    def _latest_version(self, tenant_id: str, rule_set_id: str) -> int:
        docs = self.store.query(RULE_VERSIONS, Query(
            pk=tenant_id, filters=(Filter("docType", "=", "ruleset-version"), Filter("ruleSetId", "=", rule_set_id)),
            order_by="version", descending=True, limit=1))
        return int(docs[0]["version"]) if docs else 0

    def list_versions(self, tenant_id: str, rule_set_id: str, limit: int | None = 100) -> list[models.VersionInfo]:
        """Saved versions, newest first: the newest ``limit``, or every one (``None``: keyset pages)."""
        filters = (Filter("docType", "=", "ruleset-version"), Filter("ruleSetId", "=", rule_set_id))
        docs = (sorted(read_all(self.store, RULE_VERSIONS, tenant_id, filters), key=lambda d: d["version"],
                       reverse=True)
                if limit is None else
                self.store.query(RULE_VERSIONS, Query(pk=tenant_id, filters=filters, order_by="version",
                                                      descending=True, limit=limit)))
        return [models.VersionInfo.model_validate({k: v for k, v in d["body"].items() if k != "source"})
                for d in docs]

    def get_version(self, tenant_id: str, rule_set_id: str, version: int) -> models.Version:
        doc = self.store.read(RULE_VERSIONS, tenant_id, _version_id(rule_set_id, version))
        if doc is None:
            raise NotFound(f"rule set {rule_set_id} has no version {version}")
        return models.Version.model_validate(doc["body"])

    def load_source(self, tenant_id: str, rule_set_id: str, version: int) -> str:
        return self.get_version(tenant_id, rule_set_id, version).source

    def diff(self, tenant_id: str, rule_set_id: str, from_version: int, to_version: int) -> models.VersionDiff:
        old = self.get_version(tenant_id, rule_set_id, from_version)
        new = self.get_version(tenant_id, rule_set_id, to_version)
        lines = difflib.unified_diff(old.source.splitlines(keepends=True), new.source.splitlines(keepends=True),
                                     fromfile=f"{rule_set_id} v{from_version}", tofile=f"{rule_set_id} v{to_version}")
        return models.VersionDiff(rule_set_id=rule_set_id, from_version=from_version, to_version=to_version,
                                  diff="".join(lines))

    # --- activation -------------------------------------------------------------------

    def _routing(self, tenant_id: str) -> dict[str, Any] | None:
        return self.store.read(RULESETS, tenant_id, ROUTING_ID)

    def _write_routing(self, tenant_id: str, current: dict[str, Any] | None, active: dict | None,
                       experiment: dict | None, also: Operation | None = None) -> None:
        """The routing document, guarded by the ETag it was read with; ``also``: a write of the
        same partition (an experiment's record) committed with it in one batch, or not at all."""
        doc = {"id": ROUTING_ID, "pk": tenant_id, "docType": "ruleset-routing", "active": active,
               "experiment": experiment}
        write = Create(doc) if current is None else Upsert(doc, if_match=current["_etag"])
        try:
            self.store.batch(RULESETS, tenant_id, [write] if also is None else [write, also])
        except (BatchFailed, DocumentExists, PreconditionFailed):
            raise RoutingChanged("the tenant's rule routing changed concurrently; reload and retry") from None

    def active(self, tenant_id: str) -> models.ActiveRuleSet | None:
        routing = self._routing(tenant_id)
        if routing is None or routing.get("active") is None:
            return None
        experiment = None
        if routing.get("experiment"):
            experiment = self.get_experiment(tenant_id, routing["experiment"]["experimentId"])
        return models.ActiveRuleSet.model_validate({**routing["active"], "experiment": experiment})

    def activate(self, tenant_id: str, data: models.ActivateInput, actor: str) -> models.ActiveRuleSet:
        return self.activate_once(tenant_id, data, actor).after

    def activate_once(self, tenant_id: str, data: models.ActivateInput, actor: str,
                      allowed: Callable[[models.ActiveRuleSet | None], None] | None = None) -> "Activated":
        """Make ``data.target`` the active version: ``changed`` False when it already is (a
        repeated or concurrent identical request changes nothing and is answered with the
        activation in place). Concurrent activations are serialised by the routing
        document's ETag: a loser reads the routing again and decides again, so each
        change's ``before`` is the activation it replaced. ``allowed`` refuses a change from
        ``before`` (raises); it is asked on every attempt, about the routing that attempt read."""
        target = data.target
        for _ in attempts():
            routing = self._routing(tenant_id)
            if routing and routing.get("experiment"):
                raise Conflict("an A/B experiment is running: promote a winner or stop it first")
            before = self.active(tenant_id) if routing and routing.get("active") else None
            if allowed is not None:
                allowed(before)
            if before is not None and (before.rule_set_id, before.version) == (target.rule_set_id, target.version):
                return Activated(before, before, changed=False)
            try:
                return Activated(before, self._activate(tenant_id, routing, target, data.reason, actor,
                                                        experiment=None), changed=True)
            except RoutingChanged:
                continue
        raise Conflict("the tenant's rule routing is being changed by many requests at once; retry")

    def _activate(self, tenant_id: str, routing: dict | None, target: models.VersionRef, reason: models.Reason,
                  actor: str, experiment: dict | None, also: Operation | None = None) -> models.ActiveRuleSet:
        self.get_version(tenant_id, target.rule_set_id, target.version)          # must exist
        # The log entry follows the routing in another container: a crash in between left the
        # activation unlogged, and the next one made the log skip it (an import evaluating
        # history then took the version before it). The routing in place is logged first.
        self._log_routing(tenant_id, routing)
        now = self.clock.now()
        previous = routing.get("active") if routing else None
        active = models.ActiveRuleSet(rule_set_id=target.rule_set_id, version=target.version, activated_at=now,
                                      activated_by=actor, reason=reason)
        active_doc = active.model_dump(mode="json", by_alias=True, exclude={"experiment"})
        self._write_routing(tenant_id, routing, active_doc, experiment, also)
        previous_ref = ({"ruleSetId": previous["ruleSetId"], "version": previous["version"]} if previous else None)
        self._log(tenant_id, _activation_of(active, previous_ref))
        return active

    def _log(self, tenant_id: str, entry: models.Activation) -> None:
        """The activation log's ``entry`` (its id derived from the activation, so writing it
        again is a no-op)."""
        at = iso(entry.at)
        tag = hashlib.sha256(f"{entry.rule_set_id}\n{entry.version}".encode()).hexdigest()[:8]
        try:
            self.store.create(RULE_VERSIONS, {"id": f"activation:{at}:{tag}", "pk": tenant_id,
                                              "docType": "ruleset-activation", "at": at,
                                              "body": entry.model_dump(mode="json", by_alias=True)})
        except DocumentExists:
            pass  # logged already (a repair racing the activation's own write)

    @staticmethod
    def _unlogged(routing: dict[str, Any] | None, newest: list[dict[str, Any]]) -> models.Activation | None:
        """The log entry of the routing's active version, if the log's newest entry
        (``newest``: none or one document) is not it: its activation's process died before
        logging it."""
        if not routing or not routing.get("active"):
            return None
        active = models.ActiveRuleSet.model_validate(routing["active"])
        if newest:
            last = models.Activation.model_validate(newest[0]["body"])
            if (last.rule_set_id, last.version, last.at) == (active.rule_set_id, active.version, active.activated_at):
                return None
        previous = ({"ruleSetId": newest[0]["body"]["ruleSetId"], "version": newest[0]["body"]["version"]}
                    if newest else None)
        return _activation_of(active, previous)

    def _log_routing(self, tenant_id: str, routing: dict[str, Any] | None) -> None:
        """Log the routing's active version if its activation died before logging it."""
        missing = self._unlogged(routing, self._activation_docs(tenant_id, 1))
        if missing is not None:
            self._log(tenant_id, missing)

    def _activation_docs(self, tenant_id: str, limit: int | None) -> list[dict[str, Any]]:
        if limit is None:  # every one, newest first (keyset pages; ids are unique, ``at`` may tie)
            logged = read_all(self.store, RULE_VERSIONS, tenant_id, (Filter("docType", "=", "ruleset-activation"),))
            return sorted(logged, key=lambda d: (d["at"], d["id"]), reverse=True)
        return self.store.query(RULE_VERSIONS, Query(
            pk=tenant_id, filters=(Filter("docType", "=", "ruleset-activation"),), order_by="at", descending=True,
            limit=limit))

    def rollback(self, tenant_id: str, data: models.ActivateInput, actor: str) -> models.ActiveRuleSet:
        """Activate an earlier saved version of the active rule set."""
        return self.rollback_once(tenant_id, data, actor).after

    def rollback_once(self, tenant_id: str, data: models.ActivateInput, actor: str) -> "Activated":
        """``rollback`` with what it replaced (see ``activate_once``): refused unless the target is
        earlier than the active version, or is it (a repeat of the rollback that made it active:
        answered as it, no change, as a repeated activation is). Checked against the routing each
        attempt writes over: a rollback that lost a race to an earlier one never goes forward."""
        target = data.target

        def earlier(current: models.ActiveRuleSet | None) -> None:
            if current is None:
                raise ValidationFailed("nothing is active, so there is nothing to roll back")
            if target.rule_set_id != current.rule_set_id or target.version > current.version:
                raise ValidationFailed(f"roll back to a version of {current.rule_set_id} earlier than "
                                       f"{current.version}; use activate for anything else")
        return self.activate_once(tenant_id, data, actor, allowed=earlier)

    def activations(self, tenant_id: str, limit: int | None = 100) -> list[models.Activation]:
        """The activation log, newest first, with the routing's activation on top if its
        process died before logging it (shown from the routing; a read writes nothing, the
        next activation logs it)."""
        docs = self._activation_docs(tenant_id, limit)
        logged = [models.Activation.model_validate(d["body"]) for d in docs]
        missing = self._unlogged(self._routing(tenant_id), docs[:1])
        if missing is None:
            return logged
        return [missing] + (logged if limit is None else logged[:max(0, limit - 1)])

    # --- simulation -------------------------------------------------------------------

    def simulate(self, tenant: TenantSettings, data: models.SimulationInput) -> models.SimulationReport:
        """Evaluate a source, draft or saved version against orders. Writes nothing."""
        chosen = [x is not None for x in (data.source, data.draft_id, data.version)]
        if sum(chosen) != 1:
            raise ValidationFailed("give exactly one of source, draftId or version")
        if data.version is not None:
            compiled = self.registry.get(tenant.tenant_id, data.version.rule_set_id, data.version.version)
        else:
            source = data.source if data.source is not None else self.get_draft(tenant.tenant_id, data.draft_id).source
            compiled = CompiledRuleSet.from_source(source, "simulation")
        pairs = [(case.order, CustomerContext(case.customer.customer_id, case.customer.join_date,
                                              case.customer.tier, case.customer.tags, case.customer.lifetime_points,
                                              case.customer.order_count)) for case in data.cases]
        results = compiled.evaluate_batch(tenant, pairs, evaluator=data.evaluator)
        orders = tuple(models.SimulatedOrder(
            order_id=order.order_id, customer_id=customer.customer_id, points=result.points,
            lots=tuple(models.SimulatedLot(points=lot.points, expires_at=lot.expires_at, rule=lot.rule)
                       for lot in result.lots),
            tags_to_add=result.tags_to_add, trace=result.trace)
            for (order, customer), result in zip(pairs, results))
        return models.SimulationReport(total_points=sum(o.points for o in orders), orders=orders)

    # --- A/B experiments --------------------------------------------------------------

    def start_experiment(self, tenant_id: str, data: models.ExperimentInput, actor: str) -> models.Experiment:
        for ref in (data.control, data.treatment):
            self.get_version(tenant_id, ref.rule_set_id, ref.version)
        routing = self._routing(tenant_id)
        if routing and routing.get("experiment"):
            raise Conflict("another A/B experiment is running")
        experiment = models.Experiment(experiment_id=uuid.uuid4().hex[:16], name=data.name, control=data.control,
                                       treatment=data.treatment, treatment_share=data.treatment_share,
                                       status="running", started_at=self.clock.now())
        sealed = self.sealer.seal(tenant_id, random_source.token_bytes(SECRET_BYTES))
        body = experiment.model_dump(mode="json", by_alias=True)
        # The routing document's ETag decides which of concurrent starts runs; the record is written
        # only by the winner (written first, every loser left a "running" record of an experiment
        # that never ran). A crash between the two leaves the claim, which carries the whole body:
        # reading and ending an experiment fall back to it.
        self._write_routing(tenant_id, routing, routing.get("active") if routing else None,
                            {**body, "sealedSecret": sealed})
        try:
            self.store.create(RULESETS, self._experiment_record(tenant_id, body, sealed, data.reason.model_dump(
                mode="json"), actor))
        except DocumentExists:
            pass  # a reader rebuilt it from the claim (and may have ended it since): theirs stands
        return experiment

    @staticmethod
    def _experiment_record(tenant_id: str, body: dict, sealed: str, reason: dict | None, actor: str | None) -> dict:
        return {"id": f"experiment:{body['experimentId']}", "pk": tenant_id, "docType": "ruleset-experiment",
                "body": body, "sealedSecret": sealed, "reason": reason, "startedBy": actor}

    def _experiment_doc(self, tenant_id: str, experiment_id: str, routing: dict | None) -> dict | None:
        """The experiment's record, or, when a start died after its claim, the record rebuilt from
        the routing document's copy and stored (create: a concurrent rebuild is the same record)."""
        doc = self.store.read(RULESETS, tenant_id, f"experiment:{experiment_id}")
        claimed = routing.get("experiment") if routing else None
        if doc is not None or not claimed or claimed["experimentId"] != experiment_id:
            return doc
        body = {k: v for k, v in claimed.items() if k != "sealedSecret"}
        try:
            self.store.create(RULESETS, self._experiment_record(tenant_id, body, claimed["sealedSecret"], None, None))
        except DocumentExists:
            pass
        return self.store.read(RULESETS, tenant_id, f"experiment:{experiment_id}")

    def get_experiment(self, tenant_id: str, experiment_id: str) -> models.Experiment:
        doc = self._experiment_doc(tenant_id, experiment_id, self._routing(tenant_id))
        if doc is None:
            raise NotFound(f"no experiment {experiment_id}")
        return models.Experiment.model_validate(doc["body"])

    def experiment_secret(self, tenant_id: str, sealed: str) -> bytes:
        return self.sealer.unseal(tenant_id, sealed)

    def _end_experiment(self, tenant_id: str, experiment_id: str, status: str, winner: str | None) -> tuple[
            models.Experiment, dict, Operation]:
        """The ended experiment, the routing it was read from, and the write of its record, which
        the caller commits in one batch with the routing that no longer runs it: never a record
        that says "ended" while orders are still split between its arms (a crash between two
        writes left exactly that until a retry)."""
        routing = self._routing(tenant_id)
        running = routing.get("experiment") if routing else None
        if not running or running["experimentId"] != experiment_id:
            raise Conflict(f"experiment {experiment_id} is not running")
        doc = self._experiment_doc(tenant_id, experiment_id, routing)
        assert doc is not None, "a running experiment has its record or its claim"
        ended = models.Experiment.model_validate(
            {**doc["body"], "status": status, "endedAt": iso(self.clock.now()), "winner": winner})
        record = Upsert({**{k: v for k, v in doc.items() if not k.startswith("_")},
                         "body": ended.model_dump(mode="json", by_alias=True)}, if_match=doc["_etag"])
        return ended, routing, record

    def stop_experiment(self, tenant_id: str, experiment_id: str, actor: str) -> models.Experiment:
        """End the experiment; every customer goes back to the active version (or the rate rule)."""
        ended, routing, record = self._end_experiment(tenant_id, experiment_id, "stopped", None)
        try:
            self._write_routing(tenant_id, routing, routing.get("active"), None, also=record)
        except RoutingChanged:
            raise _ended_meanwhile(experiment_id) from None
        return ended

    def promote(self, tenant_id: str, experiment_id: str, arm: models.Arm, reason: models.Reason,
                actor: str) -> models.ActiveRuleSet:
        """Activate the winning arm's version for everyone and end the experiment."""
        ended, routing, record = self._end_experiment(tenant_id, experiment_id, "promoted", arm)
        target = ended.treatment if arm == "B" else ended.control
        try:
            return self._activate(tenant_id, routing, target, reason, actor, experiment=None, also=record)
        except RoutingChanged:
            raise _ended_meanwhile(experiment_id) from None


def _activation_of(active: models.ActiveRuleSet, previous: dict[str, Any] | None) -> models.Activation:
    """The activation log's entry of ``active``, which replaced ``previous``."""
    return models.Activation(rule_set_id=active.rule_set_id, version=active.version, at=active.activated_at,
                             by=active.activated_by, reason=active.reason, previous_version=previous)
