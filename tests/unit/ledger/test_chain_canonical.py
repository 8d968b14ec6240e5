"""The hash chain's canonical bytes (shared/ledger/chain.py) are one definition, the
standard library's sorted, compact, UTF-8 JSON, whichever encoder wrote them: orjson's
fast path gives exactly those bytes for every entry, and anything it could write
otherwise (floats, lone surrogates, ints past 64 bits, non-string keys) goes to the
definition. A difference here would break every stored chain. The same for request
fingerprints (shared/ledger/service.py ``fingerprint_of``), kept in idempotency markers, and
for the lines of the warehouse's NDJSON files (shared/exports/service.py), which keep the
text they had when the standard encoder wrote them."""

from __future__ import annotations

import hashlib
import json
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.ledger.chain import canonical, entry_hash
from shared.exports.service import _gzip_lines
from shared.ledger.service import fingerprint_of

_DEFINITION = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _defined(entry: dict) -> bytes:
    body = {k: v for k, v in entry.items() if k != "hash" and not k.startswith("_")}
    return _DEFINITION.encode(body).encode("utf-8", errors="surrogatepass")


# Any code point, and often the ones the encoders might treat apart (control characters,
# DEL, quotes, backslash, line separators, a lone surrogate, non-ASCII).
text = st.text(alphabet=st.one_of(st.characters(min_codepoint=0, max_codepoint=0x10FFFF),
                                  st.sampled_from("\x00\x08\x1f\x7f\x80\"\\/\u2028\u2029\ud800\ufeff\u00e9")),
               max_size=12)
scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), text,
                   st.floats(allow_nan=True, allow_infinity=True))
value = st.recursive(scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)), max_leaves=12)
entry = st.dictionaries(text, value, max_size=10)


@settings(max_examples=600, deadline=None)
@given(entry=entry)
def test_canonical_bytes_are_the_definitions(entry: dict) -> None:
    try:
        expected = _defined(entry)
        expected.decode("utf-8")
    except UnicodeDecodeError:
        # A lone surrogate has no UTF-8: the definition refuses such an entry, so must canonical.
        try:
            canonical(entry)
        except UnicodeEncodeError:
            return
        raise AssertionError("canonical accepted what the definition refuses")
    assert canonical(entry) == expected


@settings(max_examples=200, deadline=None)
@given(extra=st.dictionaries(st.sampled_from(["attributes", "reason", "awardId", "note"]),
                             st.one_of(text, st.dictionaries(text, st.one_of(text, st.integers(0, 10**15)),
                                                             max_size=3)), max_size=3),
       seq=st.integers(1, 10**6), amount=st.integers(-(10**15), 10**15))
def test_a_ledger_entry_hashes_as_defined(extra: dict, seq: int, amount: int) -> None:
    """An entry shaped as the ledger writes it (the store's ``_`` fields and ``hash`` left out)."""
    entry = {"id": f"e-{seq:012d}", "pk": "t:c1", "docType": "entry", "seq": seq, "signedAmount": amount,
             "runningBalance": amount, "referenceOrderId": None, "imported": True, "_etag": "x", "_ts": 1,
             "hash": "old", "prevHash": "p" * 64, **extra}
    try:
        expected = _defined(entry)
        expected.decode("utf-8")
    except UnicodeDecodeError:
        return  # not an entry the ledger can write
    assert canonical(entry) == expected
    assert entry_hash(entry, "p" * 64) == entry_hash(dict(entry), "p" * 64)


_FINGERPRINT_DEFINITION = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


@settings(max_examples=600, deadline=None)
@given(payload=st.one_of(value, st.dictionaries(text, value, max_size=6)))
def test_fingerprints_are_the_definitions(payload) -> None:
    """Request fingerprints are stored in markers: a re-run compares them, so their text
    (the standard encoder's, ASCII-escaped) must not change with the fast path."""
    try:
        expected = hashlib.sha256(_FINGERPRINT_DEFINITION.encode(payload).encode()).hexdigest()
    except UnicodeEncodeError:
        return  # not reachable: ensure_ascii escapes every non-ASCII character
    assert fingerprint_of(payload) == expected


def test_fingerprints_of_what_only_the_definition_writes() -> None:
    from datetime import datetime, timezone
    from decimal import Decimal

    for payload in ({"amount": Decimal("1.10")}, {1: "a", 2: "b"}, {"at": datetime(2025, 1, 1, tzinfo=timezone.utc)},
                    {"x": 2**70}, {"f": 1e-07}, {"s": "caf\u00e9 \ud800"}, [True, None, "\x7f\x00"]):
        expected = hashlib.sha256(_FINGERPRINT_DEFINITION.encode(payload).encode()).hexdigest()
        assert fingerprint_of(payload) == expected, payload


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.dictionaries(text, value, max_size=5), max_size=3))
def test_export_lines_are_the_standard_encoders(rows: list) -> None:
    expected = b"".join(json.dumps(row, separators=(",", ":"), sort_keys=True, default=str).encode() + b"\n"
                        for row in rows)
    assert zlib.decompress(b"".join(_gzip_lines(iter(rows), flush_at=64)), 16 + zlib.MAX_WBITS) == expected
