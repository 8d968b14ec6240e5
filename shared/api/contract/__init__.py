"""The API's contract: what ``/openapi/v1.json`` promises a merchant, generated
from the code.

A route declares its part with ``op(...)`` in its decorator: a stable operation
id (``orders.send``), the response model of each success status, an example,
and the error statuses only it knows about (404, 409, ...). ``document(app)``
builds the OpenAPI document from the routes and adds what every route shares,
derived from the operation itself so no route can forget it:

* every route can answer 400 ``unknown-parameter`` (strict parameters,
  shared/api/strict.py) and 503 (the store or the bus is unavailable);
* a route that takes a key (it has ``security``) can answer 401, 403 and 429
  ``rate-limited`` (with ``Retry-After``), and declares the ``RateLimit`` and
  ``RateLimit-Policy`` headers on every answer (shared/api/ratelimit.py);
* a write (POST, PUT, PATCH, DELETE) can answer 409: besides its own conflicts, a
  crowd of concurrent writers can exhaust its bounded retries (shared/store/contention.py);
* a route with a body can also answer 400 for malformed JSON, and 413 and 422; one with a
  JSON body 415 for a body of another media type (shared/api/strict_json.py);
* a paged list (it takes ``cursor``) can also answer 400 ``bad-cursor``
  (shared/api/pagination.py); its answer is ``Page``-shaped: ``items`` and ``next``;
* a route with parameters can answer 422;
* a dry-runnable route (it takes ``dryRun``, shared/api/dryrun.py) answers 200
  with the real body plus ``dryRun: true`` and the ``Accrue-Dry-Run`` header;
* a deprecated route (``@deprecated``, shared/api/deprecation.py) declares the
  ``Deprecation``, ``Sunset`` and ``Link`` headers on every answer;
* an answer that carries ``Location`` (``_LOCATION``: an order's status, a created
  customer or reward) declares it.

Every error is the one ``Problem`` schema (RFC 9457, ``application/problem+json``,
with the ``errors[]`` extension naming each bad field), never FastAPI's default
validation shape. Response models document; they do not re-validate what a route
returns (that would cost the hot path a second validation): the conformance
test (schemathesis, tests/unit/api/test_api_conformance.py) and the generated
clients (tests/e2e/test_generated_clients.py) prove the server keeps them.

Guarantees, checked by tests/unit/api/test_openapi_contract.py over the whole
document: every operation has an id matching ``OPERATION_ID``, a tag, a
description, an example, a typed success response and problem+json errors; the
committed snapshot docs/openapi-v1.json equals the generated document.
"""

from __future__ import annotations

import copy
import re
import types
import typing
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_jsonable_python

PROBLEM_MEDIA_TYPE = "application/problem+json"
OPERATION_ID = re.compile(r"^[a-z]+\.[a-zA-Z]+$")
REF = "#/components/schemas/"

