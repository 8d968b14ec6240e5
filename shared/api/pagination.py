"""One pagination style for every list route: ``limit`` (bounded per route) and an
opaque ``cursor``; the answer is ``{"items": [...], "next": <link> | null}`` where
``next`` is the same request's path and query with the cursor of the next page
(follow it as is). The order of each list is stable and total (its last sort
field is unique), so paging through with any ``limit`` gives each item exactly
once, and items added meanwhile never shift a page (the cursor is a position in
that order, not an offset).

The cursor is ``<body>.<mac>``: ``body`` is base64url (no padding) of a small JSON
document holding the sort key of the last item given; ``mac`` is a keyed digest
(HMAC-SHA256 under the platform's cursor key, ``cursor_key``) of the body's exact
text and of the list it was given out for: the route, the caller's tenant, the
path's ids and the query's filters (every parameter but ``cursor`` and ``limit``,
so ``limit`` may change between pages). A cursor is read only on the list it was
given out for: another route's, tenant's, customer's or filter's cursor, any
other spelling of a body (non-canonical base64), an edited or forged one (the key
is secret, so no client can make a digest), bad base64 or JSON: all are the 400
problem ``bad-cursor``. The body is not secret: decoding one shows a position in
the caller's own list.

Two ways to page:

* ``keyset``: the service reads ``limit + 1`` items after the cursor's key (an
  indexed query): customers, rewards, the audit log, a ledger, a tier history.
* ``in_memory``: the service returns the whole list and this module sorts, skips
  past the cursor and cuts the page: the small per-tenant lists (keys, endpoints,
  programmes, partners, reviews, runs...). The service reads every item, in keyset
  pages of the store (``shared.store.pages.read_all``), never one read capped at a
  fixed limit: a capped read ended the walk at the cap with ``next: null`` and the
  items past it could never be reached.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import secrets
import threading
import weakref
from urllib.parse import urlencode
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Sequence

from fastapi import Query, Request

from shared.errors import DocumentExists, FieldProblem, ValidationFailed
from shared.store.layout import SYSTEM

SCAN_LIMIT = 10_000
MAX_CURSOR = 1024
MAX_JSON_INTEGER = 2**53 - 1  # also far below SQLite's 2^63
MAX_KEY_TEXT = 256  # longer than any id or instant a list sorts by
# The query parameter that carries a page position: a request whose only problems are in
# it is a 400 ``bad-cursor`` (shared.api.problems), like a cursor that fails ``decode``.
PAGE_TOKEN_PARAMETERS = frozenset({"cursor"})

Cursor = Annotated[str | None, Query(max_length=MAX_CURSOR, pattern=r"^[A-Za-z0-9_\-.]+$",
                                     description="opaque: the cursor of the previous page's `next` link")]

Key = list[Any]  # the sort key of one item: str, int or None values


class BadCursor(ValidationFailed):
    """400: a cursor this API did not give out for this list."""

    code = "bad-cursor"
    status = 400

    def __init__(self, why: str) -> None:
        super().__init__(f"the cursor is not one this API gave out for this list ({why}); "
                         "start again without it, or follow a `next` link as given",
                         [FieldProblem("query.cursor", "use the cursor of a previous page's `next` link")])


def limit_param(default: int, maximum: int) -> Any:
    return Annotated[int, Query(ge=1, le=maximum, description=f"items per page (1-{maximum})")]


def _scope(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path_format", None) or getattr(route, "path", None) or request.url.path


# --- the cursor key: one per platform, kept in the store so every instance shares it ---------

KEY_PK = KEY_ID = "page-cursor-key"
_KEYS: "weakref.WeakKeyDictionary[Any, bytes]" = weakref.WeakKeyDictionary()
_KEYS_LOCK = threading.Lock()


def cursor_key(platform: Any) -> bytes:
    """The platform's cursor key (32 random bytes), made once and kept in the store's
    ``system`` container (no TTL), read once per process. It only authenticates page
    positions: one who held it could make cursors, and a cursor only ever reads the
    caller's own tenant's list (the tenant comes from the API key, not the cursor)."""
    store = platform.store  # the cache's key: a Platform (a dataclass) is not hashable
    with _KEYS_LOCK:
        known = _KEYS.get(store)
        if known is not None:
            return known
        doc = store.read(SYSTEM, KEY_PK, KEY_ID)
        if doc is None:
            try:
                doc = store.create(SYSTEM, {"id": KEY_ID, "pk": KEY_PK, "docType": "pageCursorKey",
                                            "key": base64.b64encode(secrets.token_bytes(32)).decode()})
            except DocumentExists:  # another instance made it first: use theirs
                doc = store.read(SYSTEM, KEY_PK, KEY_ID)
        key = base64.b64decode(doc["key"])
        _KEYS[store] = key
        return key


@dataclass(frozen=True)
class Binding:
    """What a cursor is bound to: the key that signs it and the list it is given out for."""

    secret: bytes
    context: str


def context_of(scope: str, tenant: str, path_params: dict[str, Any], filters: Sequence[tuple[str, str]]) -> str:
    """One list, as text: its route's path format, the tenant, the path's ids and the filters."""
    return json.dumps([scope, tenant, sorted(path_params.items()), sorted(filters)],
                      separators=(",", ":"), ensure_ascii=True)


def binding(request: Request, tenant: str) -> Binding:
    """The list this request reads: route, tenant, the path's ids and the query's filters
    (every query parameter but ``cursor`` and ``limit``)."""
    filters = [(k, v) for k, v in request.query_params.multi_items() if k not in ("cursor", "limit")]
    return Binding(cursor_key(request.app.state.platform),
                   context_of(_scope(request), tenant, dict(request.path_params), filters))


def _mac(bound: Binding, body: str) -> str:
    digest = hmac.new(bound.secret, bound.context.encode() + b"\n" + body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()  # 144 bits, 24 characters, no padding


def encode(bound: Binding, key: Key) -> str:
    payload = json.dumps({"v": 2, "k": key}, separators=(",", ":"), sort_keys=True).encode()
    body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    return body + "." + _mac(bound, body)


def decode(bound: Binding, cursor: str, arity: int) -> Key:
    body, dot, mac = cursor.partition(".")
    if not dot or not hmac.compare_digest(mac.encode(), _mac(bound, body).encode()):
        # another list's, tenant's or filter's cursor, another spelling, an edited or forged one
        raise BadCursor("not given out for this list")
    try:
        document = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError):
        raise BadCursor("not base64url JSON") from None
    if not isinstance(document, dict) or document.get("v") != 2:
        raise BadCursor("unknown version")
    key = document.get("k")
    if not isinstance(key, list) or len(key) != arity or not all(map(_plausible, key)):
        raise BadCursor("malformed position")
    return key


def _plausible(value: Any) -> bool:
    """A sort-key value a list could have given out. The checksum is not secret, so a
    crafted cursor reaches here: an integer beyond what JSON carries exactly (a seq
    beyond 64 bits made SQLite raise OverflowError, a 500: issue 12) or a huge string
    is refused here, before any store sees it."""
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -MAX_JSON_INTEGER <= value <= MAX_JSON_INTEGER
    return isinstance(value, str) and len(value) <= MAX_KEY_TEXT


def next_link(request: Request, cursor: str) -> str:
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"] + [("cursor", cursor)]
    return f"{request.url.path}?{urlencode(query)}"


def _answer(request: Request, tenant: str, items: list[Any], more: bool,
            key_of: Callable[[Any], Key]) -> dict[str, Any]:
    return {"items": items,
            "next": next_link(request, encode(binding(request, tenant), key_of(items[-1]))) if more and items else None}


# --- keyset: the service reads after the cursor ---------------------------------------------


def position(request: Request, tenant: str, cursor: str | None, *types: type) -> Key | None:
    """The cursor's key (None: the first page), checked to be one given out for this list
    (route, ``tenant``, path ids, filters): one value per entry of ``types``, each of that type."""
    if not cursor:
        return None
    key = decode(binding(request, tenant), cursor, len(types))
    if not all(isinstance(value, kind) for value, kind in zip(key, types)):
        raise BadCursor("malformed position")
    return key


def keyset(request: Request, tenant: str, fetched: Sequence[Any], limit: int, key_of: Callable[[Any], Key],
           view: Callable[[Any], Any] = lambda item: item, resume: Key | None = None) -> dict[str, Any]:
    """``fetched``: up to ``limit + 1`` items after the cursor, in the list's order.

    ``resume``: a bounded scan (a filter the store cannot apply) stopped before the end of
    the list with at most ``limit`` items found; the position of the last item it scanned.
    The answer is then the items found (maybe none) and a ``next`` that continues the scan
    after that position: never ``next: null`` before the end of the list."""
    assert len(fetched) <= limit + 1, "a keyset read asks for limit + 1 items"
    page = list(fetched[:limit])
    if resume is not None and len(fetched) <= limit:
        answer = {"items": page, "next": next_link(request, encode(binding(request, tenant), resume))}
    else:
        answer = _answer(request, tenant, page, len(fetched) > limit, key_of)
    answer["items"] = [view(item) for item in page]
    return answer


# --- in memory: the whole bounded list, sorted here -----------------------------------------


@dataclass(frozen=True)
class Order:
    """Sort fields, the last one unique among the list's items; one direction for all."""

    fields: tuple[str, ...]
    descending: bool = False

    def key(self, item: Any) -> Key:
        if not isinstance(item, dict):
            return [item]
        return [item.get(f) for f in self.fields]


