"""Column lines: a document's fixed fields kept beside its JSON as one CSV line, for
readers that want those fields of many documents at once (the export's ``transactions``,
``shared.exports.columnar``) without parsing the whole JSON of each.

Why: Arrow's JSON reader costs about 4.1 µs per ledger entry on the reference machine,
its CSV reader about 1.1 µs for the same fields (``docs/performance.md``, stop 39). A line
is made once, when the document is written (3.4-3.7 µs, before the write lock is taken),
and documents of an append-only container never change after.

What it guarantees: a line holds exactly the document's values of ``LineSpec.fields``, in
that order, each of the declared kind; where that cannot be said in a line a CSV reader
reads back unchanged, there is no line (None) and readers take the JSON. So no line:
* for a value of another JSON type than its field's kind (``"7"`` where an integer is
  declared, ``1.5``, ``true`` for a string), or an integer outside 64 bits;
* for a string holding a quote, a backslash or a control character (JSON would escape
  it; the line's format has no escapes);
* for a document the spec does not describe (``LineSpec.when``).
The format, read with ``pyarrow.csv`` (``shared.exports.columnar.parse_lines``): values separated by
commas; a string in double quotes; an integer in decimal; ``true``/``false``; a missing
or null value as the unquoted word ``null`` (a string ``"null"`` stays a string: quoted).
A line's version is in its column's name (``line_v<version>``): a spec that changes gets
a new version, so a line written by an older one is never read as the newer.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

KINDS = {"string": str, "int64": int, "bool": bool}
_INT64 = (-(1 << 63), (1 << 63) - 1)


@dataclass(frozen=True)
class LineSpec:
    """Which fields a container's line holds (``(name, kind)``, kind one of ``KINDS``),
    for which documents (``when``: a field and the value it must have), in which version.
    The first field is the partition key, so a reader of pages knows where the next
    page starts from the last line alone."""

    version: int
    fields: tuple[tuple[str, str], ...]
    when: tuple[str, Any]
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _types: tuple[type, ...] = field(init=False, repr=False, compare=False)
    _line_of: Callable[[dict[str, Any]], str | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.fields or self.fields[0] != ("pk", "string"):
            raise ValueError("a line starts with the partition key (pk, string)")
        unknown = {kind for _, kind in self.fields} - set(KINDS)
        if unknown:
            raise ValueError(f"kinds of line fields are {sorted(KINDS)}, not {sorted(unknown)}")
        object.__setattr__(self, "_names", tuple(name for name, _ in self.fields))
        object.__setattr__(self, "_types", tuple(KINDS[kind] for _, kind in self.fields))
        object.__setattr__(self, "_line_of", _compile(self))

    @property
    def column(self) -> str:
        return f"line_v{self.version}"

    def line_of(self, doc: dict[str, Any]) -> str | None:
        """The document's line, or None where a line cannot hold it exactly (see the module)."""
        return self._line_of(doc)

    def key_of(self, line: str, order_by: str) -> tuple[str, Any]:
        """``(pk, value of order_by)`` of one line: where a page after it starts. A scan
        reads only documents that have ``order_by`` (never the null word here)."""
        values = next(csv.reader([line]))
        index = self._names.index(order_by)
        kind = self._types[index]
        raw = values[index]
        return values[0], (int(raw) if kind is int else raw == "true" if kind is bool else raw)


def _compile(spec: LineSpec) -> Callable[[dict[str, Any]], str | None]:
    """``spec.line_of`` as one function of straight-line code: every ledger entry written
    pays for it, and a loop over the fields with its type checks cost about twice as much
    (6.5 against 3.4-3.7 µs per entry on the reference machine). The source is made of the
    spec's names (``repr``) and fixed checks only."""
    low, high = _INT64
    checks = {"string": "type({v}) is not str", "bool": "type({v}) is not bool",
              # type(), not isinstance(): a bool is not an int here.
              "int64": f"(type({{v}}) is not int or not {low} <= {{v}} <= {high})"}
    source = ["def line_of(doc):", f"    if doc.get({spec.when[0]!r}) != {spec.when[1]!r}:", "        return None",
              "    get = doc.get"]
    names = []
    for index, (name, kind) in enumerate(spec.fields):
        value = f"v{index}"
        names.append(value)
        source += [f"    {value} = get({name!r})",
                   f"    if {checks[kind].format(v=value)} and {value} is not None:", "        return None"]
    source += ["    try:", f"        text = dumps([{', '.join(names)}])", "    except JSONEncodeError:",
               "        return None  # a lone surrogate",
               "    if b'\\\\' in text:",
               "        return None  # a quote, backslash or control character in a string: JSON escaped it",
               "    return text[1:-1].decode()"]
    scope: dict[str, Any] = {"dumps": orjson.dumps, "JSONEncodeError": orjson.JSONEncodeError}
    exec("\n".join(source), scope)  # noqa: S102 - source built above from the spec's own names
    return scope["line_of"]  # type: ignore[no-any-return]
