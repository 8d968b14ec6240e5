"""The hash chain's canonical bytes (shared/ledger/chain.py) are one definition, the
standard library's sorted, compact, UTF-8 JSON, whichever encoder wrote them: orjson's
fast path gives exactly those bytes for every entry, and anything it could write
otherwise (floats, lone surrogates, ints past 64 bits, non-string keys) goes to the
definition. A difference here would break every stored chain."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.ledger.chain import canonical, entry_hash

_DEFINITION = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _defined(entry: dict) -> bytes:
    body = {k: v for k, v in entry.items() if k != "hash" and not k.startswith("_")}
    return _DEFINITION.encode(body).encode("utf-8", errors="surrogatepass")


# Any code point, lone surrogates and control characters included.
text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=12)
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
