"""The batch failure policy on its own: retry, defer to the host, isolate, poison."""

from __future__ import annotations

from typing import Any, Sequence

import pytest

from functions._resilience import (
    BatchDeferred,
    InProcessRetry,
    PoisonWriteFailed,
    is_transient,
    process_batch,
)
from shared.errors import BusUnavailable, LedgerConflict, StoreUnavailable, ValidationFailed

FAST = InProcessRetry(attempts=3, backoff_seconds=(0.5, 2.0))


class Recorder:
    def __init__(self, fail: Any = None) -> None:
        self.fail = fail  # callable(batch) -> Exception | None
        self.calls: list[list[str]] = []
        self.poisoned: list[tuple[str, str]] = []
        self.sleeps: list[float] = []

    def handle(self, items: Sequence[str]) -> None:
        self.calls.append(list(items))
        error = self.fail(items) if self.fail else None
        if error is not None:
            raise error

    def poison(self, item: str, reason: str) -> str:
        self.poisoned.append((item, reason))
        return f"p-{item}"

    def run(self, items: list[str], **kwargs: Any) -> Any:
        return process_batch(items, self.handle, self.poison, source="test", retry=FAST,
                             sleep=self.sleeps.append, **kwargs)


def test_a_healthy_batch_runs_once() -> None:
    rec = Recorder()
    result = rec.run(["a", "b"])
    assert rec.calls == [["a", "b"]] and result.attempts == 1 and result.fully_processed
    assert rec.sleeps == []


def test_an_empty_batch_does_nothing() -> None:
    rec = Recorder()
    assert rec.run([]).size == 0 and rec.calls == []


def test_a_blip_is_absorbed_by_the_in_process_retry_with_backoff() -> None:
    errors = iter([StoreUnavailable("503"), StoreUnavailable("503"), None])
    rec = Recorder(fail=lambda items: next(errors))
    result = rec.run(["a"])
    assert result.attempts == 3 and result.fully_processed and not result.isolated
    assert rec.sleeps == [0.5, 2.0]


@pytest.mark.parametrize("error", [StoreUnavailable("down"), BusUnavailable("down"), LedgerConflict("raced"),
                                   ConnectionResetError("reset"), TimeoutError("slow")])
def test_transient_failures_are_deferred_to_the_host_and_never_poisoned(error: Exception) -> None:
    rec = Recorder(fail=lambda items: error)
    with pytest.raises(BatchDeferred) as caught:
        rec.run(["a", "b"])
    assert caught.value.__cause__ is error
    assert len(rec.calls) == 3 and rec.poisoned == []


def test_deterministic_failures_are_isolated_and_only_the_bad_items_poisoned() -> None:
    rec = Recorder(fail=lambda items: ValueError("bad b") if "b" in items else None)
    result = rec.run(["a", "b", "c"])
    assert rec.calls[3:] == [["a"], ["b"], ["c"]]
    assert result.isolated and result.poisoned == ["p-b"]
    [(item, reason)] = rec.poisoned
    assert item == "b" and "ValueError: bad b" in reason and "3 times" in reason


def test_later_items_of_a_failed_key_are_poisoned_untried_to_keep_their_order() -> None:
    rec = Recorder(fail=lambda items: ValueError("x") if "k1-first" in items else None)
    result = rec.run(["k1-first", "k2-a", "k1-second", "k2-b"], key=lambda item: item.split("-")[0])
    assert rec.calls[3:] == [["k1-first"], ["k2-a"], ["k2-b"]]
    assert result.poisoned == ["p-k1-first", "p-k1-second"]
    assert "not attempted" in rec.poisoned[1][1]


def test_a_transient_error_while_isolating_hands_the_batch_back() -> None:
    def fail(items: Sequence[str]) -> Exception | None:
        if len(items) > 1:
            return ValueError("bug")
        return StoreUnavailable("gone") if items[0] == "b" else None

    rec = Recorder(fail=fail)
    with pytest.raises(BatchDeferred):
        rec.run(["a", "b", "c"])


def test_a_failed_poison_write_fails_the_invocation() -> None:
    def poison(item: str, reason: str) -> str:
        raise StoreUnavailable("poison down")

    with pytest.raises(PoisonWriteFailed) as caught:
        process_batch(["a"], lambda items: (_ for _ in ()).throw(ValueError("bug")), poison,
                      source="test", retry=InProcessRetry(attempts=1), sleep=lambda s: None)
    assert isinstance(caught.value.__cause__, StoreUnavailable)


def test_client_mistakes_and_bugs_are_not_transient() -> None:
    assert not is_transient(ValidationFailed("bad"))
    assert not is_transient(KeyError("x"))
    assert is_transient(StoreUnavailable("503"))
