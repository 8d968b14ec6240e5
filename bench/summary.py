"""The figures a benchmark script reports to ``make bench``'s summary table.

``record`` appends one JSON line (measure, value, unit, target, direction and the
machine's 1-minute load average at that moment) to the file named by
``ACCRUE_BENCH_SUMMARY``, which ``bench/run_all.py`` sets; run alone, a script's
``record`` calls do nothing. A figure is reported, never asserted: a slow figure
is shown against its target, it does not fail the run."""

from __future__ import annotations

import json
import os

ENV = "ACCRUE_BENCH_SUMMARY"


def record(measure: str, value: float, unit: str, *, target: float | None = None,
           higher_is_better: bool = True) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    line = {"script": os.environ.get("ACCRUE_BENCH_SCRIPT", ""), "measure": measure,
            "value": float(value), "unit": unit, "target": target, "higher": higher_is_better,
            "load": os.getloadavg()[0]}
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")
