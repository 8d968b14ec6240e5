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


class HeldForReview(Conflict):
    """An order's points are held for a fraud review: a refund waits for the decision."""

    code = "held-for-review"


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


class NothingToExpire(Conflict):
    """The expiry job planned an EXPIRE for a lot that has nothing left (spent or
    expired meanwhile): the plan writes nothing (shared/expiry/service.py)."""

    code = "nothing-to-expire"


class NothingToMature(Conflict):
    """The maturation job planned to mature a pending earn that is settled already
    (matured or cancelled by a refund meanwhile): the plan writes nothing
    (shared/pending/maturation.py)."""

    code = "nothing-to-mature"


class PointsOutOfRange(AccrueError):
    """A transaction would take one of a customer's running totals (balance, pending,
    reserved, lifetime earned, a wallet's balance) beyond ±(2^53 - 1): the largest integer
    every reader of the documents holds exactly (Cosmos DB and JavaScript keep JSON
    numbers as doubles). Refused, nothing written."""

    code = "points-out-of-range"
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


# --- spending: redemptions, conversions, partners (issue 6, shared/spend) ------------
# ``extensions`` are RFC 9457 extension members the problem response carries
# (e.g. the available balance, the reservation's state); never personal data.


class SpendError(AccrueError):
    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message, **extensions)
        self.extensions = {k: v for k, v in extensions.items() if v is not None}


class NotEnoughPoints(SpendError, InsufficientPoints):
    """A redemption or conversion asks for more than the available balance (422, names ``available``)."""


class OutOfStock(SpendError, Conflict):
    code = "out-of-stock"


class RewardNotAvailable(SpendError, Conflict):
    """Outside the reward's validity dates."""

    code = "reward-not-available"


class RedemptionLimitReached(SpendError, Conflict):
    code = "redemption-limit-reached"


class ReservationExpired(SpendError, Conflict):
    code = "reservation-expired"


class ReservationSettled(SpendError, Conflict):
    """The reservation was already confirmed, cancelled, released or rejected."""

    code = "reservation-settled"


class ReservationInReview(SpendError, Conflict):
    code = "reservation-in-review"


class PartnerRejected(SpendError):
    """The partner refused the request for good (a 4xx of theirs); the points were given back."""

    code = "partner-rejected"
    status = 502


class PartnerUnavailable(SpendError):
    """The partner timed out, failed or its circuit is open; the points were given back."""

    code = "partner-unavailable"
    status = 503


# --- fraud controls and the review queue (issue 6, shared/fraud, shared/reviews) -------


class ReviewDecided(Conflict):
    """The review was already approved, rejected or withdrawn: a decision is final (409).
    ``extensions`` (the review id, its status, who decided) go into the problem response."""

    code = "review-decided"

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message, **extensions)
        self.extensions = {k: v for k, v in extensions.items() if v is not None}
