"""The hash chain over a customer's ledger entries, and the tenant's Merkle digest.

Every entry carries ``prevHash`` and ``hash``: ``hash`` is SHA-256 (hex) of the
previous entry's hash and the canonical serialisation of the entry itself
(``canonical``: JSON, sorted keys, no spaces, UTF-8, every field except
``hash`` and the store's own ``_``-prefixed properties). The ledger computes it
in the append that writes the entry (shared/ledger/service.py), so the chain
is as atomic as the entries: there is no hashing step that could be skipped.

Where a chain starts (``anchor``): a customer's first hashed entry at sequence
``k`` has ``prevHash = anchor(pk, k - 1)``, a hash of the partition key and the
sequence number. A new customer's chain starts at ``anchor(pk, 0)``; binding
the partition key means a chain copied into another customer's partition does
not verify there.

Migration of entries written before the chain (``migrate``): they keep no
hash (the ledger is append-only: nothing is rewritten). A **genesis record**
(``chain-genesis``, created once per partition, append-only like the entries)
records ``throughSeq`` (the last unhashed entry) and ``legacyDigest``, the same
chaining computed over those entries. ``verify`` recomputes it; the hashed
entries that follow start at ``anchor(pk, throughSeq)``.

What a chain alone catches: an altered entry (its hash), a deleted or inserted
one (a sequence gap, a ``prevHash`` that does not match). What it cannot catch
is a partition rewritten whole and re-chained, or its newest entries dropped:
the **tenant digest** does. Daily, ``digest`` takes every customer's chain
head ``(customerId, seq, hash)``, hashes each to a leaf and builds a Merkle
root; the root is written to the tenant's audit log (itself hash-chained and
archived to immutable storage) and the leaves to the audit archive. ``verify``
then checks that each recorded head is still in the ledger with the same hash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import orjson

from shared.ledger.entries import ENTRY_DOC
from shared.store.layout import LEDGER, customer_pk
from shared.store.port import DocumentStore, Filter, Query

GENESIS_ID = "chain-genesis"
GENESIS_DOC = "chainGenesis"
PAGE = 500

_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_SORTED = orjson.OPT_SORT_KEYS
# Types of values orjson writes byte for byte as _ENCODER does: strings, ints, booleans,
# null (and lists and dicts of them). Floats are not among them: orjson writes 1e-07 as
# 1e-7 and NaN as null. What orjson refuses among these (a lone surrogate, an int past 64
# bits, a non-string key) it refuses loudly, and the definition decides.
_SCALARS = frozenset((str, int, bool, type(None)))


def canonical(entry: dict[str, Any]) -> bytes:
    """The bytes an entry's hash covers: every field but ``hash`` and the store's ``_`` ones.

    The definition is ``_ENCODER``'s text (sorted keys, no spaces, UTF-8). orjson writes the
    same bytes about ten times faster (an import seals a million entries) for an entry
    without floats; on anything it refuses or might write otherwise, the definition is
    used. A property test holds the two to the same bytes (tests/unit/ledger/test_chain_canonical.py)."""
    body = _hashed_fields(entry)
    fast = sorted_plain_json(body)
    # None: refused or not plain, the definition decides (and raises if it refuses too).
    return fast if fast is not None else _ENCODER.encode(body).encode("utf-8")


def sorted_plain_json(value: Any) -> bytes | None:
    """orjson's sorted-key, spaceless UTF-8 text of ``value`` when ``value`` is ``plain``
    (then the same characters as the standard encoder's with ``sort_keys`` and no spaces,
    escaping aside), else None, as when orjson refuses it: the caller's own encoder decides.
    Shared by the chain's canonical bytes and the ledger's request fingerprints."""
    if not plain(value):
        return None
    try:
        return orjson.dumps(value, option=_SORTED)
    except TypeError:  # orjson.JSONEncodeError is one
        return None


def sorted_ascii_json(value: Any, encoder: json.JSONEncoder) -> bytes:
    """``encoder``'s text of ``value`` (an encoder with sorted keys, no spaces and the default
    ``ensure_ascii``), written by orjson when that gives the very same bytes: ``value`` is
    ``plain`` and orjson's text is printable ASCII (the encoder escapes every character beyond
    it, DEL included). About ten times faster for the common row; anything else is ``encoder``'s.
    The ledger's fingerprints and the export's NDJSON lines are written so."""
    text = sorted_plain_json(value)
    if text is not None and text.isascii() and b"\x7f" not in text:
        return text
    return encoder.encode(value).encode()


def _hashed_fields(entry: dict[str, Any]) -> dict[str, Any]:
    """``entry`` without ``hash`` and ``_``-prefixed fields (itself when it has none: an
    entry being sealed, which is not copied)."""
    for key in entry:
        if key[:1] == "_":
            break
    else:
        if "hash" not in entry:
            return entry
    return {k: v for k, v in entry.items() if k != "hash" and k[:1] != "_"}


def plain(value: Any) -> bool:
    """Whether ``value`` holds nothing but strings, ints, booleans and nulls, in lists and
    dicts (exactly those types: a subclass goes to the definition), at any depth."""
    kind = type(value)
    if kind is dict:
        value = value.values()
    elif kind is not list:
        return kind in _SCALARS
    for item in value:
        if type(item) not in _SCALARS and not plain(item):
            return False
    return True


def entry_hash(entry: dict[str, Any], prev_hash: str) -> str:
    """SHA-256 of the previous hash then the entry's canonical bytes (the entry's ``prevHash`` included)."""
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(b"\n")
    digest.update(canonical(entry))
    return digest.hexdigest()


def anchor(pk: str, seq: int) -> str:
    """Where a partition's hashed chain starts, after ``seq`` unhashed (legacy) entries."""
    assert seq >= 0
    return hashlib.sha256(f"accrue-ledger-genesis|{pk}|{seq}".encode("utf-8")).hexdigest()