# The groups of the README's API section ("Routes"), in its order.
TAGS: list[dict[str, str]] = [
    {"name": "health", "description": "Liveness and store reachability; needs no key."},
    {"name": "customers", "description": "Register customers, read balances and history; adjust (tenant-admin)."},
    {"name": "orders", "description": "Send orders (one or a batch of up to 500), read their outcome, refund."},
    {"name": "privacy", "description": "Personal data: lookup by email (blind index), erasure, the access export."},
    {"name": "api-keys", "description": "The tenant's API keys (tenant-admin): create, list, revoke."},
    {"name": "tenants", "description": "Your own tenant's settings; tenant creation (platform-admin)."},
    {"name": "audit", "description": "The tenant's hash-chained audit log and its verification."},
    {"name": "governance", "description": "Dual control of destructive platform-admin acts."},
    {"name": "rules", "description": "The rule set lifecycle: drafts, versions, activation, simulation, experiments."},
    {"name": "webhooks", "description": "Signed webhook endpoints, secret rotation, the delivery log, replay."},
    {"name": "exports", "description": "Encrypted warehouse exports: run now, backfill, runs, settings."},
    {"name": "rewards", "description": "The rewards catalogue, the spend policy, conversion programmes, partners."},
    {"name": "redemptions", "description": "Spend points: redemptions (direct or reserve/confirm), conversions."},
    {"name": "vouchers", "description": "Vouchers at the point of sale, a customer's vouchers, partner code pools."},
    {"name": "referrals", "description": "The referral programme, customers' referral codes and referrals."},
    {"name": "tiers", "description": "The tier programme and a customer's tier and tier history."},
    {"name": "expiry", "description": "A customer's upcoming points expiries."},
    {"name": "fraud", "description": "The fraud policy and an on-demand reconciliation of the ledger."},
    {"name": "reviews", "description": "The manual review queue: held earns and large redemptions."},
    {"name": "agents", "description": "Agents' guardrail policies, terms documents and decision trail (the MCP "
                                      "server itself is at /mcp)."},
    {"name": "ledger", "description": "The ledger's hash chains: verify a customer or the tenant."},
    {"name": "imports", "description": "Historical imports and bulk awards: upload, start, progress, error report."},
    {"name": "occasions", "description": "Birthday and join-anniversary rewards: the tenant's settings."},
]

_ERROR_TEXT = {
    400: "Bad request; nothing was changed.",
    401: ("No API key, or one that is unknown or revoked. Counted against the client address's allowance "
          "of failed authentications (the `failed-auth` policy in the RateLimit headers; 429 beyond it)."),
    403: "The key's role lacks the capability this route needs; nothing was changed.",
    404: "The resource does not exist in the caller's tenant.",
    409: ("The request contradicts recorded state (a reused id, a settled reservation, a decided review...), "
          "or what it changes kept changing under concurrent writers beyond the retry budget; nothing was "
          "written: read again and retry."),
    412: "A precondition on the stored state failed (another writer changed it first); read and try again.",
    413: "The request body exceeds 1 MiB.",
    415: "The body is not sent as `application/json` (`unsupported-media-type`); nothing was changed.",
    422: "Invalid input: ``errors`` names each bad field; nothing was changed.",
    429: ("Rate limited (`rate-limited`): this key or its tenant used its quota for the window, or this "
          "client address its allowance of failed authentications; wait for Retry-After seconds."),
    502: "The partner refused the request for good; the points were given back.",
    503: "A backing service (store, bus, partner) is unavailable: retry after Retry-After seconds.",
}
_WRITES = ("POST", "PUT", "PATCH", "DELETE")
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again",
                                "schema": {"type": "integer", "minimum": 0}}}
# The 400s a route can answer, by what it takes (see ``_bad_request``).
_BAD_PARAMETER = ("`unknown-parameter`: a query parameter or an `x-accrue-*` header the route does not declare "
                  "(a typo never silently changes what a call means); `malformed-parameter`: a number parameter "
                  "not in plain digits, or a single-valued parameter given twice")
_BAD_CURSOR = "`bad-cursor`: a cursor this API did not give out for this list"
_BAD_JSON = "`malformed-json`: the body could not be parsed"
_RATE_LIMIT_HEADERS = {
    "RateLimit-Policy": {"description": "the key's or tenant's quota policy (draft-ietf-httpapi-ratelimit-headers): "
                                        "`\"<name>\";q=<quota>;w=<window seconds>`",
                         "schema": {"type": "string"}},
    "RateLimit": {"description": "the state of that quota: `\"<name>\";r=<remaining>;t=<seconds to reset>`",
                  "schema": {"type": "string"}},
}
_DEPRECATION_HEADERS = {
    "Deprecation": {"description": "this route is deprecated since this instant (RFC 9745: `@<epoch seconds>`)",
                    "schema": {"type": "string"}},
    "Sunset": {"description": "the HTTP-date after which this route may stop answering (RFC 8594)",
               "schema": {"type": "string"}},
    "Link": {"description": "the deprecation policy (`rel=\"deprecation\"`) and the route to use instead "
                            "(`rel=\"successor-version\"`)", "schema": {"type": "string"}},
}
_DRY_RUN_HEADER = {"Accrue-Dry-Run": {"description": "`true` on a dry run's answer: nothing was written",
                                      "schema": {"type": "string", "enum": ["true"]}}}
