"""The compiled validator (jsonschema-rs) is only a fast path: ``problems`` must say
exactly what the Python ``jsonschema`` validator alone says, for every schema.

Valid events are generated from each schema (from every keyword the schemas use;
a schema with a new keyword fails ``_valid`` loudly until the generator knows it)
and then changed: a required key dropped, an unknown key added, a value of
another type (a float or bool for an integer, a tuple, a Decimal, an Enum member,
a non-str key...), a number off by one, a string that breaks its pattern or
length, at any depth. ``mutated`` makes one to three random changes and checks
verdict and report; ``_single_changes`` tries every change at every node of an
event and checks the verdict. The bug to catch is the fast path saying "valid"
where ``jsonschema`` says "invalid"; the other way round only costs the slow path.
"""

from __future__ import annotations

import copy
import enum
import math
from decimal import Decimal
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.schemas import REGISTRY
from shared.schemas.registry import EventSchema

ENTRIES = sorted(REGISTRY, key=lambda e: (e.event_type, e.version))
IDS = [f"{e.event_type}.v{e.version}" for e in ENTRIES]
ANNOTATIONS = {"$schema", "$id", "title", "description", "$defs", "x-event-type", "x-event-version", "x-channel",
               "x-personal-data", "x-personal-data-allowed", "format"}
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                              HealthCheck.data_too_large])


class Colour(enum.Enum):
    RED = "red"


class Kind(str, enum.Enum):
    A = "a"


def jsonschema_only(entry: EventSchema, body: Any) -> list[str]:
    """What ``problems`` said before the fast path: the Python validator's errors, formatted the same way."""
    errors = sorted(entry.validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in errors]


def check_agreement(entry: EventSchema, body: Any) -> bool:
    """The registry's verdict and report for ``body`` are jsonschema's; returns whether it is valid."""
    python_valid = entry.validator.is_valid(body)
    fast_valid = entry.is_valid(body)
    assert not (fast_valid and not python_valid), \
        f"{entry.path.name}: the fast path accepts what jsonschema refuses: {body!r}"
    assert fast_valid == python_valid or _compiled_is_stricter(body), \
        f"{entry.path.name}: an unexpected disagreement, the fast path refuses {body!r}"
    assert REGISTRY.problems(body, entry.event_type, entry.version) == jsonschema_only(entry, body)
    return python_valid


def _compiled_is_stricter(body: Any) -> bool:
    """The known, harmless disagreements (jsonschema then finds nothing and the event is valid as before):
    Python's ``re.search`` lets "$" match before a final newline, and a NaN or infinity is a JSON Schema
    "number" to jsonschema but not to jsonschema-rs."""
    if isinstance(body, str):
        return body.endswith("\n")
    if isinstance(body, float):
        return not math.isfinite(body)
    values = body.values() if isinstance(body, dict) else body if isinstance(body, list) else ()
    return any(_compiled_is_stricter(v) for v in values)


# -- valid events, generated from the schema ---------------------------------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
ANY_JSON = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        assert set(node) == {"$ref"} and node["$ref"].startswith("#/"), node
        for part in node["$ref"][2:].split("/"):
            root = root[part]
        node = root
    return node


