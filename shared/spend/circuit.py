"""A circuit breaker for calls to one partner: closed, open, half-open.

Why: a partner that is down should cost a redemption a fast, clear refusal, not
every request's full timeout-and-retry budget (which would also pile up points
held in reservations while callers wait).

Guarantees, per breaker (one per partner, per process: each Functions instance
learns a partner's health on its own, which is enough to shed load):

* **closed**: calls go through; ``failure_threshold`` consecutive failures open it.
* **open**: calls are refused at once (``allow()`` is False) until
  ``cooldown_seconds`` have passed on the given clock.
* **half-open**: after the cooldown exactly one trial call is let through; its
  success closes the breaker, its failure opens it again for another cooldown.
  Other callers are refused while the trial is in flight.

Thread-safe; the clock is injected (monotonic seconds) so tests need no sleeps.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable


class CircuitState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass
class CircuitBreaker:
    failure_threshold: int = 5
    cooldown_seconds: float = 30.0
    now: Callable[[], float] = time.monotonic
    _state: CircuitState = field(default=CircuitState.CLOSED, init=False)
    _failures: int = field(default=0, init=False)
    _opened_at: float = field(default=0.0, init=False)
    _trial_in_flight: bool = field(default=False, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        assert self.failure_threshold >= 1 and self.cooldown_seconds > 0

    @property
    def state(self) -> CircuitState:
        with self._lock:
            if self._state is CircuitState.OPEN and self.now() - self._opened_at >= self.cooldown_seconds:
                return CircuitState.HALF_OPEN
            return self._state

    def retry_after(self) -> float:
        """Seconds until an open breaker lets a trial call through (0 when not open)."""
        with self._lock:
            if self._state is not CircuitState.OPEN:
                return 0.0
            return max(0.0, self.cooldown_seconds - (self.now() - self._opened_at))

    def allow(self) -> bool:
        """Whether a call may go out now; a True in half-open reserves the one trial."""
        with self._lock:
            if self._state is CircuitState.CLOSED:
                return True
            if self._state is CircuitState.OPEN:
                if self.now() - self._opened_at < self.cooldown_seconds:
                    return False
                self._state = CircuitState.HALF_OPEN
                self._trial_in_flight = False
            if self._trial_in_flight:
                return False
            self._trial_in_flight = True
            return True

    def record_success(self) -> None:
        with self._lock:
            self._state, self._failures, self._trial_in_flight = CircuitState.CLOSED, 0, False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state is CircuitState.HALF_OPEN or self._failures >= self.failure_threshold:
                self._state, self._opened_at, self._trial_in_flight = CircuitState.OPEN, self.now(), False
