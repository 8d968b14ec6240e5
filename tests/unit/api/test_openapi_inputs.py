"""The OpenAPI document's input constraints, checked against the server (issue 12).

* Every string a client sends (every request body, at any depth, and every path
  and query parameter) has a ``maxLength`` unless it is an enum or a constant, and
  every ``pattern`` is anchored: a new field without them fails here.
* No amount is a JSON number: the only ``number`` inputs are the listed durations.
* Every decimal, instant and date field publishes a pattern, and that pattern, read
  the way a client reads it (ECMA-262, by Node's ``RegExp``), matches exactly the
  strings the field's own validator takes as well-formed, on generated inputs.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import shutil
import subprocess
from typing import Annotated, Any, Iterator

import pytest
from fastapi.routing import APIRoute
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

import shared.api.routes as routes_package
from shared.api.app import create_app
from shared.domain.inputs import DATE_PATTERN, INSTANT_PATTERN

# Numbers that are durations, not amounts: a JSON number is the natural form.
NUMBER_INPUTS = {"query.wait", "PartnerConfig.timeoutSeconds", "PartnerConfig.cooldownSeconds"}
# Fields that carry money: each must be a decimal string in the document.
MONEY_FIELDS = {"Order.amount", "LineItem.unitPrice", "RefundRequest.amount", "TierDefinition.minSpend"}


@pytest.fixture(scope="module")
def app_and_doc(tmp_path_factory) -> Iterator[tuple[Any, dict]]:
    from shared.platform import build_platform
    from shared.settings import Settings

    folder = tmp_path_factory.mktemp("openapi")
    platform = build_platform(Settings.from_env({"ACCRUE_DATA_DIR": str(folder)}))
    app = create_app(platform)
    yield app, app.openapi()
    platform.close()


def string_schemas(doc: dict) -> list[tuple[str, dict]]:
    """(where, schema) of every input schema node, bodies at any depth and parameters."""
    components = doc.get("components", {}).get("schemas", {})
    found: list[tuple[str, dict]] = []

    def walk(node: Any, where: str, seen: frozenset[str]) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, where, seen)
            return
        if not isinstance(node, dict):
            return
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            if name not in seen:
                walk(components[name], name, seen | {name})
            return
        found.append((where, node))
        for key, value in node.items():
            if key == "properties":
                for field, schema in value.items():
                    walk(schema, f"{where}.{field}", seen)
            elif isinstance(value, (dict, list)):
                walk(value, where, seen)

    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                walk(operation["requestBody"], f"{method.upper()} {path}", frozenset())
            for parameter in operation.get("parameters", []):
                walk(parameter["schema"], f"{parameter['in']}.{parameter['name']}", frozenset())
    return found


def unbounded_strings(doc: dict) -> list[str]:
    return sorted({where for where, schema in string_schemas(doc)
                   if schema.get("type") == "string" and "maxLength" not in schema
                   and "enum" not in schema and "const" not in schema})


def test_every_string_input_has_a_max_length(app_and_doc) -> None:
    _, doc = app_and_doc
    assert unbounded_strings(doc) == []


def test_the_walk_finds_an_unbounded_string_at_any_depth() -> None:
    # The check itself can fail: a nested, optional, array-held string without maxLength is found.
    doc = {"paths": {"/x": {"post": {"requestBody": {"content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/A"}}}}, "parameters": [{"in": "query", "name": "q", "schema": {
            "anyOf": [{"type": "string"}, {"type": "null"}]}}]}}},
        "components": {"schemas": {"A": {"properties": {"b": {"$ref": "#/components/schemas/B"}}},
                                   "B": {"properties": {"tags": {"type": "array", "items": {
                                       "anyOf": [{"type": "string", "pattern": "^a$"}, {"type": "null"}]}},
                                       "ok": {"type": "string", "enum": ["x"]}}}}}}
    assert unbounded_strings(doc) == ["B.tags", "query.q"]


def test_every_pattern_is_anchored(app_and_doc) -> None:
    # JSON Schema patterns are unanchored: without ^...$ "x10" would match a digits pattern.
    _, doc = app_and_doc
    for where, schema in string_schemas(doc):
        if "pattern" in schema:
            assert schema["pattern"].startswith("^") and schema["pattern"].endswith("$"), (where, schema["pattern"])


def test_no_constraint_leaks_under_a_python_name(app_and_doc) -> None:
    # A constraint pydantic could not translate lands as "ge"/"max_length": clients ignore it.
    _, doc = app_and_doc
    leaked = {(where, key) for where, schema in string_schemas(doc) for key in schema
              if key in {"ge", "gt", "le", "lt", "max_length", "min_length", "max_digits", "decimal_places"}}
    assert leaked == set()


def test_no_amount_is_a_json_number(app_and_doc) -> None:
    _, doc = app_and_doc
    numbers = {where for where, schema in string_schemas(doc) if schema.get("type") == "number"}
    assert numbers <= NUMBER_INPUTS, numbers - NUMBER_INPUTS


def test_money_fields_are_decimal_strings(app_and_doc) -> None:
    _, doc = app_and_doc
    decimal = {where for where, schema in string_schemas(doc)
               if schema.get("type") == "string" and schema.get("pattern", "").startswith("^(0|[1-9]")}
    assert MONEY_FIELDS <= decimal


def test_every_instant_and_date_publishes_its_grammar(app_and_doc) -> None:
    _, doc = app_and_doc
    for where, schema in string_schemas(doc):
        if schema.get("format") == "date-time":
            assert schema.get("pattern") == INSTANT_PATTERN, where
        if schema.get("format") == "date":
            assert schema.get("pattern") == DATE_PATTERN, where


# --- the published pattern against the server's own validator --------------------------


def _models_of(annotation: Any, found: dict[str, type[BaseModel]]) -> None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation.__name__ not in found:
            found[annotation.__name__] = annotation
            for field in annotation.model_fields.values():
                _models_of(field.annotation, found)
        return
    for argument in getattr(annotation, "__args__", ()) or ():
        _models_of(argument, found)


def request_models() -> dict[str, type[BaseModel]]:
    """Every pydantic model a route's body reaches, from each router module of shared.api.routes."""
    found: dict[str, type[BaseModel]] = {}
    for module in pkgutil.iter_modules(routes_package.__path__):
        router = getattr(importlib.import_module(f"{routes_package.__name__}.{module.name}"), "router", None)
        for route in getattr(router, "routes", ()):
            if isinstance(route, APIRoute) and route.body_field is not None:
                _models_of(route.body_field.field_info.annotation, found)
    return found


