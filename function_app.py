"""The Azure Functions app (Python v2 programming model), composed from ``functions/``.

The host indexes this module: it holds exactly one app object, the
``AsgiFunctionApp`` serving the FastAPI app (anonymous at the Functions level:
Accrue's own API keys authenticate every request), with the trigger
blueprints registered on it. Importing it builds nothing and connects nowhere:
the platform is built on first use (``functions._platform``), and the ASGI app
is a lazy stand-in for ``create_app(platform)``. It is cheap, too: the host
imports it on every cold start, so neither it nor ``functions/`` imports
``shared``'s subsystems at module level (tests/unit/functions/test_cold_import.py),
and the ``warmup`` function builds everything before the first request on the
plans that call it.

The HTTP function is a catch-all route; ``host.json`` sets
``extensions.http.routePrefix`` to ``""`` so requests reach the FastAPI routes
(``/health``, ``/v1/orders``...) at their own paths, without ``/api`` in front.
"""

from __future__ import annotations

import azure.functions as func

from functions import ingest, projections, timers, warmup
from functions._platform import lazy_api

app = func.AsgiFunctionApp(app=lazy_api(), http_auth_level=func.AuthLevel.ANONYMOUS)

for blueprint in (ingest.bp, projections.bp, timers.bp, warmup.bp):
    app.register_functions(blueprint)
