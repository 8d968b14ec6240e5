"""What the Functions host pays to index the app: ``import function_app`` in a fresh
interpreter must load no subsystem the triggers only need when they run.

Every module imported at indexing time is paid on every cold start, by every
function of the app (a timer pays for FastAPI if the HTTP module imports it at
the top). The trigger modules import ``shared`` lazily, inside their bodies;
this test fails the day someone adds a heavy import at module level in
``function_app.py``, ``functions/`` or a module they import (``shared.jobs``,
``shared.store.layout``, ``functions.bindings``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# Subsystems that cost tens to hundreds of milliseconds each and that no trigger needs
# before it runs. ``shared.platform`` stands for the whole product: it imports everything.
HEAVY = (
    "fastapi", "starlette", "pydantic", "strawberry", "graphql",
    "azure.cosmos", "azure.eventhub", "azure.identity", "azure.keyvault", "azure.storage", "azure.monitor",
    "lark", "wasmtime", "cryptography", "argon2", "jsonschema", "jsonschema_rs", "httpx",
    "opentelemetry", "prometheus_client", "uvicorn",
    "shared.platform", "shared.api", "shared.app", "shared.rules", "shared.schemas",
    # The signal modules that import OpenTelemetry. ``shared.telemetry.logs`` is not here: it is
    # standard library only, and the triggers' log calls need its ``fields``.
    "shared.telemetry.tracing", "shared.telemetry.metrics", "shared.telemetry.azure_monitor",
)

PROBE = """
import json, sys, time
start = time.perf_counter()
import function_app
elapsed = time.perf_counter() - start
print(json.dumps({"modules": sorted(sys.modules), "seconds": elapsed}))
"""


def _import_in_fresh_interpreter() -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, check=False, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _loaded(modules: list[str], package: str) -> list[str]:
    return [name for name in modules if name == package or name.startswith(package + ".")]


def test_importing_function_app_loads_no_heavy_subsystem() -> None:
    modules = _import_in_fresh_interpreter()["modules"]
    assert isinstance(modules, list) and "function_app" in modules
    loaded = {package: _loaded(modules, package)[:3] for package in HEAVY if _loaded(modules, package)}
    assert loaded == {}, f"import function_app loaded heavy modules (import them inside the trigger body): {loaded}"


def test_the_probe_sees_a_heavy_import_when_there_is_one() -> None:
    # The check above can fail: importing the platform module from the trigger package does load them.
    probe = "import json, sys, shared.platform; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=False, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    modules = json.loads(done.stdout)
    assert _loaded(modules, "pydantic") and _loaded(modules, "shared.schemas")
