"""Typed errors of the rule language, each pointing at the rule, line and column.

A rule set is rejected at validate/save time with every problem found (up to a
cap), never with a Python traceback. Each ``Diagnostic`` renders like a compiler
message: where, what, the offending line with a caret, and a suggestion::

    rule "Platinum double", line 7, column 10: unknown field order.totl
        when order.totl >= 50
             ^
      did you mean order.total?

Runtime failures (division by zero, overflow) are *not* errors: evaluation
records them in the trace (``shared.rules.numeric.FailureCode``).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import FieldProblem, ValidationFailed


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a rule source: position is 1-based; ``rule`` may be None
    (a problem outside any rule, e.g. in the validity header)."""

    message: str
    line: int
    column: int
    rule: str | None = None
    hint: str | None = None
    source_line: str | None = None

    def where(self) -> str:
        prefix = f'rule "{self.rule}", ' if self.rule is not None else ""
        return f"{prefix}line {self.line}, column {self.column}"

    def render(self) -> str:
        text = f"{self.where()}: {self.message}"
        if self.source_line is not None:
            # Show the line as the user wrote it, with tabs kept so the caret lines up.
            shown = self.source_line[:200]
            pad = "".join("\t" if ch == "\t" else " " for ch in shown[: max(0, self.column - 1)])
            text += f"\n    {shown}\n    {pad}^"
        if self.hint:
            text += f"\n  {self.hint}"
        return text

    def to_dict(self) -> dict:
        return {"rule": self.rule, "line": self.line, "column": self.column,
                "message": self.message, "hint": self.hint}


class RuleError(ValidationFailed):
    """Base of rule-language errors: carries the diagnostics and renders them all."""

    code = "rule-invalid"

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        assert diagnostics, "a rule error needs at least one diagnostic"
        self.diagnostics = list(diagnostics)
        message = "\n".join(d.render() for d in self.diagnostics)
        problems = [FieldProblem(field=f"source:{d.line}:{d.column}", message=d.message
                                 + (f" ({d.hint})" if d.hint else "")) for d in self.diagnostics]
        super().__init__(message, problems)


class RuleSourceRejected(RuleError):
    """The text itself is refused before parsing: too large, control or invisible
    characters, non-ASCII names (homoglyphs), too deeply nested."""

    code = "rule-source-rejected"


class RuleSyntaxError(RuleError):
    code = "rule-syntax-error"


class RuleTypeError(RuleError):
    """A name that is not in the schema, a type mismatch, a misplaced action."""

    code = "rule-type-error"


class RuleBudgetExceeded(RuleError):
    """The static cost of the rule set is over the budget; the message lists the
    cost of every rule so the author can see which one to simplify."""

    code = "rule-budget-exceeded"

    def __init__(self, diagnostics: list[Diagnostic], total: int, budget: int, per_rule: dict[str, int]) -> None:
        super().__init__(diagnostics)
        self.total = total
        self.budget = budget
        self.per_rule = dict(per_rule)
