"""Timer triggers: one per job of ``shared.jobs.JOBS``, on the job's NCRONTAB
schedule (the local ``Scheduler`` reads the same list).

The schedules are repeated here as plain data (``SCHEDULES``), so indexing the
app imports nothing of ``shared`` (a cold start builds the product only when a
trigger fires); a unit test holds this table equal to ``shared.jobs.JOBS``.

``run_on_startup`` is off: a scale-out or a restart must not start an extra
run. A failing job raises, so the host logs the failure; the next scheduled
run is the retry (jobs are read-only, idempotent, or resume from a stored
cursor: the fan-out jobs' work items, shared/workitems.py).
"""

from __future__ import annotations

import logging
from typing import Callable

import azure.functions as func


log = logging.getLogger("accrue.functions.timers")

TIMER_FUNCTION_PREFIX = "timer_"  # = functions.bindings.TIMER_FUNCTION_PREFIX (checked by a test)

# (job name, NCRONTAB schedule): the same as shared.jobs.JOBS, in the same order.
SCHEDULES: tuple[tuple[str, str], ...] = (
    ("order-relay", "*/15 * * * * *"),
    ("reconcile", "0 30 2 * * *"),
    ("work-items", "15 * * * * *"),
    ("webhooks", "*/10 * * * * *"),
    ("exports", "0 0 3 * * *"),
    ("export-microbatch", "0 * * * * *"),
    ("reservations", "0 * * * * *"),
    ("tiers", "0 5 * * * *"),
    ("expiry", "0 15 * * * *"),
    ("maturation", "0 20 * * * *"),
    ("audit-archive", "0 45 3 * * *"),
    ("erasures", "30 * * * * *"),
    ("ttl-sweep", "0 50 * * * *"),
    ("ledger-digest", "0 20 2 * * *"),
    ("transfers", "45 * * * * *"),
    ("vouchers", "0 */10 * * * *"),
    ("occasions", "0 10 * * * *"),
)

bp = func.Blueprint()


def function_name(job_name: str) -> str:
    return TIMER_FUNCTION_PREFIX + job_name


def run_job(name: str) -> object:
    """The body of every timer: the named job over this worker's platform (both built on first use)."""
    from functions._platform import get_platform  # noqa: PLC0415 - nothing of shared at index time
    from shared.jobs import BY_NAME, run_job as run_and_record  # noqa: PLC0415

    return run_and_record(BY_NAME[name], get_platform())  # records the run (accrue status, metrics)


def _register(name: str, schedule: str) -> None:
    def trigger(timer: func.TimerRequest) -> None:
        if timer.past_due:
            from shared.telemetry.logs import fields  # noqa: PLC0415 - nothing of shared at index time

            log.warning("job %s is running late (past due)", name, extra=fields(job=name))
        run_job(name)

    # Each job gets its own Python function (the worker keys functions by it) and name.
    trigger.__name__ = trigger.__qualname__ = function_name(name)
    decorate: Callable[..., object] = bp.function_name(function_name(name))
    decorate(bp.timer_trigger(arg_name="timer", schedule=schedule, run_on_startup=False)(trigger))


for _name, _schedule in SCHEDULES:
    _register(_name, _schedule)