_DRY_RUN_TEXT = ("With `dryRun=true`: 200 and the body the real call would give plus `dryRun: true`; "
                 "nothing was written.")
# The answers whose route sets ``Location`` (operation id -> statuses): where the created resource,
# or the accepted order's status, is. tests/contract_check.py fails any answer that sends a Location
# its response does not declare, so an operation that starts sending one must be listed here.
_LOCATION = {
    "orders.send": (("200", "202"), "the order's status URL (its `statusUrl`); not on a dry run's answer"),
    "customers.register": (("201",), "the registered customer: `/v1/customers/{customerId}`"),
    "rewards.create": (("201",), "the created reward: `/v1/rewards/{rewardId}`"),
}
_WWW_AUTHENTICATE = {"WWW-Authenticate": {"description": "the authentication scheme: Bearer realm=\"accrue\"",
                                          "schema": {"type": "string"}}}


class FieldError(BaseModel):
    """One invalid field of a request."""

    field: str = Field(description="the field: a dotted path with [index] for list items, or a parameter's name",
                       examples=["items[0].quantity"])
    message: str = Field(description="what is wrong with it, in words a person can act on",
                         examples=["Input should be greater than 0"])


class Problem(BaseModel):
    """An RFC 9457 problem document: every error of this API. Some problems add
    extension members (``available`` on insufficient points, ``diagnostics`` on a
    rejected rule source); a client must accept members it does not know."""

    model_config = ConfigDict(extra="allow", json_schema_extra={
        "examples": [{"type": "https://accrue.dev/problems/validation-failed", "title": "Validation failed",
                      "status": 422, "detail": "1 invalid field(s); nothing was changed", "instance": "/v1/orders",
                      "errors": [{"field": "amount", "message": "Input should be greater than 0"}]}]})

    type: str = Field(description="a URI naming the problem type: https://accrue.dev/problems/<slug>",
                      examples=["https://accrue.dev/problems/not-found"])
    title: str = Field(description="a short summary of the problem type", examples=["Not found"])
    status: int = Field(ge=400, le=599, description="the HTTP status code", examples=[404])
    detail: str = Field(description="what went wrong with this request", examples=["no order 'o1'"])
    instance: str | None = Field(default=None, description="the request's path", examples=["/v1/orders/o1"])
    errors: list[FieldError] | None = Field(default=None, description="validation failures: each bad field")


def next_link() -> Any:
    """The ``next`` field of a paged list (shared/api/pagination.py): required, a link or null."""
    return Field(description="the next page: this request's path and query with the next cursor, to follow as "
                             "is; null on the last page",
                 examples=["/v1/customers?limit=100&cursor=eyJrIjpbImFsaWNlLTQyIl0sInIiOiIvdjEvY3VzdG9tZXJzIiwidiI6"
                           "MX0.1f0c2d3e4a5b"])


class DryRunnable(BaseModel):
    """The answer of a route that takes ``dryRun`` (shared/api/dryrun.py)."""

    dryRun: bool | None = Field(default=None, description="true on a dry run's answer (nothing was written); "
                                                          "absent otherwise")