def _integers(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    ints = st.integers(min_value=node.get("minimum"), max_value=node.get("maximum"))
    return ints | ints.filter(lambda i: abs(i) <= 2**53).map(float)  # 1.0 is a JSON Schema integer, in both


def _strings(node: dict[str, Any]) -> st.SearchStrategy[str]:
    low, high = node.get("minLength", 0), node.get("maxLength")
    if "pattern" in node:
        return st.from_regex(node["pattern"], fullmatch=True).filter(
            lambda s: len(s) >= low and (high is None or len(s) <= high))
    if node.get("format") == "date-time":  # an annotation only: any string is valid
        return st.datetimes().map(lambda d: d.isoformat() + "Z") | st.text(max_size=high or 20)
    return st.text(min_size=low, max_size=high if high is not None else 20)


def _objects(node: dict[str, Any], root: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    properties = node.get("properties")
    if properties is None:
        assert "additionalProperties" not in node and "required" not in node, node
        return st.dictionaries(st.text(max_size=8), ANY_JSON, max_size=3)
    assert node.get("additionalProperties") is False, node
    required = node.get("required", [])
    optional = sorted(set(properties) - set(required))
    values = {name: _valid(sub, root) for name, sub in properties.items()}  # built once, drawn many times

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        names = required + [name for name in optional if draw(st.booleans())]
        return {name: draw(values[name]) for name in names}

    return build()


def _valid(node: dict[str, Any], root: dict[str, Any]) -> st.SearchStrategy[Any]:
    node = _resolve(node, root)
    unknown = set(node) - ANNOTATIONS - {"type", "const", "enum", "properties", "required", "additionalProperties",
                                         "items", "maxItems", "minimum", "maximum", "minLength", "maxLength",
                                         "pattern"}
    assert not unknown, f"teach the generator the keywords {unknown}"
    if "const" in node:
        return st.just(node["const"])
    if "enum" in node:
        return st.sampled_from(node["enum"])
    types = node["type"] if isinstance(node["type"], list) else [node["type"]]
    strategies = {
        "null": lambda: st.none(),
        "boolean": lambda: st.booleans(),
        "integer": lambda: _integers(node),
        "number": lambda: st.integers() | st.floats(allow_nan=False, allow_infinity=False),
        "string": lambda: _strings(node),
        "array": lambda: st.lists(_valid(node["items"], root) if "items" in node else ANY_JSON,
                                  max_size=min(node.get("maxItems", 3), 3)),
        "object": lambda: _objects(node, root),
    }
    return st.one_of([strategies[t]() for t in types])


VALID_EVENTS = {(e.event_type, e.version): _valid(e.schema, e.schema) for e in ENTRIES}


def valid_events(entry: EventSchema) -> st.SearchStrategy[Any]:
    return VALID_EVENTS[entry.event_type, entry.version]


# -- mutations -----------------------------------------------------------------------------------------------

OTHER_CONSTANTS = [
    None, True, False, 0, 1, -1, 1.0, 1.5, -0.5, 10001, 2**70, "", "x", "EUR", "2026-11-01", "a b", "é", [], [1], {},
    {"a": 1}, (1,), ("x",), Decimal("1"), Decimal("1.5"), Colour.RED, Kind.A, {1: "x"}, float("nan"), float("inf"),
    "\ud800",
]
OTHER_VALUES = st.sampled_from(OTHER_CONSTANTS).map(copy.deepcopy)  # a fresh [] or {}: a later mutation may change it


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every node of ``value``, containers and leaves, at any depth."""
    found = [path]
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, sub in items:
        found.extend(_paths(sub, path + (key,)))
    return found


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


def _variants(value: Any) -> list[Any]:
    """``value`` changed the ways a producer could get it wrong: another type, a float or bool for an int,
    off by one, a string that breaks a pattern or a length."""
    if isinstance(value, bool):
        return [int(value), str(value).lower(), None]
    if isinstance(value, int):
        return [float(value), value + 0.5, bool(value % 2), str(value), -value, value - 1, value + 1, value * 10**6]
    if isinstance(value, float) and math.isfinite(value):
        return [int(value), value + 0.5, str(value), True]
    if isinstance(value, str):
        return [value + " ", value.lower() + "a", value.upper() + "A", value + "\n", "", value + "x" * 200,
                "é" + value, "-" + value]
    return []


def _retype(value: Any, draw: st.DrawFn) -> Any:
    variants = _variants(value)
    return draw(st.sampled_from(variants)) if variants and draw(st.integers(0, 2)) else draw(OTHER_VALUES)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[Any]) -> Any:
    """``base``'s event with 1 to 3 changes, each at any node: a container loses or gains a key (or item),
    or a node becomes a value of another type or a string that breaks its pattern."""
    body = copy.deepcopy(draw(base))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(body)))
        target = _at(body, path)
        if isinstance(target, (dict, list)) and (not path or draw(st.booleans())):
            keys = list(target) if isinstance(target, dict) else list(range(len(target)))
            if keys and draw(st.booleans()):
                del target[draw(st.sampled_from(keys))]
            elif isinstance(target, dict):
                target[draw(st.sampled_from(["extra", "email", "type", "0", ""]))] = draw(OTHER_VALUES)
            else:
                target.append(draw(OTHER_VALUES))
        elif not path:
            body = draw(OTHER_VALUES)
        else:
            _at(body, path[:-1])[path[-1]] = _retype(target, draw)
    return body


def _single_changes(body: Any) -> Iterator[Any]:
    """``body`` changed in one place, in every way in turn, at every node (restored after each)."""
    for path in _paths(body):
        target = _at(body, path)
        if isinstance(target, dict):
            for key in list(target):
                value = target.pop(key)
                yield body
                target[key] = value
            for key in ("extra", "email", "type", "0", ""):
                if key not in target:
                    target[key] = None
                    yield body
                    del target[key]
        elif isinstance(target, list) and target:
            size = len(target)
            target.extend([target[0]] * 101)
            yield body
            del target[size:]
        if path:
            parent, key = _at(body, path[:-1]), path[-1]
            for value in _variants(target) + OTHER_CONSTANTS:
                parent[key] = value
                yield body
            parent[key] = target


# -- the properties ------------------------------------------------------------------------------------------

def test_every_registered_schema_compiles_for_the_fast_path() -> None:
    assert ENTRIES and [e.path.name for e in ENTRIES if e.compiled is None] == []


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
@SETTINGS
@given(data=st.data())
def test_valid_events_are_valid_for_both_validators(entry: EventSchema, data: st.DataObject) -> None:
    body = data.draw(valid_events(entry))
    assert check_agreement(entry, body), f"the generator made an invalid {entry.event_type}: {body!r}"
    assert entry.compiled is not None and entry.compiled.is_valid(body), body  # the fast path takes it


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
@SETTINGS
@given(data=st.data())
def test_mutated_events_get_the_same_problems_as_from_jsonschema_alone(entry: EventSchema,
                                                                       data: st.DataObject) -> None:
    check_agreement(entry, data.draw(mutated(valid_events(entry))))


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
@settings(SETTINGS, max_examples=40)
@given(data=st.data())
def test_no_single_change_is_accepted_by_the_fast_path_alone(entry: EventSchema, data: st.DataObject) -> None:
    # Exhaustive around each valid event, so every keyword at every place is tried; jsonschema is only asked
    # when the fast path says valid, the case that would be a bug if jsonschema disagreed.
    for body in _single_changes(data.draw(valid_events(entry))):
        if entry.is_valid(body):
            assert entry.validator.is_valid(body), \
                f"{entry.path.name}: the fast path accepts what jsonschema refuses: {body!r}"


def test_non_json_python_values_are_left_to_jsonschema() -> None:
    # jsonschema-rs takes a tuple as an array and an Enum member / Decimal by its value; jsonschema does not.
    entry = next(e for e in ENTRIES if e.event_type == "order.received")
    good = {"type": "order.received", "version": 1, "tenantId": "acme", "acceptedAt": "2026-11-01T12:00:00Z",
            "order": {"customerId": "c1", "orderId": "o1", "amount": "5.00", "currency": "EUR",
                      "timestamp": "2026-11-01T11:00:00Z",
                      "items": [{"sku": "S", "category": "coffee", "quantity": 1, "unitPrice": "5.00"}]}}
    assert check_agreement(entry, good)
    for path, value in [(("order", "items"), ({"sku": "S", "category": "coffee", "quantity": 1, "unitPrice": "5"},)),
                        (("order", "items", 0, "quantity"), Decimal("1")),
                        (("order", "currency"), Colour.RED)]:
        body = copy.deepcopy(good)
        _at(body, path[:-1])[path[-1]] = value
        assert not check_agreement(entry, body), path
    body = copy.deepcopy(good)
    body["order"]["currency"] = "EUR\n"  # Python's "$" matches before a final newline; the compiled one's does not
    assert check_agreement(entry, body) and REGISTRY.problems(body) == []


def test_an_invalid_order_gets_the_same_report_as_before() -> None:
    body = {"type": "order.received", "version": 1, "tenantId": "acme", "acceptedAt": "not a date",
            "order": {"customerId": "c1", "orderId": "o 1", "amount": 10, "currency": "eur",
                      "email": "leak@example.com",
                      "items": [{"sku": "SKU-1", "category": "coffee", "quantity": 1.5, "unitPrice": "2.00"},
                                {"sku": "", "category": "Tea", "quantity": True}]}}
    assert REGISTRY.problems(body) == [
        "order: Additional properties are not allowed ('email' was unexpected)",
        "order: 'timestamp' is a required property",
        "order/amount: 10 is not of type 'string'",
        "order/currency: 'eur' does not match '^[A-Z]{3}$'",
        "order/items/0/quantity: 1.5 is not of type 'integer'",
        "order/items/1: 'unitPrice' is a required property",
        "order/items/1/category: 'Tea' does not match '^[a-z0-9][a-z0-9_\\\\-]{0,31}$'",
        "order/items/1/quantity: True is not of type 'integer'",
        "order/items/1/sku: '' should be non-empty",
        "order/items/1/sku: '' does not match '^[\\\\x21-\\\\x7e]+$'",
        "order/orderId: 'o 1' does not match '^[A-Za-z0-9][A-Za-z0-9._\\\\-]{0,63}$'",
    ]
