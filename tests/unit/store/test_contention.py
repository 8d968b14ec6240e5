"""The shared retry budget of every compare-and-swap (shared/store/contention.py)."""

from __future__ import annotations

import pytest

from shared.store import contention


def test_attempts_pause_before_every_retry_but_not_the_first_try(monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(contention.time, "sleep", pauses.append)
    seen = []
    for attempt in contention.attempts(5):
        seen.append((attempt, len(pauses)))
    assert seen == [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)]


def test_a_pause_grows_with_the_attempt_up_to_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(contention.time, "sleep", pauses.append)
    monkeypatch.setattr(contention.random, "uniform", lambda low, high: high)  # the longest it may be
    for attempt in (1, 2, 10, 1000):
        contention.pause(attempt)
    assert pauses == [contention.STEP_SECONDS, 2 * contention.STEP_SECONDS, 10 * contention.STEP_SECONDS,
                      contention.CAP_SECONDS]


def test_a_loop_that_never_wins_ends_after_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contention.time, "sleep", lambda seconds: None)
    assert sum(1 for _ in contention.attempts()) == contention.ATTEMPTS
    with pytest.raises(AssertionError):
        list(contention.attempts(0))
