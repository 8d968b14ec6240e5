"""Typed errors of the domain and of the ports.

Adapters translate SDK and driver errors into these, the domain raises them, and
the HTTP edge maps each to one RFC 9457 problem type (``shared.api.problems``).
Every error carries a stable ``code`` (the problem type's slug) and a message a
person can act on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class AccrueError(Exception):
    """Base of every error the product raises on purpose."""

    code = "accrue-error"
    status = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


# --- client mistakes (4xx) ---------------------------------------------------------


@dataclass(frozen=True)
class FieldProblem:
    """One invalid field: a JSON-pointer-like dotted path and what is wrong."""

    field: str
    message: str


class ValidationFailed(AccrueError):
    code = "validation-failed"
    status = 422

    def __init__(self, message: str, problems: list[FieldProblem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class NotFound(AccrueError):
    code = "not-found"
    status = 404


class Unauthenticated(AccrueError):
    code = "unauthenticated"
    status = 401


class Forbidden(AccrueError):
    code = "forbidden"
    status = 403


class Conflict(AccrueError):
    """The request contradicts state already recorded (e.g. an order id reused)."""

    code = "conflict"
    status = 409


class NotYetProcessed(Conflict):
    code = "not-yet-processed"


class PayloadTooLarge(AccrueError):
    code = "payload-too-large"
    status = 413


# --- ledger -----------------------------------------------------------------------


class LedgerConflict(AccrueError):
    """Another writer appended to the same customer partition first.

    Raised by the ledger when bounded retries are exhausted; a single conflict is
    retried internally and never reaches a caller.
    """

    code = "ledger-conflict"
    status = 409


class InsufficientPoints(AccrueError):
    code = "insufficient-points"
    status = 422


class LedgerInvariantBroken(AccrueError):
    """An invariant of the ledger does not hold: a bug, never a client mistake."""

    code = "ledger-invariant-broken"
    status = 500


# --- store port -------------------------------------------------------------------


class StoreError(AccrueError):
    code = "store-error"
    status = 503


class DocumentExists(StoreError):
    code = "document-exists"
    status = 409


class PreconditionFailed(StoreError):
    code = "precondition-failed"
    status = 412


class ImmutableDocument(StoreError):
    """An attempt to replace or delete a document of an append-only container."""

    code = "immutable-document"
    status = 500


@dataclass
class BatchFailed(StoreError):
    """A transactional batch was refused as a whole; ``index`` names the operation."""

    message: str
    index: int
    cause: StoreError = field(repr=False)

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)
        self.details = {"index": self.index}

    code = "batch-failed"
    status = 409


class BatchSkipped(StoreError):
    """Not attempted: an earlier batch of the same partition in the same call
    failed, and this one was planned on what that one would have written."""

    code = "batch-skipped"
    status = 409


class StoreUnavailable(StoreError):
    code = "store-unavailable"
    status = 503


# --- configuration ----------------------------------------------------------------


class ConfigurationError(AccrueError):
    """A setting is missing or wrong; the message names the setting."""

    code = "configuration-error"
    status = 500


class BusUnavailable(AccrueError):
    code = "bus-unavailable"
    status = 503
