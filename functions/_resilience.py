"""The failure policy of the batch triggers: no batch is ever lost.

Why a policy is needed: the Event Hubs trigger moves its checkpoint past a
batch once the invocation ends, failed or not, and the Cosmos DB trigger moves
its lease past a batch of changes the same way. An exception alone therefore
drops the batch. Three layers make sure it does not:

1. **In-process retry.** ``process_batch`` runs the handler on the whole
   batch up to ``InProcessRetry.attempts`` times with a short backoff. The
   handlers are idempotent (ledger idempotency markers; the projector moves a
   balance only forward), so a re-run after a partial success is safe.
2. **Transient failures go back to the host.** If the last error is an
   infrastructure one (``is_transient``: the store or the bus unavailable, a
   lost race that kept being lost), the batch is not poisoned: nothing could
   be processed right now anyway, and the poison store lives in the same store.
   ``BatchDeferred`` is raised, and the trigger's host retry policy
   (``HostRetry``: exponential backoff, unbounded) re-runs the invocation
   without moving the checkpoint or the lease: that partition (or lease) waits
   for the store to come back, keeping per-customer order. Event Hubs retention
   and the change feed hold the data meanwhile. A worker restart is also safe:
   the checkpoint never moved.
3. **Anything else is isolated and poisoned.** A deterministic failure (a bug,
   an invariant, data the handler cannot take) would fail every retry, so the
   batch is split: each item runs alone, the items that succeed are done, and
   each item that fails is written to the poison store with its reason. When
   the trigger needs per-key order (ingest: one customer's orders in order),
   the later items of a failed item's key are poisoned with it, untried, so a
   replay restores them in their order. Only then does the invocation return
   normally. If a poison write fails, ``PoisonWriteFailed`` is raised and the
   host retries the invocation (layer 2), so an item is dropped only after it
   is safely in the poison store.

``shared.app.replay`` puts poisoned items back once the cause is fixed.

What is not covered: a deterministic error misclassified as transient keeps its
partition waiting (visible as repeated ``BatchDeferred`` errors in the logs);
the transient list is therefore narrow and typed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Generic, Hashable, Sequence, TypeVar

from shared.errors import (
    AccrueError,
    BusUnavailable,
    LedgerConflict,
    PreconditionFailed,
    StoreUnavailable,
)
from shared.telemetry.logs import fields

T = TypeVar("T")

# Errors that say "the infrastructure is not there right now", never "this item is bad".
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    StoreUnavailable,
    BusUnavailable,
    LedgerConflict,       # a customer partition kept being raced: retry later
    PreconditionFailed,   # an ETag race (the projector's balance) kept being lost
    ConnectionError,
    TimeoutError,
)


def is_transient(error: BaseException) -> bool:
    return isinstance(error, TRANSIENT_ERRORS)


class BatchDeferred(AccrueError):
    """The batch failed with a transient error: raised so the host retries it."""

    code = "batch-deferred"
    status = 503


class PoisonWriteFailed(AccrueError):
    """An item could not be written to the poison store: raised so the host
    retries the invocation rather than drop the item."""

    code = "poison-write-failed"
    status = 503


@dataclass(frozen=True)
class InProcessRetry:
    """Bounded retries inside one invocation, for blips shorter than a host retry."""

    attempts: int = 3
    backoff_seconds: tuple[float, ...] = (0.5, 2.0)

    def delay(self, failed_attempt: int) -> float:
        if not self.backoff_seconds:
            return 0.0
        return self.backoff_seconds[min(failed_attempt - 1, len(self.backoff_seconds) - 1)]


@dataclass(frozen=True)
class HostRetry:
    """The host's retry policy of a trigger (the ``@bp.retry`` arguments).

    Unbounded (``-1``): a host retry happens only when the store or the bus is
    unavailable, or a poison write failed; giving up then would drop the batch.
    Intervals are ``HH:MM:SS``, the format the Python worker parses.
    """

    strategy: str = "exponential_backoff"
    max_retry_count: str = "-1"
    minimum_interval: str = "00:00:05"
    maximum_interval: str = "00:15:00"


@dataclass
class BatchResult(Generic[T]):
    size: int
    attempts: int = 0
    isolated: bool = False
    poisoned: list[str] = field(default_factory=list)  # poison ids

    @property
    def fully_processed(self) -> bool:
        return not self.poisoned


def process_batch(
    items: Sequence[T],
    handle: Callable[[Sequence[T]], object],
    poison: Callable[[T, str], str],
    *,
    source: str,
    key: Callable[[T], Hashable | None] | None = None,
    retry: InProcessRetry = InProcessRetry(),
    sleep: Callable[[float], None] = time.sleep,
    log: logging.Logger | None = None,
) -> BatchResult[T]:
    """Run ``handle`` over ``items`` under the policy above.

    ``poison(item, reason)`` stores one item and returns its poison id. ``key``
    gives an item's ordering key (``None``: no order to keep). Returns normally
    only when every item was handled or is in the poison store.
    """
    log = log or logging.getLogger(f"accrue.functions.{source}")
    result: BatchResult[T] = BatchResult(size=len(items))
    if not items:
        return result
    last: Exception | None = None
    for attempt in range(1, max(retry.attempts, 1) + 1):
        result.attempts = attempt
        try:
            handle(items)
            return result
        except Exception as exc:  # noqa: BLE001 - every failure is classified below
            last = exc
            log.warning("%s: batch of %d failed (attempt %d/%d): %s: %s",
                        source, len(items), attempt, retry.attempts, type(exc).__name__, exc,
                        extra=fields(source=source, count=len(items), attempt=attempt, error=type(exc).__name__))
            if attempt < retry.attempts:
                sleep(retry.delay(attempt))
    assert last is not None
    if is_transient(last):
        from shared.telemetry import metrics  # noqa: PLC0415 - OpenTelemetry stays out of indexing

        metrics.batch_deferred(source)
        raise BatchDeferred(
            f"{source}: batch of {len(items)} deferred to the host's retry after {result.attempts} attempts: "
            f"{type(last).__name__}: {last}"
        ) from last

    log.error("%s: batch of %d keeps failing with %s: running its items one by one",
              source, len(items), type(last).__name__,
              extra=fields(source=source, count=len(items), error=type(last).__name__))
    result.isolated = True
    failed_keys: dict[Hashable, str] = {}
    for index, item in enumerate(items):
        item_key = key(item) if key is not None else None
        if item_key is not None and item_key in failed_keys:
            reason = (f"{source}: not attempted, an earlier item of the same key {item_key!r} failed "
                      f"({failed_keys[item_key]}); replay them together, in order")
            result.poisoned.append(_put(poison, item, reason, source))
            continue
        try:
            handle([item])
        except Exception as exc:  # noqa: BLE001 - classified: transient goes back to the host
            if is_transient(exc):
                # The infrastructure went away mid-way: let the host re-run the
                # whole batch (handled items are idempotent, poisoned ones replay
                # idempotently too).
                raise BatchDeferred(
                    f"{source}: item {index} of {len(items)} hit a transient error while isolating: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            reason = (f"{source}: failed {result.attempts} times in a batch of {len(items)} and once alone: "
                      f"{type(exc).__name__}: {exc}")
            result.poisoned.append(_put(poison, item, reason, source))
            log.error("%s: item %d of %d poisoned: %s", source, index, len(items), reason,
                      extra=fields(source=source, poison_id=str(result.poisoned[-1]), error=type(exc).__name__))
            if item_key is not None:
                failed_keys[item_key] = f"{type(exc).__name__}: {exc}"
    return result


def _put(poison: Callable[[T, str], str], item: T, reason: str, source: str) -> str:
    try:
        return poison(item, reason)
    except Exception as exc:  # noqa: BLE001 - any poison failure must reach the host
        raise PoisonWriteFailed(
            f"{source}: could not write a failed item to the poison store ({type(exc).__name__}: {exc}); "
            "the host will retry the invocation"
        ) from exc
