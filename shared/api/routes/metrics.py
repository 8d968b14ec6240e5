"""``GET /metrics``: the local platform's Prometheus exposition, all three
processes merged (``shared.telemetry.metrics``, ``shared.telemetry.snapshots``).

Loopback only: a request whose client address is not 127.0.0.0/8 or ::1 gets
a 403 problem. Why not an API key: the figures span every tenant, so the key
would have to be a platform-admin's, and a scraper's configuration is the last
place such a key should rest (it can mint keys and approve acts); a Prometheus
on the same host, or a forwarder on it, needs no secret at all. uvicorn's proxy
headers are honoured only from 127.0.0.1, so a reverse proxy on the host that
forwards outside requests passes their real address and they are refused.

Absent on Azure: the Functions app exports through Azure Monitor, and there is
no local aggregation (``metrics.local()`` is None), so the answer is a 404
problem. Not in the OpenAPI document: it is for operators' tools, not for
merchants, and takes no key.
"""

from __future__ import annotations

import ipaddress

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared.api.problems import problem
from shared.telemetry import metrics
from shared.telemetry.snapshots import CONTENT_TYPE

PATH = "/metrics"


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve_metrics(request: Request) -> Response:
    client = request.client.host if request.client else None
    if not is_loopback(client):
        return problem(403, "forbidden", "Forbidden",
                       "/metrics answers only on the loopback interface (127.0.0.1 or ::1) of the local platform",
                       instance=PATH)
    aggregation = metrics.local()
    if aggregation is None:
        return problem(404, "not-found", "Not Found",
                       "no local metrics here: this deployment exports its metrics to Azure Monitor", instance=PATH)
    # The flush and the file reads are blocking: off the event loop.
    from starlette.concurrency import run_in_threadpool

    body = await run_in_threadpool(aggregation.exposition)
    return Response(body, media_type=CONTENT_TYPE)


def install(app: FastAPI) -> None:
    app.router.routes.append(Route(PATH, serve_metrics, methods=["GET"], include_in_schema=False))