def op(operation_id: str, ok: dict[int, type[BaseModel]] | type[BaseModel] | None, *,
       errors: tuple[int, ...] = (), example: dict[str, Any] | None = None,
       description: str | None = None) -> dict[str, Any]:
    """Keyword arguments of a route decorator: ``@router.get(path, **op("orders.get", OrderStatus, errors=(404,)))``.

    ``ok`` maps each success status to its response model (a single model means
    200); ``None`` means the route answers 204 with no body. ``errors`` lists the
    statuses beyond those ``document`` derives. The example defaults to one built
    from the model (``example_of``)."""
    assert OPERATION_ID.match(operation_id), f"operation id {operation_id!r} must match {OPERATION_ID.pattern}"
    assert all(400 <= s <= 599 and s in _ERROR_TEXT for s in errors), f"{operation_id}: unknown error status"
    responses: dict[int, dict[str, Any]] = {}
    if isinstance(ok, dict):
        for status, model in ok.items():
            assert 200 <= status < 300, f"{operation_id}: {status} is not a success status"
            responses[status] = _success(model, example)
    elif ok is not None:
        responses[200] = _success(ok, example)
    else:
        responses[204] = {"description": "Done; the answer has no body."}
    for status in errors:
        responses[status] = {"description": _ERROR_TEXT[status]}
    kwargs: dict[str, Any] = {"operation_id": operation_id, "responses": responses,
                              "openapi_extra": {"x-accrue-contract": True}}  # the mark document() looks for
    if description is not None:
        kwargs["description"] = description
    return kwargs


def _success(model: type[BaseModel], example: dict[str, Any] | None) -> dict[str, Any]:
    doc = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    return {"model": model, "description": doc or model.__name__,
            "content": {"application/json": {"example": example if example is not None else example_of(model)}}}


def example_of(model: type[BaseModel]) -> dict[str, Any]:
    """An example answer built from the model: each field's first ``examples``
    value, else its default, else a value of its type. Model-level examples win."""
    extra = model.model_config.get("json_schema_extra")
    if isinstance(extra, dict) and extra.get("examples"):
        return copy.deepcopy(extra["examples"][0])  # type: ignore[index]
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        if info.examples:
            out[key] = copy.deepcopy(info.examples[0])
        elif info.is_required():
            out[key] = _value_of(info.annotation)
        elif (default := info.get_default(call_default_factory=True)) is not None:
            out[key] = to_jsonable_python(default, by_alias=True)
    return out


def _value_of(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _value_of(options[0]) if options else None
    if origin is typing.Literal:
        return typing.get_args(annotation)[0]
    if origin is typing.Annotated:
        return _value_of(typing.get_args(annotation)[0])
    if origin is tuple and typing.get_args(annotation)[-1:] != (Ellipsis,):
        return [_value_of(a) for a in typing.get_args(annotation)]  # a fixed-length tuple
    if origin in (list, tuple, set):
        args = typing.get_args(annotation)
        return [_value_of(args[0])] if args else []
    if origin is dict:
        return {}
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return example_of(annotation)
        if issubclass(annotation, Enum):
            return next(iter(annotation)).value
        if issubclass(annotation, bool):
            return True
        if issubclass(annotation, int):
            return 1
        if issubclass(annotation, Decimal):
            return "1.5"  # pydantic serialises a Decimal as a string
        if issubclass(annotation, float):
            return 1.5
        if issubclass(annotation, datetime):
            return "2026-11-23T16:11:33.802659Z"
        if issubclass(annotation, date):
            return "2026-11-01"
    return "string"


def document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of ``app``, with the shared error responses, the
    ``Problem`` schema and the security schemes; installed as ``app.openapi``."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, summary=app.summary, description=app.description,
                      routes=app.routes, tags=TAGS)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)  # FastAPI's shape; the server sends Problem instead
    problem = Problem.model_json_schema(ref_template=REF + "{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    problem_content = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": REF + "Problem"}}}
    doc["components"]["headers"] = copy.deepcopy({**_RATE_LIMIT_HEADERS, **_DEPRECATION_HEADERS})
    declared = {(method.lower(), ctx.path_format): ctx.responses or {}
                for ctx in iter_route_contexts(app.routes) if isinstance(ctx.original_route, APIRoute)
                for method in ctx.methods or ()}
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            _complete(operation, f"{method.upper()} {path}", problem_content)
            for status, response in declared.get((method, path), {}).items():
                # The examples as declared: FastAPI's encoder drops their null members (exclude_none).
                example = response.get("content", {}).get("application/json", {}).get("example")
                if example is not None:
                    operation["responses"][str(status)]["content"]["application/json"]["example"] = example
    app.openapi_schema = doc
    return doc