def grammar_fields(doc: dict) -> list[tuple[str, str, TypeAdapter]]:
    """(where, pattern, validator) for every decimal/instant/date property of a request model."""
    components = doc["components"]["schemas"]
    fields = []
    for name, model in request_models().items():
        properties = components.get(name, {}).get("properties", {})
        for field_name, info in model.model_fields.items():
            schema = properties.get(info.alias or field_name)
            if schema is None:
                continue
            options = schema.get("anyOf", [schema])
            patterns = [o["pattern"] for o in options if o.get("type") == "string" and "pattern" in o
                        and (o["pattern"].startswith("^(0|[1-9]") or o.get("format") in ("date", "date-time"))]
            if patterns:
                # The field's type with its constraints (not its alias, which belongs to the model).
                adapter = TypeAdapter(Annotated[(info.annotation, *info.metadata)] if info.metadata
                                      else info.annotation)
                fields.append((f"{name}.{info.alias or field_name}", patterns[0], adapter))
    return fields


def ecma_matches(patterns: list[str], texts: list[str]) -> list[list[bool]]:
    """Node's RegExp (with the 'u' flag JSON Schema 2020-12 recommends) on every (pattern, text)."""
    script = ("const d=JSON.parse(require('fs').readFileSync(0,'utf8'));"
              "process.stdout.write(JSON.stringify(d.p.map(p=>{const r=new RegExp(p,'u');"
              "return d.t.map(t=>r.test(t));})));")
    result = subprocess.run(["node", "-e", script], input=json.dumps({"p": patterns, "t": texts}),
                            capture_output=True, text=True, timeout=30, check=True)
    return json.loads(result.stdout)


def well_formed(adapter: TypeAdapter, text: str) -> bool:
    """The field's validator took the text as written in its grammar (range and calendar come after)."""
    try:
        adapter.validate_python(text)
    except ValidationError as error:
        return not any(e["type"].endswith("_syntax") for e in error.errors())
    return True


NEAR = "0123456789.-+:TZ eE_\n\u0661\uff11"
texts = st.one_of(
    st.text(alphabet=st.sampled_from(NEAR), max_size=30),
    st.from_regex(r"[0-9]{1,14}(\.[0-9]{1,7})?", fullmatch=True),
    st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,7})?(Z|[+-][0-9]{2}:[0-9]{2})?)?",
                  fullmatch=True),
    st.text(max_size=12),
).map(lambda t: t.replace("\x00", ""))


@pytest.fixture(scope="module")
def fields(app_and_doc) -> list[tuple[str, str, TypeAdapter]]:
    return grammar_fields(app_and_doc[1])


def test_the_grammar_fields_are_found(fields) -> None:
    found = {where for where, _, _ in fields}
    assert found >= MONEY_FIELDS | {"Order.timestamp", "NewCustomer.birthDate", "NewCustomer.joinDate",
                                    "Backfill.from", "NewReward.validFrom", "Programme.rate"}


@pytest.mark.skipif(shutil.which("node") is None, reason="node reads the patterns as a client would")
@settings(max_examples=15, deadline=None)
@given(batch=st.lists(texts, min_size=40, max_size=40))
def test_each_published_pattern_matches_exactly_what_its_field_takes(fields, batch: list[str]) -> None:
    matches = ecma_matches([p for _, p, _ in fields], batch)
    for (where, pattern, adapter), row in zip(fields, matches):
        for text, published in zip(batch, row):
            assert published == well_formed(adapter, text), (where, pattern, text)
