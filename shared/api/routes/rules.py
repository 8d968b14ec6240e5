"""The rule set lifecycle over HTTP (tenant-admins): drafts, validation, immutable
versions, diff, activation, rollback, simulation and A/B experiments.

Writes need ``admin`` (tenant-admin keys); reading versions, the activation log,
experiments and their results needs ``report`` (tenant-admins and analysts).
The routes only parse and serialise: ``RuleSetAdmin`` (``shared.rules.admin``)
audits every act, invalidates the rules cache and publishes
``ruleset.activated``. A rejected rule source is a 422 problem whose
``diagnostics`` name the rule, line and column, show the line with a caret and
suggest the nearest valid name (``install`` registers that mapping).
See docs/rules.md.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from shared.api.contract import op
from shared.api.contract.rules import ActivationList, ActiveState, VersionList
from shared.api.deps import platform
from shared.api.pagination import Cursor, Order, in_memory
from shared.api.problems import MEDIA_TYPE, PROBLEM_BASE
from shared.api.security import requires
from shared.app.auth import Principal
from shared.domain.ids import ID_MAX_LENGTH, ID_PATTERN
from shared.platform import Platform
from shared.rules import models
from shared.rules.admin import ExperimentResults, StoredSimulationInput, StoredSimulationReport
from shared.rules.errors import RuleBudgetExceeded, RuleError
from shared.rules.lifecycle import diagnostic_model
from shared.rules.limits import COST_BUDGET

router = APIRouter(prefix="/v1/rules", tags=["rules"])

Admin = Annotated[Principal, Depends(requires("admin"))]
Reader = Annotated[Principal, Depends(requires("report"))]
P = Annotated[Platform, Depends(platform)]
DraftId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", max_length=16)]
ExperimentId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", max_length=16)]
RuleSetId = Annotated[str, Path(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)]
VersionNumber = Annotated[int, Path(ge=1, le=1_000_000_000)]


def _out(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True)


class DraftChange(models._Model):
    source: models.Source


class SourceToValidate(models._Model):
    source: models.Source


class StopInput(models._Model):
    reason: models.Reason


class PromoteInput(models._Model):
    arm: models.Arm
    reason: models.Reason


# --- drafts -------------------------------------------------------------------------------


@router.post("/drafts", status_code=201, summary="Create a draft (editable; not validated until saved)",
             **op("rules.createDraft", {201: models.Draft}, errors=(404,)))
def create_draft(body: models.DraftInput, p: P, who: Admin) -> dict:
    """Creates an editable draft of a rule set (capability ``admin``), optionally based on a saved version; the source
    is validated only when saved as a version."""
    return _out(p.rule_sets.create_draft(who.tenant_id, body, actor=who.key_id))


@router.get("/drafts/{draftId}", summary="A draft",
            **op("rules.getDraft", models.Draft, errors=(404,)))
def get_draft(draftId: DraftId, p: P, who: Admin) -> dict:
    """A draft and its source (capability ``admin``)."""
    return _out(p.rule_sets.get_draft(who.tenant_id, draftId))


@router.put("/drafts/{draftId}", summary="Replace a draft's source",
            **op("rules.updateDraft", models.Draft, errors=(404,)))
def update_draft(draftId: DraftId, body: DraftChange, p: P, who: Admin) -> dict:
    """Replaces the draft's source (capability ``admin``); nothing is validated until the draft is saved."""
    return _out(p.rule_sets.update_draft(who.tenant_id, draftId, body.source, actor=who.key_id))


@router.post("/validate", summary="Check a source without saving: diagnostics, cost per rule and the budget",
             **op("rules.validate", models.ValidationReport))
def validate(body: SourceToValidate, p: P, who: Admin) -> dict:
    """Parses, type-checks and costs a source without saving anything (capability ``admin``): ``ok``, diagnostics with
    line and column, the cost per rule and the budget."""
    return _out(p.rule_sets.validate(body.source))


# --- versions -----------------------------------------------------------------------------


