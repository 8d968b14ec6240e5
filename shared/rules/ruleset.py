"""A compiled rule set version: the ``EarningRules`` that ingestion calls.

``CompiledRuleSet`` holds one checked ``Program`` and its evaluators: the
closure evaluator is built eagerly (it is cheap), the wasm module is compiled on
first use and kept. Which one runs is the tenant's choice
(``TenantSettings.evaluator``); both give the same outcome record, hence the
same ``EarnResult``.

Guarantee: ``evaluate`` and ``evaluate_batch`` never raise for anything a rule
does. Runtime failures are in the trace; an internal fault (a bug, a wasm trap
that should be impossible) is logged and yields an empty result whose trace
says why, so the order is still ingested.
"""

from __future__ import annotations

import logging
import threading
from typing import Sequence
from zoneinfo import ZoneInfo

from shared.domain.orders import Order
from shared.domain.tenants import TenantSettings
from shared.earning import CustomerContext, EarnResult
from shared.rules.closure import ClosureEvaluator
from shared.rules.facts import Facts, extract
from shared.rules.program import Program, build
from shared.rules.result import build_result
from shared.telemetry.logs import fields

log = logging.getLogger(__name__)

OrderWithCustomer = tuple[Order, CustomerContext]


class CompiledRuleSet:
    """One immutable rule set version, compiled; safe to share between threads."""

    def __init__(self, program: Program, rule_set_id: str, version: int | None = None) -> None:
        self.program = program
        self.rule_set_id = rule_set_id
        self.version = version
        self.closure = ClosureEvaluator(program)
        self._wasm = None
        self._wasm_lock = threading.Lock()

    @classmethod
    def from_source(cls, source: str, rule_set_id: str, version: int | None = None) -> "CompiledRuleSet":
        return cls(build(source), rule_set_id, version)

    @property
    def wasm(self):
        """The wasm evaluator, compiled once on first use."""
        if self._wasm is None:
            with self._wasm_lock:
                if self._wasm is None:
                    from shared.rules.wasm_runtime import WasmEvaluator  # wasmtime only when used

                    self._wasm = WasmEvaluator(self.program)
        return self._wasm

    # --- the EarningRules interface ---

    def evaluate(self, tenant: TenantSettings, order: Order, customer: CustomerContext,
                 arm: str | None = None) -> EarnResult:
        return self.evaluate_batch(tenant, [(order, customer)], arm=arm)[0]

    def evaluate_batch(self, tenant: TenantSettings, orders: Sequence[OrderWithCustomer],
                       arm: str | None = None, evaluator: str | None = None) -> list[EarnResult]:
        zone = ZoneInfo(tenant.time_zone)
        kind = evaluator or tenant.evaluator
        try:
            facts = [extract(order, customer, zone, self.program.tag_literals) for order, customer in orders]
            records = self.records(facts, kind)
            return [build_result(self.program, record, order, customer, zone, self.rule_set_id, self.version, arm)
                    if record is not None else self._internal_failure("evaluation-aborted", arm)
                    for record, (order, customer) in zip(records, orders)]
        except Exception as error:  # noqa: BLE001 - evaluation must never block ingestion
            log.exception("rule set failed internally",
                          extra=fields(rule_set_id=self.rule_set_id, rule_set_version=self.version))
            return [self._internal_failure(f"internal-error: {type(error).__name__}", arm) for _ in orders]

    def records(self, facts: Sequence[Facts], evaluator: str) -> list[Sequence[int] | None]:
        """Outcome records for already extracted facts (the differential tests compare these)."""
        if evaluator == "wasm":
            return self.wasm.run_batch(facts)
        assert evaluator == "closure", evaluator
        run = self.closure.run
        return [run(f) for f in facts]

    def _internal_failure(self, reason: str, arm: str | None) -> EarnResult:
        code, _, detail = reason.partition(": ")
        trace = ({"ruleset": "failed", "error": {"code": code, "message": detail or "the evaluator stopped"}},)
        return EarnResult((), self.rule_set_id, self.version, arm, (), trace)


class ArmRules:
    """A compiled rule set seen through an A/B arm: stamps the arm on every result."""

    def __init__(self, compiled: CompiledRuleSet, arm: str | None) -> None:
        self.compiled = compiled
        self.arm = arm

    def evaluate(self, tenant: TenantSettings, order: Order, customer: CustomerContext) -> EarnResult:
        return self.compiled.evaluate(tenant, order, customer, arm=self.arm)

    def evaluate_batch(self, tenant: TenantSettings, orders: Sequence[OrderWithCustomer]) -> list[EarnResult]:
        return self.compiled.evaluate_batch(tenant, orders, arm=self.arm)

    @property
    def batch_key(self) -> tuple:
        """Equal keys: the same compiled version and arm, so one batch call serves them all."""
        return (id(self.compiled), self.compiled.rule_set_id, self.compiled.version, self.arm)
