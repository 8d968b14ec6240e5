"""The audit log: every administrative act of a tenant, append-only and hash-chained.

A record says who (API key id and role), what (``action``, ``target``), when,
before/after where meaningful, and why (``reason``). It never holds personal
data: callers pass ids (a customer id, a key id), never a profile.

Tamper evidence: records of one tenant form a chain. Record ``n`` (its id is
``n`` zero-padded, so ids sort in order) carries ``prevHash``, the ``hash`` of
record ``n-1`` (64 zeros for the first), and its own ``hash``: SHA-256 of the
canonical JSON (sorted keys, no spaces, UTF-8) of every field except ``hash``
and the store's ``_etag``/``_ts``. Two writers racing on one tenant both try to
create id ``n``; the store lets one win and the other re-reads the head and
retries, so the chain never forks (the ledger's trick). The ``audit`` container
is append-only: no API, and no store call, edits or deletes a record.

``verify`` walks a chain and reports the first broken link (a gap in the
sequence, a ``prevHash`` that does not match, a ``hash`` that does not
recompute). ``archive`` copies records to the blob sink (``audit`` container on
Azure, under a 7-year immutability policy; a local folder otherwise) as
write-once JSON Lines blobs ``<tenantId>/<firstSeq>-<lastSeq>.jsonl``.

Platform-wide acts (dual-control requests, approvals) go to the chain
``_platform``; no tenant id can start with ``_``, so it never collides.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Protocol

from shared.blobs.port import BlobExists, BlobSink
from shared.clock import Clock, iso, parse_iso
from shared.errors import AccrueError, Conflict, DocumentExists, NotFound
from shared.store.contention import attempts
from shared.store.layout import AUDIT, SYSTEM
from shared.store.port import DocumentStore, Filter, Query
from shared.telemetry.logs import log_admin_act

PLATFORM_CHAIN = "_platform"
GENESIS = "0" * 64
SEQ_DIGITS = 12
PAGE = 500
LOST_RECORD_SCAN = 200
# A change younger than this may still be getting its record from its first attempt (a
# repeat racing it must not record it too): only an older one is taken for lost.
LOST_RECORD_GRACE = timedelta(seconds=30)
ARCHIVE_BATCH = 1000
log = logging.getLogger("accrue.audit")
HASHED_FIELDS = ("id", "pk", "docType", "tenantId", "seq", "at", "actor", "action", "target", "before", "after",
                 "reason", "prevHash")


class HasActor(Protocol):
    key_id: str

    @property
    def role(self) -> Any: ...


@dataclass(frozen=True)
class Actor:
    """Who acted: an API key and its role, or the system itself (``key_id='system'``)."""

    key_id: str
    role: str

    @classmethod
    def of(cls, who: "HasActor | Actor | None") -> "Actor":
        if who is None:
            return SYSTEM_ACTOR
        if isinstance(who, Actor):
            return who
        role = getattr(who.role, "value", who.role)
        return cls(str(who.key_id), str(role))


SYSTEM_ACTOR = Actor("system", "system")


class AuditChainBroken(AccrueError):
    code = "audit-chain-broken"
    status = 409


def record_hash(record: dict[str, Any]) -> str:
    body = {k: record.get(k) for k in HASHED_FIELDS}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def record_id(seq: int) -> str:
    return str(seq).zfill(SEQ_DIGITS)


class AuditLog:
    def __init__(self, store: DocumentStore, clock: Clock,
                 archive_sink: Callable[[], BlobSink] | BlobSink | None = None) -> None:
        self._store = store
        self._clock = clock
        self._archive_sink = archive_sink

    # --- writing ------------------------------------------------------------------

    def record(self, tenant_id: str, action: str, who: "HasActor | Actor | None" = None, *,
               target: str | None = None, before: Any = None, after: Any = None,
               reason: str | None = None) -> dict[str, Any]:
        """Append one record to ``tenant_id``'s chain and return it (with ``seq`` and ``hash``).

        ``action`` is a dotted verb such as ``apikey.created``, ``ruleset.activated``,
        ``customer.erased``; ``who`` a ``Principal`` (or ``Actor``; None: the system);
        ``before``/``after`` JSON values (no personal data, no secrets)."""
        if not action or len(action) > 100:
            raise ValueError("an audit action is a non-empty dotted name of at most 100 characters")
        actor = Actor.of(who)
        for _ in attempts():
            head = self.head(tenant_id)
            seq = (head["seq"] + 1) if head else 1
            doc = {
                "id": record_id(seq), "pk": tenant_id, "docType": "audit", "tenantId": tenant_id, "seq": seq,
                "at": iso(self._clock.now()), "actor": {"keyId": actor.key_id, "role": actor.role},
                "action": action, "target": target, "before": _json(before), "after": _json(after),
                "reason": (reason or None) and reason[:1000], "prevHash": head["hash"] if head else GENESIS,
            }
            doc["hash"] = record_hash(doc)
            try:
                written = _public(self._store.create(AUDIT, doc))
            except DocumentExists:
                continue  # another writer took this sequence number: re-read the head
            _log_act(tenant_id, action, actor, target, after, seq)
            return written
        raise Conflict(f"could not append to the audit log of {tenant_id!r}: too many concurrent writers")

    # --- reading ------------------------------------------------------------------

    def head(self, tenant_id: str) -> dict[str, Any] | None:
        newest = self._store.query(AUDIT, Query(pk=tenant_id, order_by="seq", descending=True, limit=1))
        return newest[0] if newest else None

    def records(self, tenant_id: str, after_seq: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        docs = self._store.query(AUDIT, Query(pk=tenant_id, filters=(Filter("seq", ">", after_seq),),
                                              order_by="seq", limit=limit))
        return [_public(d) for d in docs]

    def latest(self, tenant_id: str, limit: int) -> list[dict[str, Any]]:
        """The chain's newest ``limit`` records, newest first."""
        docs = self._store.query(AUDIT, Query(pk=tenant_id, order_by="seq", descending=True, limit=limit))
        return [_public(d) for d in docs]

    def record_if_lost(self, tenant_id: str, actions: Iterable[str], action: str, who: "HasActor | Actor | None",
                       *, target: str, since: str, matches: Callable[[dict[str, Any]], bool] = lambda r: True,
                       before: Any = None, after: dict[str, Any] | None = None,
                       reason: str | None = None) -> dict[str, Any] | None:
        """For the repeat of a change (a client's retry after an error) whose first attempt
        may have died after the change and before its record: record ``action`` now, its
        ``after`` marked ``recordedOnRepeat``, unless the chain holds a record of one of
        ``actions`` on ``target`` that ``matches``, written since ``since`` (the change's
        instant; a record is written after its change). Only for a change older than
        ``LOST_RECORD_GRACE`` (a younger one's first attempt may be recording it now), and
        looking back at most ``LOST_RECORD_SCAN`` records: further back it assumes recorded
        rather than risk a second record. The record written, or None."""
        if self._clock.now() - parse_iso(since) < LOST_RECORD_GRACE:
            return None
        records = self.latest(tenant_id, LOST_RECORD_SCAN)
        for record in records:
            if record.get("action") in actions and record.get("target") == target and matches(record):
                return None
            if record["at"] < since:
                break
        else:
            if len(records) == LOST_RECORD_SCAN:
                return None
        return self.record(tenant_id, action, who, target=target, before=before,
                           after={**(after or {}), "recordedOnRepeat": True}, reason=reason)

    def has_record(self, tenant_id: str, action: str, target: str) -> bool:
        """Whether ``tenant_id``'s chain holds an ``action`` record on ``target``: how a step
        that is retried after a crash (tenant provisioning) records itself exactly once.
        Reads the whole chain: for young chains only, such as a tenant being provisioned."""
        return any(r.get("action") == action and r.get("target") == target for r in self.iter_records(tenant_id))

    def iter_records(self, tenant_id: str, after_seq: int = 0) -> Iterator[dict[str, Any]]:
        while True:
            page = self.records(tenant_id, after_seq, PAGE)
            yield from page
            if len(page) < PAGE:
                return
            after_seq = page[-1]["seq"]

    def verify(self, tenant_id: str) -> dict[str, Any]:
        """Check the whole chain; ``{"ok": True, "records": n, "head": hash}`` or the first broken link."""
        expected_seq, prev_hash, count = 1, GENESIS, 0
        for record in self.iter_records(tenant_id):
            seq = record.get("seq")
            problem = None
            if seq != expected_seq or record.get("id") != record_id(expected_seq):
                problem = f"expected record {expected_seq}, found {seq!r}: a record is missing or renumbered"
            elif record.get("tenantId") != tenant_id or record.get("pk") != tenant_id:
                problem = "the record belongs to another chain"
            elif record.get("prevHash") != prev_hash:
                problem = "prevHash does not match the hash of the previous record"
            elif record.get("hash") != record_hash(record):
                problem = "the record's content does not match its hash: it was altered"
            if problem:
                return {"ok": False, "tenantId": tenant_id, "records": count, "brokenAt": expected_seq,
                        "problem": problem}
            count, expected_seq, prev_hash = count + 1, expected_seq + 1, record["hash"]
        return {"ok": True, "tenantId": tenant_id, "records": count, "head": prev_hash}

    # --- retention ----------------------------------------------------------------

    def archive(self, tenant_id: str) -> list[str]:
        """Copy records not yet archived to the blob sink; returns the blob paths written."""
        sink = self._sink()
        checkpoint_id = f"audit-archive-{tenant_id}"
        state = self._store.read(SYSTEM, "audit-archive", checkpoint_id) or {
            "id": checkpoint_id, "pk": "audit-archive", "docType": "auditArchive", "tenantId": tenant_id,
            "archivedThrough": 0}
        written: list[str] = []
        while True:
            batch = self.records(tenant_id, state["archivedThrough"], ARCHIVE_BATCH)
            if not batch:
                return written
            path = f"{tenant_id}/{record_id(batch[0]['seq'])}-{record_id(batch[-1]['seq'])}.jsonl"
            body = b"".join(json.dumps(r, sort_keys=True, separators=(",", ":")).encode() + b"\n" for r in batch)
            try:
                sink.put(path, body, content_type="application/x-ndjson",
                         metadata={"tenantId": tenant_id, "firstSeq": str(batch[0]["seq"]),
                                   "lastSeq": str(batch[-1]["seq"]), "headHash": batch[-1]["hash"]})
            except BlobExists:
                pass  # written by a run that stopped before its checkpoint: same records, same bytes
            written.append(path)
            state = self._store.upsert(SYSTEM, dict(state, archivedThrough=batch[-1]["seq"],
                                                    archivedAt=iso(self._clock.now())),
                                       if_match=state.get("_etag"))

    def attach(self, path: str, body: bytes, metadata: dict[str, str] | None = None) -> None:
        """Write evidence an audit record refers to (the ledger digest's leaves) to the
        immutable archive, beside the archived records. ``BlobExists`` if already there."""
        self._sink().put(path, body, content_type="application/json", metadata=metadata)

    def read_attachment(self, path: str) -> bytes:
        return self._sink().read(path)

    def archive_all(self) -> dict[str, list[str]]:
        tenants = {d["tenantId"] for d in self._store.query(
            AUDIT, Query(pk=None, filters=(Filter("seq", "=", 1),), limit=10_000))}
        return {t: self.archive(t) for t in sorted(tenants)}

    def _sink(self) -> BlobSink:
        if self._archive_sink is None:
            raise NotFound("no audit archive is configured")
        if callable(self._archive_sink) and not hasattr(self._archive_sink, "put"):
            self._archive_sink = self._archive_sink()
        return self._archive_sink  # type: ignore[return-value]


def _log_act(tenant_id: str, action: str, actor: Actor, target: str | None, after: Any, seq: int) -> None:
    """The operators' line of an administrative act (the record above is the evidence).

    A customer target is logged by its kind only: a customer id is the merchant's
    identifier of a person, and logs hold none (the audit record keeps it)."""
    kind, _, ident = (target or "").partition(":")
    more: dict[str, Any] = {"audit_seq": seq}
    if kind == "ruleset" and ident:
        more["rule_set_id"] = ident
        if isinstance(after, dict) and isinstance(after.get("version"), int):
            more["rule_set_version"] = after["version"]
    log_admin_act(log, action, actor=actor.key_id, tenant=None if tenant_id == PLATFORM_CHAIN else tenant_id,
                  target=kind if kind == "customer" else target, **more)


def _json(value: Any) -> Any:
    if value is None:
        return None
    return json.loads(json.dumps(value, default=str))


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_")}