def seal(entry: dict[str, Any], prev_hash: str) -> dict[str, Any]:
    """Give a new entry its ``prevHash`` and ``hash`` (in place, and returned)."""
    entry.pop("hash", None)
    entry["prevHash"] = prev_hash
    entry["hash"] = entry_hash(entry, prev_hash)
    return entry


# --- verification of one partition -----------------------------------------------


@dataclass
class ChainProblem:
    kind: str          # chain-gap | chain-prev-hash | chain-hash | chain-unhashed | chain-genesis | digest-...
    detail: str
    seq: int | None = None

    def view(self) -> dict[str, Any]:
        return {"kind": self.kind, "detail": self.detail, **({"seq": self.seq} if self.seq is not None else {})}


class ChainWalker:
    """Checks a partition's entries one at a time, in sequence order (reconciliation
    feeds it the entries it already reads; ``verify_customer`` reads them itself)."""

    def __init__(self, pk: str) -> None:
        self.pk = pk
        self.seq = 0
        self.head_hash: str | None = None
        self.legacy_through = 0
        self._legacy = anchor(pk, 0)
        self.problems: list[ChainProblem] = []

    def step(self, entry: dict[str, Any]) -> None:
        seq = entry.get("seq")
        if seq != self.seq + 1:
            self.problems.append(ChainProblem("chain-gap", f"expected seq {self.seq + 1}, found {seq}", seq))
        if entry.get("pk") != self.pk:
            self.problems.append(ChainProblem("chain-hash", "the entry names another partition", seq))
        stored = entry.get("hash")
        if stored is None:
            if self.head_hash is not None:
                self.problems.append(ChainProblem("chain-unhashed", "an entry without a hash after hashed ones", seq))
            else:
                self._legacy = entry_hash(entry, self._legacy)
                self.legacy_through = seq if isinstance(seq, int) else self.legacy_through
        else:
            expected_prev = self.head_hash if self.head_hash is not None else anchor(self.pk, self.seq)
            if entry.get("prevHash") != expected_prev:
                self.problems.append(ChainProblem(
                    "chain-prev-hash", "prevHash does not match the previous entry's hash", seq))
            if stored != entry_hash(entry, entry.get("prevHash") or ""):
                self.problems.append(ChainProblem(
                    "chain-hash", "the entry's content does not match its hash: it was altered", seq))
            self.head_hash = stored
        self.seq = seq if isinstance(seq, int) else self.seq + 1

    def check_genesis(self, genesis: dict[str, Any] | None) -> None:
        """After the walk: legacy entries need a genesis record that matches them."""
        if self.legacy_through == 0:
            if genesis is not None and genesis.get("throughSeq") != 0:
                self.problems.append(ChainProblem("chain-genesis", "a genesis record for entries that are gone"))
            return
        if genesis is None:
            self.problems.append(ChainProblem(
                "chain-genesis", f"{self.legacy_through} entries without hashes and no genesis record "
                "(run `accrue ledger migrate-chain`)"))
        elif genesis.get("throughSeq") != self.legacy_through or genesis.get("legacyDigest") != self._legacy:
            self.problems.append(ChainProblem(
                "chain-genesis", "the unhashed entries do not match their genesis record", self.legacy_through))

    @property
    def ok(self) -> bool:
        return not self.problems


