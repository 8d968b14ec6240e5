"""The Accrue rule language: rules are data, compiled once, evaluated two ways.

Public entry points:

* ``build(source) -> Program`` — parse, type-check and cost-check (raises a
  ``RuleError``: ``RuleSourceRejected``, ``RuleSyntaxError``, ``RuleTypeError``,
  ``RuleBudgetExceeded``); ``validate_source(source) -> ValidationReport``
  for a non-raising report.
* ``CompiledRuleSet`` — one version, implementing ``EarningRules``
  (``evaluate``, ``evaluate_batch``) with the closure or the wasm evaluator.
* ``RuleSetService`` — the lifecycle (drafts, versions, activation, rollback,
  simulation, A/B experiments); ``RuleSetProvider`` — the
  ``EarningRulesProvider`` ingestion uses; ``RuleSetRegistry`` — compile-once cache.

Language reference: ``grammar/README.md``.
"""

from shared.rules.errors import RuleBudgetExceeded, RuleError, RuleSourceRejected, RuleSyntaxError, RuleTypeError
from shared.rules.lifecycle import RuleSetService, validate_source
from shared.rules.program import Program, build
from shared.rules.provider import RuleSetProvider
from shared.rules.registry import RuleSetRegistry
from shared.rules.ruleset import ArmRules, CompiledRuleSet

__all__ = [
    "ArmRules", "CompiledRuleSet", "Program", "RuleBudgetExceeded", "RuleError", "RuleSetProvider",
    "RuleSetRegistry", "RuleSetService", "RuleSourceRejected", "RuleSyntaxError", "RuleTypeError", "build",
    "validate_source",
]