def _compare(a: Key, b: Key) -> int:
    for x, y in zip(a, b):
        if x == y:
            continue
        if x is None or y is None:
            return -1 if x is None else 1
        if type(x) is not type(y):  # never within one list's field; ordered by type name to stay total
            return -1 if type(x).__name__ < type(y).__name__ else 1
        return -1 if x < y else 1
    return 0


def in_memory(request: Request, tenant: str, items: Sequence[Any], limit: int, cursor: str | None,
              order: Order) -> dict[str, Any]:
    # Any value a key field can hold (None, str, int): _compare orders mixed types totally.
    after = position(request, tenant, cursor, *[object] * (len(order.fields) or 1))
    sign = -1 if order.descending else 1
    keyed = sorted(((order.key(i), i) for i in items), key=functools.cmp_to_key(lambda a, b: sign * _compare(a[0], b[0])))
    for (k1, _), (k2, _) in zip(keyed, keyed[1:]):
        assert _compare(k1, k2) != 0, f"list order {order.fields} is not total: two items share the key {k1}"
    if after is not None:
        keyed = [(k, i) for k, i in keyed if sign * _compare(k, after) > 0]
    page = keyed[:limit]
    return _answer(request, tenant, [i for _, i in page], len(keyed) > limit, lambda item: order.key(item))

