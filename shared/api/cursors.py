"""Page cursors: the opaque ``next`` tokens of paginated lists, and their strict reading.

A cursor is ``base64url("<kind>:<seq>")`` without padding, where ``seq`` is a
positive integer written in plain ASCII digits. A client may only send back a
cursor this API gave out, so reading one is strict, and anything else is a 400
problem naming ``cursor`` (never a 500, never a wrong page):

* the token must be base64url characters only (``urlsafe_b64decode`` would
  silently drop any other character, so two tokens would mean one cursor);
* it must be the canonical encoding: re-encoding the decoded cursor gives the
  token back, byte for byte;
* ``kind`` must be the list's own kind (a ledger cursor is not a tier-history cursor);
* ``seq`` must match ``[1-9][0-9]*`` (``int()`` would also take ``" 5"``, ``"+5"``,
  ``"1_0"`` and non-ASCII digits) and stay below ``MAX_SEQ``: a ``seq`` beyond 64
  bits made SQLite raise ``OverflowError`` (issue 12); the store's sequence
  numbers are far smaller.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

from shared.errors import FieldProblem, ValidationFailed

# The query parameters that carry a page token: the opaque ``cursor`` and the keyset
# ``after`` (a customer id, a reward id, an audit seq). A request whose only problems
# are in these is a 400 ``bad-cursor`` (shared.api.problems), like a forged cursor.
PAGE_TOKEN_PARAMETERS = frozenset({"cursor", "after"})
MAX_CURSOR_LENGTH = 64
MAX_SEQ = 10**15  # a sequence number in a JSON-safe integer, far below SQLite's 2^63
_TOKEN = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_SEQ = re.compile(r"[1-9][0-9]{0,15}")
_KIND = re.compile(r"[a-z]{1,16}")


class BadCursor(ValidationFailed):
    """The cursor is not one this API gave out: a 400 (a bad request, not a bad entity), naming the parameter."""

    code = "bad-cursor"
    status = 400

    def __init__(self, field: str = "query.cursor") -> None:
        super().__init__("the cursor is not one this API gave out",
                         [FieldProblem(field, "use the 'next' value of a previous page")])


def _plain_seq(value: Any) -> Any:
    """A keyset sequence number in a query string: plain ASCII digits, no leading zero
    (``int()`` would also take "1_000", " 10", "+5" and other spellings of a number)."""
    if isinstance(value, str) and re.fullmatch(r"0|[1-9][0-9]{0,15}", value) is None:
        raise PydanticCustomError("seq_syntax", "must be the 'next' value of a previous page (plain digits)")
    return value


# An ``after`` that is a sequence number (the audit log's): an int from 0 to the largest
# integer JSON carries exactly, written one way. (The bounds sit inside the type, under
# the validator, so the OpenAPI document keeps them as minimum/maximum.)
MAX_JSON_INTEGER = 2**53 - 1
PlainSeq = Annotated[int, Field(ge=0, le=MAX_JSON_INTEGER), BeforeValidator(_plain_seq)]


def encode(kind: str, seq: int) -> str:
    assert _KIND.fullmatch(kind), f"cursor kind {kind!r}"
    assert 1 <= seq < MAX_SEQ, f"sequence {seq} outside what a cursor carries"
    return base64.urlsafe_b64encode(f"{kind}:{seq}".encode()).decode().rstrip("=")


def decode(kind: str, token: str, field: str = "query.cursor") -> int:
    """The sequence number in ``token`` if it is a cursor of ``kind`` this API made, else ``BadCursor``."""
    if not isinstance(token, str) or _TOKEN.fullmatch(token) is None:
        raise BadCursor(field)
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        raise BadCursor(field) from None
    given_kind, _, digits = text.partition(":")
    if given_kind != kind or _SEQ.fullmatch(digits) is None or int(digits) >= MAX_SEQ:
        raise BadCursor(field)
    seq = int(digits)
    if encode(kind, seq) != token:
        raise BadCursor(field)  # a second spelling of a cursor (e.g. non-zero padding bits)
    return seq