def partition_entries(store: DocumentStore, pk: str) -> Iterator[dict[str, Any]]:
    seq = 0
    while True:
        page = store.query(LEDGER, Query(pk=pk, filters=(Filter("docType", "=", ENTRY_DOC), Filter("seq", ">", seq)),
                                         order_by="seq", limit=PAGE))
        yield from page
        if len(page) < PAGE:
            return
        seq = page[-1]["seq"]


@dataclass
class CustomerChain:
    customer_id: str
    entries: int
    head_seq: int
    head_hash: str | None
    problems: list[ChainProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def view(self) -> dict[str, Any]:
        return {"customerId": self.customer_id, "ok": self.ok, "entries": self.entries, "headSeq": self.head_seq,
                "headHash": self.head_hash, "problems": [p.view() for p in self.problems]}


def verify_customer(store: DocumentStore, tenant_id: str, customer_id: str) -> CustomerChain:
    pk = customer_pk(tenant_id, customer_id)
    walker = ChainWalker(pk)
    count = 0
    for entry in partition_entries(store, pk):
        walker.step(entry)
        count += 1
    walker.check_genesis(store.read(LEDGER, pk, GENESIS_ID))
    return CustomerChain(customer_id, count, walker.seq, walker.head_hash, walker.problems)


# --- migration ---------------------------------------------------------------------


def migrate(store: DocumentStore, tenant_id: str, customer_id: str) -> dict[str, Any] | None:
    """Write the partition's genesis record if it has entries without hashes (idempotent:
    the record's id is fixed, a second run finds it). Returns the record, or None when
    the partition needs none. Entries appended meanwhile are hashed and start at
    ``anchor(pk, throughSeq)``, so the record only ever covers the unhashed prefix."""
    from shared.errors import DocumentExists  # noqa: PLC0415 - keeps this module's imports small

    pk = customer_pk(tenant_id, customer_id)
    existing = store.read(LEDGER, pk, GENESIS_ID)
    if existing is not None:
        return existing
    walker = ChainWalker(pk)
    for entry in partition_entries(store, pk):
        if entry.get("hash") is not None:
            break
        walker.step(entry)
    if walker.legacy_through == 0:
        return None
    doc = {"id": GENESIS_ID, "pk": pk, "docType": GENESIS_DOC, "tenantId": tenant_id, "customerId": customer_id,
           "throughSeq": walker.legacy_through, "legacyDigest": walker._legacy,
           "anchor": anchor(pk, walker.legacy_through)}
    try:
        return store.create(LEDGER, doc)
    except DocumentExists:
        return store.read(LEDGER, pk, GENESIS_ID)


# --- the tenant digest --------------------------------------------------------------


def leaf(customer_id: str, seq: int, head_hash: str | None) -> str:
    return hashlib.sha256(f"{customer_id}|{seq}|{head_hash or ''}".encode("utf-8")).hexdigest()


def merkle_root(leaves: Iterable[str]) -> str:
    """Pairwise SHA-256 up to one root; an odd node is carried up unchanged. No leaves: sha256('')."""
    level = [bytes.fromhex(h) for h in leaves]
    if not level:
        return hashlib.sha256(b"").hexdigest()
    while len(level) > 1:
        paired = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0].hex()
