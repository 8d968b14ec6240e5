"""JSON text read strictly: what a client sends Accrue means one thing, or it is refused.

Python's ``json`` module accepts three kinds of text that are not JSON a client can mean,
and Accrue reads JSON from clients in three places (HTTP bodies, ``shared.api.strict_json``;
import files, ``shared.imports.formats``; voucher pool uploads, ``shared.vouchers.pools``):

* **A name twice in one object** (``{"points": 1, "points": 1000}``). RFC 8259 says names
  SHOULD be unique and that parsers differ on which one counts; ``json`` keeps the last.
  A proxy, a log or an audit trail that keeps the first would then disagree with the
  ledger about what was asked, so the text is refused (I-JSON, RFC 7493, makes it a MUST).
* ``NaN``, ``Infinity`` and ``-Infinity``: no JSON literal (``json`` reads them as floats).
* **A lone UTF-16 surrogate** in a string or a name (``"\\ud800"``): no Unicode character,
  so no store, log or serialiser can write it.

``strict_loads`` parses like ``json.loads`` (the same syntax errors, ``ValueError``) and
raises ``NotJson`` with a reason for each of the three. The duplicate check runs inside
the parse (an ``object_pairs_hook``): about a third more than the plain parse.
"""

from __future__ import annotations

import json
import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")
# Where a lone surrogate could come from: an escape of one (a valid pair is two of them), or
# the surrogate itself (in bytes, its UTF-8 encoding ED A0-BF xx, which json.loads of bytes
# lets through).
_MAYBE_SURROGATE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
_MAYBE_SURROGATE_TEXT = re.compile("\\\\u[dD][89a-fA-F]|[\ud800-\udfff]")
_SHOWN = 64  # characters of a duplicate name quoted in the reason


class NotJson(Exception):
    """Text ``json`` parses that is not JSON Accrue reads; the message says why.
    Not a ValueError, so it is never taken for a syntax error."""


def _no_constant(name: str) -> Any:
    raise NotJson(f"{name} is not a JSON value (RFC 8259); send a number, or a string")


def _unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                shown = name if len(name) <= _SHOWN else name[:_SHOWN] + "..."
                raise NotJson(f"the name {shown!r} appears twice in one object; send each name once")
            seen.add(name)
    return document


def strict_loads(text: str | bytes) -> Any:
    """``json.loads(text)``, refusing (``NotJson``) a repeated name, the three non-JSON
    constants and lone surrogates. The parsed value is walked for surrogates only when
    the text holds a surrogate escape or a surrogate itself (its UTF-8 bytes, in bytes)."""
    document = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_unique_names)
    maybe = (_MAYBE_SURROGATE_BYTES if isinstance(text, bytes) else _MAYBE_SURROGATE_TEXT).search(text)
    stack = [document] if maybe else []
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise NotJson("a string holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not a Unicode "
                              "character")
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return document
