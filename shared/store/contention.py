"""Bounded, jittered retries for a read-decide-write that lost a conditional write.

Every compare-and-swap in Accrue (an upsert guarded by the ETag it read, a create
whose id is the key) is retried by re-reading and deciding again on what won. How
many times, and how long to wait between tries, is decided here once, so that a
crowd of writers on one document (twenty tills redeeming one voucher, twenty admins
rotating one webhook secret) is served one by one instead of failing the unlucky:

* ``ATTEMPTS`` tries: enough that each of a burst of twenty racers, each winning
  the next round with odds of one in the number still racing, finishes; a writer
  that still loses gets the caller's ``Conflict`` (409) and nothing of its request
  was written;
* before each retry (never before the first try) a pause drawn uniformly from
  zero to a cap that grows with the attempt (20 ms at most), so the losers of one
  round do not collide again in lockstep in the next.

Never a process-local lock: on Azure the writers are separate instances, and the
store's conditional writes are the only arbiter.
"""

from __future__ import annotations

import random
import time
from typing import Iterator

ATTEMPTS = 64
STEP_SECONDS = 0.0005
CAP_SECONDS = 0.02


def attempts(limit: int = ATTEMPTS) -> Iterator[int]:
    """``0 .. limit - 1``; from the second on, after a jittered pause. Loop over it,
    ``continue`` on a lost race, return on success, and raise ``Conflict`` after it."""
    assert limit >= 1
    for attempt in range(limit):
        if attempt:
            pause(attempt)
        yield attempt


def pause(attempt: int) -> None:
    """The pause before retry number ``attempt`` (1 for the first retry): uniform in
    [0, min(20 ms, 0.5 ms x attempt)]."""
    assert attempt >= 1
    time.sleep(random.uniform(0, min(CAP_SECONDS, STEP_SECONDS * attempt)))
