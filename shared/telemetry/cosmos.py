"""The Cosmos DB request charge (RU) of every request, by operation kind.

``record_request_charge`` is the ``raw_response_hook`` of the store's
``CosmosClient`` (azure-core calls it with the pipeline response of every
request, retries included, since each is billed): it reads the
``x-ms-request-charge`` header and records it under an operation kind told from
the REST call itself (method, resource path, the SDK's headers), so the kinds
are a fixed, small set whatever the documents. A response without the header
(a transport error answered locally) records nothing.
"""

from __future__ import annotations

from typing import Any

from shared.telemetry import metrics

CHARGE_HEADER = "x-ms-request-charge"


def operation_kind(method: str, path: str, headers: Any) -> str:
    """read | query | create | upsert | replace | delete | batch | metadata."""
    def flag(name: str) -> bool:
        return str(headers.get(name, "")).lower() == "true"

    segments = [s for s in path.split("/") if s]
    # Documents: dbs/<db>/colls/<coll>/docs[/<id>]; everything else is metadata
    # (the account, databases, containers, partition key ranges).
    if len(segments) < 5 or segments[4] != "docs":
        return "metadata"
    method = method.upper()
    if method == "POST":
        if flag("x-ms-cosmos-is-batch-request"):
            return "batch"
        if flag("x-ms-documentdb-isquery") or "query+json" in str(headers.get("content-type", "")):
            return "query"
        return "upsert" if flag("x-ms-documentdb-is-upsert") else "create"
    return {"GET": "read", "PUT": "replace", "DELETE": "delete"}.get(method, "metadata")


def record_request_charge(pipeline_response: Any) -> None:
    """The ``raw_response_hook``; never raises."""
    try:
        response = pipeline_response.http_response
        charge = response.headers.get(CHARGE_HEADER)
        if charge is None:
            return
        request = pipeline_response.http_request
        from urllib.parse import urlsplit

        kind = operation_kind(request.method, urlsplit(request.url).path, request.headers)
        metrics.cosmos_charge(kind, float(charge))
    except Exception:  # noqa: BLE001 - a metric must never fail a store call
        return
