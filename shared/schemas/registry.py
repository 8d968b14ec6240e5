"""The event schema registry: one JSON Schema (draft 2020-12) per event type and version.

Schemas are files in ``shared/schemas/events/`` named ``<type>.v<version>.json``
and carry ``x-event-type`` and ``x-event-version``; the registry discovers every
file in the folder, so a new event (a webhook payload, an export row) is added
by adding its file. Every object in a schema should say
``"additionalProperties": false``: an event carrying an undefined field is then
refused, not passed on.

Personal data never travels in an event. The personal-data field names are
declared once, in ``shared.privacy.personal.PERSONAL_FIELDS``; ``personal_data_fields``
finds every property of a schema (at any depth, in ``$defs`` too) whose name is
one of them (case- and punctuation-insensitive, also as a suffix such as
``customerEmail``) or that is annotated ``"x-personal-data": true``. The CI gate
(``tests/unit/schemas``) fails when any schema has one. The single exception is
the customers subject of the warehouse export, which is encrypted per file and
exists to carry the profile: a schema may declare
``"x-personal-data-allowed": "customers-export"`` only if its type is listed in
``PERSONAL_DATA_ALLOWED``.

Validation uses two validators per schema, with one result. A compiled draft
2020-12 validator (``jsonschema_rs``, Rust) decides whether an event is valid
in a few microseconds, instead of hundreds with the pure-Python ``jsonschema``
(every order is checked on its way to the bus). Only an event it refuses is
run through ``jsonschema``, which writes the ``path: message`` report and has
the last word: ``problems`` returns exactly what ``jsonschema`` alone would.
The compiled validator is trusted to say "valid" only for plain JSON data
(``dict`` with ``str`` keys, ``list``, ``str``, ``int``, ``float``, ``bool``,
``None``, no subclasses): it also accepts tuples, ``Decimal``s and ``Enum``
members, which ``jsonschema`` refuses. ``format`` is an annotation in both,
never asserted, and neither fetches a remote ``$ref``. A schema it cannot
compile is checked by ``jsonschema`` alone.

Compiled on first use. ``REGISTRY`` (the process's registry) only lists the
files when it is created; a schema is read, checked and compiled the first time
an event of its type and version is validated (under a lock: the Functions
worker validates on a thread pool), and ``jsonschema``/``jsonschema_rs`` are
imported then. Checking and compiling all nineteen schemas took about a tenth
of a second of every cold start, most of it for events the process never
sees. ``SchemaRegistry(folder)`` built explicitly is eager: it reads and checks
every file at once, which is what the CI gate (``tests/unit/schemas``) does, so
a bad schema file still fails the build, not the first event in production.

Usage::

    from shared.schemas import REGISTRY
    REGISTRY.validate(body)                       # by body["type"] / body["version"]
    REGISTRY.validate(doc, "projection.balance", 1)
    REGISTRY.get("order.received", 1)             # the schema dict
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from shared.errors import AccrueError

if TYPE_CHECKING:  # imported on first compile (module docstring)
    import jsonschema_rs
    from jsonschema import Draft202012Validator

EVENTS_DIR = Path(__file__).parent / "events"
FILE_NAME = re.compile(r"^(?P<type>[a-z][a-z0-9_\-]*(\.[a-z][a-z0-9_\-]*)+)\.v(?P<version>[1-9][0-9]*)\.json$")
PERSONAL_DATA_ALLOWED = frozenset({"export.customers"})
_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


class EventSchemaViolation(AccrueError):
    """An event does not match its registered schema (or has none): it is not published."""

    code = "event-schema-violation"
    status = 500


class UnknownEventType(EventSchemaViolation):
    code = "unknown-event-type"


class SchemaFileInvalid(AccrueError):
    code = "schema-file-invalid"
    status = 500


@dataclass(frozen=True)
class EventSchema:
    event_type: str
    version: int
    path: Path
    schema: dict[str, Any]
    validator: Draft202012Validator  # the reference, and the error report
    compiled: jsonschema_rs.Validator | None  # the fast verdict; None if it cannot compile the schema

    def is_valid(self, body: Any) -> bool:
        if self.compiled is not None and _plain_json(body):
            try:
                return self.compiled.is_valid(body)
            except ValueError:  # a str that is not UTF-8 (a lone surrogate)
                pass
        return self.validator.is_valid(body)


def _plain_json(body: Any) -> bool:
    """Whether ``body`` is made of JSON's own Python types only (exact types, no subclasses)."""
    stack = [body]
    while stack:
        value = stack.pop()
        kind = type(value)
        if kind in _JSON_SCALARS:
            continue
        if kind is dict:
            for key in value:
                if type(key) is not str:
                    return False
            stack.extend(value.values())
        elif kind is list:
            stack.extend(value)
        else:
            return False
    return True


