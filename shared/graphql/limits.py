"""Limits checked before anything executes, like the rule budget: a query's depth and its
cost are computed from the parsed document (fragments expanded, variables substituted),
against the tenant's limits (``shared.graphql.settings``); introspection is refused
unless the tenant has it on; a page size above ``MAX_PAGE`` is refused.

The cost of a query is the number of objects it may touch at worst: every field costs 1,
and a field that returns a page (``first:`` or ``ids:``) multiplies the cost of what it
selects by the page size (``DEFAULT_PAGE`` when not given). So ``customers(first: 100)
{ balance { available } }`` costs 1 + 100 * (1 + 1 + 1) = 301, and nesting pages in pages
is what gets a query refused. The refusal is one GraphQL error with
``extensions.code = "query-refused"`` and the figures, before any store read."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from graphql import (
    ASTValidationRule,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    VariableNode,
)

from shared.clock import instant_problem
from shared.errors import FieldProblem, ValidationFailed
from shared.graphql.errors import QueryRefused
from shared.graphql.settings import GraphQLSettings

MAX_PAGE = 200
DEFAULT_PAGE = 50
PAGE_ARGUMENTS = ("first", "ids")
INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})
# Fields whose result is a page even when no page argument is given.
PAGED_FIELDS = frozenset({"customers", "entries", "transactions", "tierHistory", "redemptions", "ruleSetVersions",
                          "ruleSetActivations", "webhookEndpoints", "deliveries", "exportRuns", "orders",
                          "rulePerformance"})


def instant_argument(name: str, moment: datetime | None) -> datetime | None:
    """A ``DateTime`` argument as REST takes an instant (``shared.clock.instant_problem``):
    with an offset and within the stored calendar, else a ``validation-failed`` error (GraphQL's
    own scalar takes a time without an offset and any year, which the ledger's UTC text cannot
    hold)."""
    if moment is not None and (problem := instant_problem(moment)) is not None:
        raise ValidationFailed(f"{name} {problem}", [FieldProblem(name, problem)])
    return moment


def bounded(first: int) -> int:
    """A page size within [1, MAX_PAGE]; execution never sees another (validation refused it)."""
    if not 1 <= first <= MAX_PAGE:
        raise QueryRefused(f"first must be between 1 and {MAX_PAGE} (got {first})")
    return first


class Measure:
    def __init__(self, fragments: Mapping[str, FragmentDefinitionNode], variables: Mapping[str, Any]) -> None:
        self.fragments = fragments
        self.variables = variables
        self.introspection = False
        self.oversized: list[tuple[str, int]] = []

    def page(self, field: FieldNode) -> int:
        for argument in field.arguments or ():
            if argument.name.value not in PAGE_ARGUMENTS:
                continue
            value = argument.value
            if isinstance(value, VariableNode):
                raw = self.variables.get(value.name.value)
                size = len(raw) if isinstance(raw, list) else raw if isinstance(raw, int) else MAX_PAGE
            elif isinstance(value, IntValueNode):
                size = int(value.value)
            elif isinstance(value, ListValueNode):
                size = len(value.values)
            else:
                size = MAX_PAGE
            if size > MAX_PAGE:
                self.oversized.append((field.name.value, size))
            return max(1, size)
        return DEFAULT_PAGE if field.name.value in PAGED_FIELDS else 1

    def selection(self, selection_set: SelectionSetNode | None, seen: frozenset[str] = frozenset()) -> tuple[int, int]:
        """(depth, cost) of a selection set."""
        if selection_set is None:
            return 0, 0
        depth, cost = 0, 0
        for node in selection_set.selections:
            if isinstance(node, FieldNode):
                name = node.name.value
                if name in INTROSPECTION_FIELDS:
                    self.introspection = True
                if name.startswith("__"):
                    continue  # __typename is free; introspection is allowed or refused whole
                child_depth, child_cost = self.selection(node.selection_set, seen)
                depth = max(depth, 1 + child_depth)
                cost += 1 + self.page(node) * child_cost
            elif isinstance(node, InlineFragmentNode):
                child_depth, child_cost = self.selection(node.selection_set, seen)
                depth, cost = max(depth, child_depth), cost + child_cost
            elif isinstance(node, FragmentSpreadNode):
                name = node.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in seen:
                    continue  # unknown or cyclic: graphql-core's own rules report it
                child_depth, child_cost = self.selection(fragment.selection_set, seen | {name})
                depth, cost = max(depth, child_depth), cost + child_cost
        return depth, cost


def refusal(message: str, **figures: Any) -> GraphQLError:
    return GraphQLError(message, extensions={"code": QueryRefused.code, "status": QueryRefused.status, **figures})


def guard(settings: GraphQLSettings, variables: Mapping[str, Any] | None) -> type[ASTValidationRule]:
    """A validation rule bound to one request's tenant limits and variables."""

    class Guard(ASTValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self.fragments = {d.name.value: d for d in context.document.definitions
                              if isinstance(d, FragmentDefinitionNode)}

        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            measure = Measure(self.fragments, variables or {})
            depth, cost = measure.selection(node.selection_set)
            if measure.introspection and not settings.introspection:
                self.report_error(refusal("introspection is off for this tenant (on for sandbox tenants or with "
                                          "the tenant's graphql setting introspection: true)", reason="introspection"))
            for field, size in measure.oversized:
                self.report_error(refusal(f"{field}: a page holds at most {MAX_PAGE} items (asked {size})",
                                          reason="page-size", maxPage=MAX_PAGE, asked=size))
            if depth > settings.max_depth:
                self.report_error(refusal(f"the query is {depth} levels deep; this tenant allows {settings.max_depth}",
                                          reason="depth", depth=depth, maxDepth=settings.max_depth))
            if cost > settings.max_cost:
                self.report_error(refusal(f"the query may touch {cost} objects; this tenant allows "
                                          f"{settings.max_cost}: ask for smaller pages or fewer nested lists",
                                          reason="cost", cost=cost, maxCost=settings.max_cost))

    return Guard


def measure(document: Any, variables: Mapping[str, Any] | None = None) -> tuple[int, int]:
    """(depth, cost) of every operation of a parsed document, the largest (tests and docs)."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    worst = (0, 0)
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            got = Measure(fragments, variables or {}).selection(definition.selection_set)
            worst = (max(worst[0], got[0]), max(worst[1], got[1]))
    return worst