def _complete(operation: dict[str, Any], where: str, problem_content: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation["responses"]
    marked = operation.pop("x-accrue-contract", False)
    assert marked, f"{where}: declare its contract with op(...) (shared/api/contract)"
    for status, response in responses.items():
        if status.isdigit() and 200 <= int(status) < 300:
            for media in (response.get("content") or {}).values():
                schema = media.get("schema", {})
                # A route's own status_code must be one op() typed: no untyped success answer.
                assert "$ref" in schema, f"{where}: {status} has no response model (op(..., {{{status}: Model}}))"
                # FastAPI merged the route's "-> dict" annotation into the model's $ref: keep the model.
                media["schema"] = {"$ref": schema["$ref"]}
    query = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}
    if "dryRun" in query:
        # A dry run answers 200 whatever the real call would (201, 202): it must be typed.
        assert "200" in responses, f"{where}: a dry-runnable route declares 200 (op(..., {{200: Model}}))"
        ok = responses["200"]
        ok["description"] = f"{ok['description']} {_DRY_RUN_TEXT}"
        ok["headers"] = copy.deepcopy(_DRY_RUN_HEADER)
    derived = {400, 503}  # 400: strict parameters hold on every route
    if where.split(" ", 1)[0] in _WRITES:
        # Every write is a bounded compare-and-swap retry (shared/store/contention.py): a crowd
        # of concurrent writers on one document can exhaust it, and the loser is told 409.
        derived.add(409)
    if operation.get("security"):
        derived |= {401, 403, 429}
    if operation.get("requestBody"):
        derived |= {413, 422}
        if "application/json" in operation["requestBody"].get("content", {}):
            derived.add(415)  # shared/api/strict_json.py: a JSON route given another media type
    if operation.get("parameters"):
        derived.add(422)
    for status in sorted(derived | {int(s) for s in responses if s.isdigit() and int(s) >= 400}):
        response = responses.setdefault(str(status), {})
        response["description"] = (response.get("description") if response.get("description")
                                    not in (None, "Validation Error") else _ERROR_TEXT[status])
        if status == 400:
            response["description"] = _bad_request(operation, query)
        response["content"] = copy.deepcopy(problem_content)
        if status in (429, 503):
            response["headers"] = copy.deepcopy(_RETRY_AFTER)
        if status == 401:
            response["headers"] = copy.deepcopy(_WWW_AUTHENTICATE)
    statuses, location = _LOCATION.get(operation.get("operationId", ""), ((), ""))
    for status in statuses:
        responses[status]["headers"] = {**responses[status].get("headers", {}), "Location": {
            "description": location, "schema": {"type": "string", "format": "uri-reference"}}}
    for status, response in responses.items():
        # Written by shared/api/route_contract.py on whatever answered (a route, an error, a 429);
        # declared once in components/headers. A 401 reports the address's failed-auth allowance.
        if operation.get("security"):
            response["headers"] = {**response.get("headers", {}), **_refs(_RATE_LIMIT_HEADERS)}
        if operation.get("deprecated"):
            response["headers"] = {**response.get("headers", {}), **_refs(_DEPRECATION_HEADERS)}
    operation["responses"] = dict(sorted(responses.items()))


def _refs(headers: dict[str, Any]) -> dict[str, Any]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in headers}


def _bad_request(operation: dict[str, Any], query: set[str]) -> str:
    """The 400's description: each problem this operation can answer it with."""
    kinds = [_BAD_PARAMETER]
    if "cursor" in query:
        kinds.append(_BAD_CURSOR)
    if operation.get("requestBody"):
        kinds.append(_BAD_JSON)
    return "Bad request; nothing was changed. " + "; ".join(kinds) + "."


def install(app: FastAPI) -> None:
    """Serve ``document(app)`` at the app's OpenAPI URL."""
    app.openapi = lambda: document(app)  # type: ignore[method-assign]
