"""Timer triggers: one per job of ``shared.jobs.JOBS``, on the job's NCRONTAB
schedule (the local ``Scheduler`` reads the same list).

``run_on_startup`` is off: a scale-out or a restart must not start an extra
run. A failing job raises, so the host logs the failure; the next scheduled
run is the retry (jobs are read-only or idempotent by design).
"""

from __future__ import annotations

import logging
from typing import Callable

import azure.functions as func

from functions import bindings
from functions._platform import get_platform
from shared import jobs
from shared.jobs import JOBS, Job

log = logging.getLogger("accrue.functions.timers")

bp = func.Blueprint()


def function_name(job: Job) -> str:
    return bindings.TIMER_FUNCTION_PREFIX + job.name


def _register(job: Job) -> None:
    def run_job(timer: func.TimerRequest) -> None:
        if timer.past_due:
            log.warning("job %s is running late (past due)", job.name)
        jobs.run_job(job, get_platform())  # runs it and records the run (accrue status, metrics)

    # Each job gets its own Python function (the worker keys functions by it) and name.
    run_job.__name__ = run_job.__qualname__ = function_name(job)
    decorate: Callable[..., object] = bp.function_name(function_name(job))
    decorate(bp.timer_trigger(arg_name="timer", schedule=job.schedule, run_on_startup=False)(run_job))


for _job in JOBS:
    _register(_job)