@router.post("/versions", status_code=201,
             summary="Save a draft or a source as the next immutable version (reason code and text required)",
             **op("rules.saveVersion", {201: models.VersionInfo}, errors=(404, 409)))
def save_version(body: models.SaveVersionInput, p: P, who: Admin) -> dict:
    """Saves a draft or a source as the next immutable version of the rule set (capability ``admin``, audited). A
    source that does not compile is a 422 whose ``diagnostics`` name the rule, line and column."""
    return _out(p.rule_admin.save_version(who.tenant_id, body, who))


@router.get("/rulesets/{ruleSetId}/versions", summary="The versions of a rule set, newest first (without sources)",
            **op("rules.listVersions", VersionList, errors=(404,)))
def list_versions(request: Request, ruleSetId: RuleSetId, p: P, who: Reader, cursor: Cursor = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
    """The saved versions of a rule set, newest first, without sources (capability ``report``)."""
    versions = [_out(v) for v in p.rule_sets.list_versions(who.tenant_id, ruleSetId, None)]
    return in_memory(request, who.tenant_id, versions, limit, cursor, Order(("version",), descending=True))


@router.get("/rulesets/{ruleSetId}/versions/{version}", summary="One saved version, with its source",
            **op("rules.getVersion", models.Version, errors=(404,)))
def get_version(ruleSetId: RuleSetId, version: VersionNumber, p: P, who: Reader) -> dict:
    """One saved version with its source (capability ``report``)."""
    return _out(p.rule_sets.get_version(who.tenant_id, ruleSetId, version))


@router.get("/rulesets/{ruleSetId}/diff", summary="Unified diff of two saved versions",
            **op("rules.diff", models.VersionDiff, errors=(404,)))
def diff(ruleSetId: RuleSetId, p: P, who: Reader,
         from_version: Annotated[int, Query(alias="from", ge=1, le=1_000_000_000)],
         to_version: Annotated[int, Query(alias="to", ge=1, le=1_000_000_000)]) -> dict:
    """A unified diff between two saved versions of a rule set (capability ``report``)."""
    return _out(p.rule_sets.diff(who.tenant_id, ruleSetId, from_version, to_version))


# --- activation -------------------------------------------------------------------------


@router.get("/active", summary="What ingestion applies now: the active version and any running experiment",
            **op("rules.active", ActiveState))
def active(p: P, who: Reader) -> dict:
    """The version ingestion applies to new orders now, and any running experiment (capability ``report``)."""
    current = p.rule_sets.active(who.tenant_id)
    return {"active": _out(current) if current is not None else None}


@router.post("/activate", summary="Activate a saved version for every new order",
             **op("rules.activate", models.ActiveRuleSet, errors=(404, 409)))
def activate(body: models.ActivateInput, p: P, who: Admin) -> dict:
    """Activates a saved version for every new order (capability ``admin``, audited; publishes
    ``ruleset.activated``)."""
    return _out(p.rule_admin.activate(who.tenant_id, body, who))


@router.post("/rollback", summary="Activate an earlier version of the active rule set",
             **op("rules.rollback", models.ActiveRuleSet, errors=(404, 409)))
def rollback(body: models.ActivateInput, p: P, who: Admin) -> dict:
    """Activates an earlier version of the active rule set (capability ``admin``, audited)."""
    return _out(p.rule_admin.rollback(who.tenant_id, body, who))


@router.get("/activations", summary="The activation log, newest first",
            **op("rules.activations", ActivationList))
def activations(request: Request, p: P, who: Reader, cursor: Cursor = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
    """The activation log, newest first (capability ``report``)."""
    logged = [_out(a) for a in p.rule_sets.activations(who.tenant_id, None)]
    return in_memory(request, who.tenant_id, logged, limit, cursor, Order(("at", "ruleSetId", "version"), descending=True))


# --- simulation ---------------------------------------------------------------------------


@router.post("/simulations", summary="Run a source, draft or version against given orders; writes nothing",
             **op("rules.simulate", models.SimulationReport, errors=(404,)))
def simulate(body: models.SimulationInput, p: P, who: Admin) -> dict:
    """Runs a source, a draft or a saved version against the given orders and customers and reports the points, lots
    and trace per order; writes nothing (capability ``admin``)."""
    return _out(p.rule_sets.simulate(p.tenants.get(who.tenant_id), body))


@router.post("/simulations/stored",
             summary="Run a source, draft or version against the tenant's orders of a date range; writes nothing",
             **op("rules.simulateStored", StoredSimulationReport, errors=(404,)))
def simulate_stored(body: StoredSimulationInput, p: P, who: Admin) -> dict:
    """Runs a source, a draft or a saved version against the tenant's credited orders of a date range and compares with
    what was credited; writes nothing (capability ``admin``)."""
    return _out(p.rule_admin.simulate_stored(p.tenants.get(who.tenant_id), body))


# --- A/B experiments --------------------------------------------------------------------


@router.post("/experiments", status_code=201, summary="Split live traffic between two saved versions",
             **op("rules.startExperiment", {201: models.Experiment}, errors=(404, 409)))
def start_experiment(body: models.ExperimentInput, p: P, who: Admin) -> dict:
    """Splits live traffic between two saved versions by a stable hash of the customer (capability
    ``admin``, audited)."""
    return _out(p.rule_admin.start_experiment(who.tenant_id, body, who))


@router.get("/experiments/{experimentId}", summary="An experiment",
            **op("rules.getExperiment", models.Experiment, errors=(404,)))
def get_experiment(experimentId: ExperimentId, p: P, who: Reader) -> dict:
    """An experiment and its status (capability ``report``)."""
    return _out(p.rule_sets.get_experiment(who.tenant_id, experimentId))


@router.get("/experiments/{experimentId}/results",
            summary="Per arm: customers, orders, points issued, points per order",
            **op("rules.experimentResults", ExperimentResults, errors=(404,)))
def experiment_results(experimentId: ExperimentId, p: P, who: Reader) -> dict:
    """Per arm: customers, orders, points issued and points per order (capability ``report``)."""
    return _out(p.rule_admin.results(who.tenant_id, experimentId))


@router.post("/experiments/{experimentId}/stop", summary="End the experiment; everyone returns to the active version",
             **op("rules.stopExperiment", models.Experiment, errors=(404, 409)))
def stop_experiment(experimentId: ExperimentId, body: StopInput, p: P, who: Admin) -> dict:
    """Ends the experiment; every customer returns to the active version (capability ``admin``, audited)."""
    return _out(p.rule_admin.stop_experiment(who.tenant_id, experimentId, body.reason, who))


@router.post("/experiments/{experimentId}/promote",
             summary="Activate the winning arm's version for everyone and end the experiment",
             **op("rules.promote", models.ActiveRuleSet, errors=(404, 409)))
def promote(experimentId: ExperimentId, body: PromoteInput, p: P, who: Admin) -> dict:
    """Activates the winning arm's version for everyone and ends the experiment (capability ``admin``, audited)."""
    return _out(p.rule_admin.promote(who.tenant_id, experimentId, body.arm, body.reason, who))


# --- rejected sources as problems -----------------------------------------------------------


def rule_problem(request: Request, error: RuleError) -> JSONResponse:
    """422 problem JSON with every diagnostic (and, over budget, the cost of each rule)."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + error.code, "title": error.code.replace("-", " ").capitalize(), "status": 422,
        "detail": error.message, "instance": request.url.path,
        "errors": [{"field": p.field, "message": p.message} for p in error.problems],
        "diagnostics": [_out(diagnostic_model(d)) for d in error.diagnostics],
    }
    if isinstance(error, RuleBudgetExceeded):
        body.update(cost=error.total, budget=error.budget, costPerRule=error.per_rule)
    else:
        body["budget"] = COST_BUDGET
    return JSONResponse(body, status_code=422, media_type=MEDIA_TYPE)


def install(app: FastAPI) -> None:
    """Map ``RuleError`` (more specific than the generic ``AccrueError`` mapping) to ``rule_problem``."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RuleError)
        return rule_problem(request, exc)

    app.add_exception_handler(RuleError, handler)
