"""The OpenAPI document is a contract a client can be generated from (issue 13).

Structural rules over the whole document, so a new route that forgets its part
fails here: every operation has a stable id, a tag, a description, an example,
typed success answers and ``application/problem+json`` errors; the examples
validate against their own schemas; component names are unique and leak no
module path; the committed snapshot (docs/openapi-v1.json) is the generated
document. And a 405 names every method its path allows."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from jsonschema import Draft202012Validator
from pydantic import BaseModel
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from shared.api import contract
from shared.api.app import OPENAPI_URL
from shared.api.contract import OPERATION_ID, PROBLEM_MEDIA_TYPE, TAGS, op
from shared.api.contract.snapshot import REGENERATE, SNAPSHOT, render
from tests.conftest import auth

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


@pytest.fixture
def document(client) -> dict[str, Any]:
    response = client.get(OPENAPI_URL)
    assert response.status_code == 200
    return response.json()


def _operations(document: dict[str, Any]):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield f"{method.upper()} {path}", operation


def _validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    root = Resource.from_contents({"components": document["components"]}, default_specification=DRAFT202012)
    registry = Registry().with_resource("urn:accrue:openapi", root)
    return Draft202012Validator({"$ref": "urn:accrue:openapi" + schema["$ref"]}, registry=registry)


def test_the_committed_snapshot_is_the_generated_document(document) -> None:
    committed = SNAPSHOT.read_text(encoding="utf-8") if SNAPSHOT.exists() else ""
    assert committed == render(document), (
        f"docs/openapi-v1.json differs from the document the code generates; regenerate it with:\n    {REGENERATE}")


def test_every_operation_keeps_the_structural_rules(document) -> None:
    tags = {t["name"] for t in TAGS}
    seen: set[str] = set()
    operations = list(_operations(document))
    assert len(operations) >= 90
    for where, operation in operations:
        operation_id = operation.get("operationId", "")
        assert OPERATION_ID.match(operation_id), f"{where}: operationId {operation_id!r}"
        assert operation_id not in seen, f"{where}: operationId {operation_id} is used twice"
        seen.add(operation_id)
        assert operation.get("tags") and set(operation["tags"]) <= tags, f"{where}: tags {operation.get('tags')}"
        assert operation.get("summary") and operation.get("description"), f"{where}: summary and description"
        responses = operation["responses"]
        successes = {s: r for s, r in responses.items() if s.startswith("2")}
        assert successes, f"{where}: no success response"
        examples = 0
        for status, response in successes.items():
            assert response.get("description") not in (None, "", "Successful Response"), f"{where} {status}"
            if status == "204":
                assert "content" not in response, f"{where}: 204 has no body"
                continue
            media = response["content"]["application/json"]
            assert set(media["schema"]) == {"$ref"}, f"{where} {status}: untyped answer {media['schema']}"
            examples += "example" in media
        request_examples = sum("example" in m or "examples" in m
                               for m in operation.get("requestBody", {}).get("content", {}).values())
        assert examples or request_examples or "204" in successes, f"{where}: no example"
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                assert response["content"] == {
                    PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}, f"{where} {status}"
        errors = {int(s) for s in responses if s.startswith(("4", "5"))}
        assert 503 in errors, f"{where}: 503"
        if operation.get("security"):
            assert {401, 403, 429} <= errors, f"{where}: 401/403/429"
            assert operation["security"] == [{"bearerKey": []}, {"apiKeyHeader": []}], where
        if operation.get("requestBody"):
            assert {400, 413, 422} <= errors, f"{where}: 400/413/422"
            if "application/json" in operation["requestBody"]["content"]:
                assert 415 in errors, f"{where}: 415 (a JSON body sent as another media type)"
        if operation.get("parameters"):
            assert 422 in errors, f"{where}: 422"
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerKey"]["scheme"] == "bearer"
    assert schemes["apiKeyHeader"] == {**schemes["apiKeyHeader"], "type": "apiKey", "in": "header",
                                       "name": "x-api-key"}


def test_every_route_but_health_takes_a_key(document) -> None:
    open_routes = [where for where, operation in _operations(document) if not operation.get("security")]
    assert open_routes == ["GET /health"]


def test_component_names_are_unique_and_leak_no_module_path(document) -> None:
    names = list(document["components"]["schemas"])
    assert len(names) == len(set(names))
    assert not [n for n in names if not re.match(r"^[A-Z][A-Za-z0-9]*(-Input|-Output)?$", n)], names
    assert "HTTPValidationError" not in names and "ValidationError" not in names
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail"} <= set(problem["required"])
    assert problem["properties"]["errors"]["anyOf"][0]["items"] == {"$ref": "#/components/schemas/FieldError"}


def test_every_example_is_valid_against_its_schema(document) -> None:
    checked = 0
    for where, operation in _operations(document):
        for status, response in operation["responses"].items():
            for media in (response.get("content") or {}).values():
                if "example" in media:
                    errors = [e.message for e in _validator(document, media["schema"]).iter_errors(media["example"])]
                    assert not errors, f"{where} {status}: example does not match its schema: {errors[:3]}"
                    checked += 1
    assert checked >= 90


def test_a_real_problem_is_valid_against_the_problem_schema(client, tenant, document) -> None:
    validator = _validator(document, {"$ref": "#/components/schemas/Problem"})
    answers = [client.get("/v1/orders/nope", headers=auth(tenant.merchant)),
               client.post("/v1/orders", json={"orderId": "o1"}, headers=auth(tenant.merchant)),
               client.post("/v1/customers", content=b"{", headers={**auth(tenant.merchant),
                                                                   "content-type": "application/json"}),
               client.get("/v1/customers/c1"),
               client.delete("/v1/api-keys/aaaaaaaaaaaa", headers=auth(tenant.merchant))]
    assert [a.status_code for a in answers] == [404, 422, 400, 401, 403]
    for answer in answers:
        assert answer.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
        assert not list(validator.iter_errors(answer.json())), answer.text


def test_a_route_without_its_contract_stops_the_document() -> None:
    router = APIRouter()

    class Thing(BaseModel):
        """A thing."""

        name: str

    @router.get("/things", **op("things.list", Thing))
    def things() -> dict:
        """Things."""
        return {"name": "x"}

    @router.get("/untyped")
    def untyped() -> dict:
        return {}

    app = FastAPI()
    app.include_router(router)
    contract.install(app)
    with pytest.raises(AssertionError, match="GET /untyped: declare its contract with op"):
        app.openapi()
    with pytest.raises(AssertionError, match="must match"):
        op("Things_List", Thing)

    created = APIRouter()

    @created.post("/things", status_code=201, **op("things.create", Thing))  # typed 200, answers 201
    def create() -> dict:
        """Makes a thing."""
        return {"name": "x"}

    app = FastAPI()
    app.include_router(created)
    contract.install(app)
    with pytest.raises(AssertionError, match="POST /things: 201 has no response model"):
        app.openapi()


def test_a_405_allows_every_method_its_path_serves(client, document) -> None:
    """OPTIONS (which no route serves) on every path of the document: 405 and an Allow header naming
    exactly the methods the document lists for that path (Starlette named only the first route's)."""
    sample = {"customerId": "c1", "keyId": "aaaaaaaaaaaa", "requestId": "req-0000000000000000", "chain": "acme",
              "orderId": "o1", "endpointId": "ep_00000000000000000000", "messageId": "msg_" + "a" * 26,
              "draftId": "0" * 16, "experimentId": "0" * 16, "redemptionId": "rd-" + "0" * 24,
              "reviewId": "rv-" + "0" * 24, "version": "1"}
    templates = [(re.compile("^" + re.sub(r"\{\w+\}", "[^/]+", path) + "$"), item)
                 for path, item in document["paths"].items()]
    for path in document["paths"]:
        url = re.sub(r"\{(\w+)\}", lambda m: sample.get(m.group(1), "x1"), path)
        response = client.options(url)
        assert response.status_code == 405, (path, response.status_code)
        allowed = {m.strip() for m in response.headers["allow"].split(",")}
        # Every route that serves this URL counts (GET /v1/customers/{customerId} serves /v1/customers/lookup).
        expected = {m.upper() for regex, item in templates if regex.match(url) for m in item if m in METHODS}
        expected |= {"HEAD"} if "GET" in expected else set()  # HEAD is served wherever GET is (shared/api/head.py)
        assert allowed == expected, (path, response.headers["allow"])
        assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)