def _compile(schema: dict[str, Any]) -> jsonschema_rs.Validator | None:
    import jsonschema_rs

    try:
        return jsonschema_rs.Draft202012Validator(schema, validate_formats=False, offline=True)
    except (ValueError, jsonschema_rs.ReferencingError):  # e.g. a pattern only Python's re accepts
        return None


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def personal_field_names() -> tuple[str, ...]:
    from shared.privacy.personal import PERSONAL_FIELDS

    return PERSONAL_FIELDS


def personal_data_fields(schema: Any, path: str = "") -> list[str]:
    """JSON paths of the properties of ``schema`` that are personal data."""
    personal = {_normalise(n) for n in personal_field_names()}
    found: list[str] = []

    def is_personal(name: str, sub: Any) -> bool:
        norm = _normalise(name)
        if isinstance(sub, dict) and sub.get("x-personal-data") is True:
            return True
        return norm in personal or any(norm.endswith(p) and len(p) >= 5 for p in personal)

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("properties", "patternProperties", "$defs", "definitions") and isinstance(value, dict):
                    for name, sub in value.items():
                        if key == "properties" and is_personal(name, sub):
                            found.append(f"{where}/{key}/{name}")
                        walk(sub, f"{where}/{key}/{name}")
                elif key not in ("const", "enum", "examples", "default", "title", "description"):
                    walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, f"{where}/{index}")

    walk(schema, path)
    return found


class SchemaRegistry:
    """The schemas of ``folder``; ``lazy``: each read and compiled on first use (module docstring)."""

    def __init__(self, folder: Path = EVENTS_DIR, *, lazy: bool = False) -> None:
        self.folder = folder
        self._files: dict[tuple[str, int], Path] = {}
        self._schemas: dict[tuple[str, int], EventSchema] = {}
        self._lock = threading.Lock()
        for file in sorted(folder.glob("*.json")):
            match = FILE_NAME.match(file.name)
            if not match:
                raise SchemaFileInvalid(f"{file.name}: schema files are named <type>.v<version>.json")
            self._files[(match["type"], int(match["version"]))] = file
        if not lazy:
            self._load_all()

    @staticmethod
    def _load(file: Path) -> EventSchema:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        match = FILE_NAME.match(file.name)
        assert match is not None, file  # names were checked when the folder was listed
        try:
            schema = json.loads(file.read_text(encoding="utf-8"))
            Draft202012Validator.check_schema(schema)
        except (ValueError, SchemaError) as exc:
            raise SchemaFileInvalid(f"{file.name}: not a valid JSON Schema: {exc}") from None
        event_type, version = match["type"], int(match["version"])
        if schema.get("x-event-type") != event_type or schema.get("x-event-version") != version:
            raise SchemaFileInvalid(f"{file.name}: x-event-type/x-event-version must say {event_type} v{version}")
        return EventSchema(event_type, version, file, schema, Draft202012Validator(schema), _compile(schema))

    def _loaded(self, key: tuple[str, int]) -> EventSchema | None:
        entry = self._schemas.get(key)
        if entry is None and key in self._files:
            with self._lock:
                entry = self._schemas.get(key)
                if entry is None:
                    entry = self._schemas[key] = self._load(self._files[key])
        return entry

    def _load_all(self) -> None:
        for key in self._files:
            self._loaded(key)

    def __iter__(self) -> Iterator[EventSchema]:
        self._load_all()
        return iter([self._schemas[key] for key in self._files])

    def __len__(self) -> int:
        return len(self._files)

    def get(self, event_type: str, version: int) -> dict[str, Any]:
        return self._entry(event_type, version).schema

    def _entry(self, event_type: str, version: int) -> EventSchema:
        entry = self._loaded((event_type, version))
        if entry is None:
            raise UnknownEventType(f"no schema is registered for event {event_type!r} version {version!r}; "
                                   f"add shared/schemas/events/{event_type}.v{version}.json")
        return entry

    def problems(self, body: Any, event_type: str | None = None, version: int | None = None) -> list[str]:
        """Every way ``body`` fails its schema, as ``path: message`` lines (empty: valid)."""
        if event_type is None:
            if not isinstance(body, dict) or not isinstance(body.get("type"), str):
                return ["(root): the event has no 'type'"]
            event_type, version = body["type"], body.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            return [f"(root): event {event_type!r} has no integer 'version'"]
        try:
            entry = self._entry(event_type, version)
        except UnknownEventType as exc:
            return [exc.message]
        if entry.is_valid(body):
            return []  # the common case
        # Refused: jsonschema decides and explains (it finds nothing when only the compiled validator is
        # stricter, e.g. "EUR\n" for "^[A-Z]{3}$", whose "$" Python's re.search matches before a final newline).
        errors = sorted(entry.validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        return [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in errors]

    def validate(self, body: Any, event_type: str | None = None, version: int | None = None) -> None:
        problems = self.problems(body, event_type, version)
        if problems:
            name = event_type or (body.get("type") if isinstance(body, dict) else None)
            raise EventSchemaViolation(f"event {name!r} does not match its schema: {problems[0]}"
                                       + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                                       problems=problems[:20])


REGISTRY = SchemaRegistry(lazy=True)
