"""Cold start of the Functions app: what a new worker process pays before it answers.

Each run is a fresh interpreter (the host starts a new worker process on a cold
start) with the app settings of the embedded default in a temporary folder, and
measures three figures:

* ``import``: ``import function_app`` (what the host pays to index the app, for
  every function of it, before any invocation);
* ``first request``: the first ``GET /health`` through the HTTP function
  (``AsgiFunctionApp``'s own user function, as the worker calls it), which
  builds the platform and the API;
* ``second request``: the next one, warm, for comparison.

It prints the median, the minimum and the maximum of ``--runs`` runs, and with
``--write`` records them in ``bench/RESULTS-coldstart.md``. ``--profile``
prints instead the cumulative cProfile of one cold import plus first request
(the top functions), to find what to make lazy next.

Usage: ``python bench/bench_coldstart.py [--runs N] [--write] [--profile]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "RESULTS-coldstart.md"

# One cold start, in the child interpreter. Prints one JSON line of seconds.
PROBE = r"""
import asyncio, json, sys, time
start, cpu_start = time.perf_counter(), time.process_time()
import function_app
imported, cpu_imported = time.perf_counter(), time.process_time()
modules_at_import = len(sys.modules)
import azure.functions as func
http = next(f for f in function_app.app.get_functions() if f.get_function_name() == "http_app_func")
handler = http.get_user_function()
def get():
    request = func.HttpRequest(method="GET", url="http://accrue.bench/health", headers={}, body=b"")
    started = time.perf_counter()
    response = asyncio.run(handler(request, None))
    assert response.status_code == 200, response.get_body()
    return time.perf_counter() - started
indexed, cpu_indexed = time.perf_counter(), time.process_time()
first = get()
cpu_first = time.process_time() - cpu_indexed
second = get()
print(json.dumps({"import": imported - start, "index": indexed - imported, "first": first, "second": second,
                  "cpu_import": cpu_imported - cpu_start, "cpu_first": cpu_first,
                  "modules_at_import": modules_at_import}))
"""

PROFILE = r"""
import asyncio, cProfile, pstats, sys
profile = cProfile.Profile()
profile.enable()
import function_app
from functions import _platform
_platform.lazy_api()._app.get()  # the first request's build, on this thread (cProfile sees one thread)
import azure.functions as func
http = next(f for f in function_app.app.get_functions() if f.get_function_name() == "http_app_func")
request = func.HttpRequest(method="GET", url="http://accrue.bench/health", headers={}, body=b"")
response = asyncio.run(http.get_user_function()(request, None))
profile.disable()
assert response.status_code == 200
pstats.Stats(profile).sort_stats("cumulative").print_stats(45)
"""


def child_env(data_dir: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("ACCRUE_", "COSMOS_", "EVENTHUB_", "OTEL_", "APPLICATIONINSIGHTS_"))}
    env.update({"PYTHONPATH": str(ROOT), "ACCRUE_DATA_DIR": data_dir})
    return env


def one_run() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="accrue-coldstart-") as data_dir:
        done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=child_env(data_dir),
                              check=False, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"cold start run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return f"median {statistics.median(ms):7.1f} ms   min {ms[0]:7.1f}   max {ms[-1]:7.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--write", action="store_true", help=f"record the figures in {RESULTS.name}")
    parser.add_argument("--profile", action="store_true", help="print the cProfile of one cold start")
    args = parser.parse_args()

    if args.profile:
        with tempfile.TemporaryDirectory(prefix="accrue-coldstart-") as data_dir:
            return subprocess.run([sys.executable, "-c", PROFILE], cwd=ROOT, env=child_env(data_dir), check=False).returncode

    one_run()  # warms the OS file cache and writes the bytecode caches, as a deployed app has them
    runs = [one_run() for _ in range(args.runs)]
    modules = runs[0]["modules_at_import"]
    lines = [
        f"import function_app         {summary([r['import'] for r in runs])}   ({modules} modules)",
        f"first request (builds all)  {summary([r['first'] for r in runs])}",
        f"second request (warm)       {summary([r['second'] for r in runs])}",
        f"import + first request      {summary([r['import'] + r['index'] + r['first'] for r in runs])}",
        f"CPU time of the import      {summary([r['cpu_import'] for r in runs])}",
        f"CPU time of first request   {summary([r['cpu_first'] for r in runs])}",
    ]
    machine = f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPU, {args.runs} runs"
    print(f"cold start ({machine})")
    for line in lines:
        print("  " + line)
    if args.write:
        RESULTS.write_text(
            "# Cold start of the Functions app (bench/bench_coldstart.py)\n\n"
            "Fresh interpreter per run, embedded default (SQLite, local queue) in a temporary folder, "
            "bytecode caches warm (as deployed). `first request` is `GET /health` through the HTTP "
            "function's own `AsgiFunctionApp` handler: it builds the platform and the API. The CPU "
            "times (all threads of the process) vary less than wall time on a shared machine.\n\n"
            f"Machine: {machine}.\n\n```\n" + "\n".join(lines) + "\n```\n")
        print(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