def test_the_snapshot_command_writes_the_document(tmp_path) -> None:
    from shared.api.contract.snapshot import main

    assert main([str(tmp_path / "doc.json")]) == 0
    written = json.loads((tmp_path / "doc.json").read_text(encoding="utf-8"))
    assert written["info"]["title"] == "Accrue" and len(written["paths"]) >= 60


def test_every_operation_declares_the_api_policies(client, document) -> None:
    """The policies of g-limits, over every operation, against the routes themselves (not a hand list):
    strict parameters (400 everywhere), rate limits (429 with Retry-After, RateLimit headers), paged lists
    (cursor, limit, next, bad-cursor), dry runs (dryRun, a typed 200 with ``dryRun``) and deprecation."""
    from shared.api.deprecation import notice_of
    from shared.api.introspect import api_routes

    routes = list(api_routes(client.app.routes))
    dry_runnable = {(m.lower(), path) for path, r in routes
                    for m in r.methods if any(p.alias == "dryRun" for p in r.dependant.query_params)}
    deprecated = {(m.lower(), path) for path, r in routes for m in r.methods if notice_of(r) is not None}
    assert len(dry_runnable) == 9 and deprecated == {("get", "/v1/redemption-reviews")}
    schemas = document["components"]["schemas"]
    paged = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            responses = operation["responses"]
            query = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
            assert "400" in responses and "`unknown-parameter`" in responses["400"]["description"], where
            if operation.get("security"):
                assert "Retry-After" in responses["429"]["headers"], where
                for status, response in responses.items():
                    if status != "401":
                        assert {"RateLimit", "RateLimit-Policy"} <= set(response.get("headers", {})), (where, status)
            ok = responses.get("200", {}).get("content", {}).get("application/json", {}).get("schema")
            model = schemas[ok["$ref"].rsplit("/", 1)[1]] if ok else {}
            if method == "get" and "items" in model.get("properties", {}):
                paged += 1
                assert {"cursor", "limit"} <= query, where
                assert "next" in model["required"], where
                assert model["properties"]["next"]["anyOf"] == [{"type": "string"}, {"type": "null"}], where
                assert "`bad-cursor`" in responses["400"]["description"], where
            assert ("dryRun" in query) == ((method, path) in dry_runnable), where
            if "dryRun" in query:
                assert model["properties"]["dryRun"]["anyOf"][0] == {"type": "boolean"}, where
                assert "Accrue-Dry-Run" in responses["200"]["headers"], where
            assert bool(operation.get("deprecated")) == ((method, path) in deprecated), where
            if operation.get("deprecated"):
                for status, response in responses.items():
                    assert {"Deprecation", "Sunset", "Link"} <= set(response["headers"]), (where, status)
    assert paged >= 20
    assert set(document["components"]["headers"]) == {"RateLimit", "RateLimit-Policy", "Deprecation", "Sunset",
                                                      "Link"}


def test_every_answer_that_carries_a_location_declares_it(client, tenant, document) -> None:
    """Orders (202, and 200 with ?wait=), customers and rewards (201) send Location; the document
    declared it on no response. The conforming client now also fails any undeclared Location."""
    from tests.conftest import order_body

    answers = [
        (client.post("/v1/orders", json=order_body("c1", "loc1"), headers=auth(tenant.merchant)),
         "/v1/orders", "post"),
        (client.post("/v1/customers", json={"customerId": "loc-c", "joinDate": "2025-01-01"},
                     headers=auth(tenant.merchant)), "/v1/customers", "post"),
        (client.post("/v1/rewards", json={"rewardId": "loc-r", "name": "Mug", "pointsCost": 5},
                     headers=auth(tenant.admin)), "/v1/rewards", "post"),
    ]
    for answer, path, method in answers:
        assert answer.status_code in (201, 202) and answer.headers["location"], answer.text
        declared = document["paths"][path][method]["responses"][str(answer.status_code)]
        assert "Location" in declared.get("headers", {}), (path, answer.status_code)
    assert "Location" in document["paths"]["/v1/orders"]["post"]["responses"]["200"]["headers"]  # ?wait=
