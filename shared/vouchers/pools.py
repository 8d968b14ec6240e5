"""Partner code pools: codes a partner supplies, handed out to customers who buy a
voucher reward with ``voucher.poolId``, never the same code twice.

Layout (``codes`` container, one partition per pool, ``tenantId:pool:<poolId>``):

* ``code-<hash>``: one per distinct code; ``hash`` is SHA-256 over the tenant,
  the pool and the code, so a code uploaded twice (in one file or two) collides
  on its id and is counted as a duplicate, never stored twice. The code itself
  is kept sealed (AES-256-GCM under a key only the tenant's key can derive,
  ``keyed_digest(tenant, "voucher-pool-key", poolId)``, bound to the document's
  partition and id): it must come back out to be given to a customer, so a hash
  alone cannot serve, but it never rests in the clear and is never logged.
* ``claim-<redemptionId>``: which code a redemption got (its replay answers with
  the same code).
* ``pool``: counters for the tenant-admin (codes uploaded, handed out).

Never twice, and counted exactly: a hand-out is one transactional batch of the
pool's partition: the code document from ``free`` to ``assigned`` (guarded by its
ETag), the claim created for the redemption, and the pool's ``handedOut`` counter
(guarded by its ETag). Of two hand-outs that pick the same code, or of two replays
of one redemption, one batch commits and the other re-reads and decides again, so
no code is ever in two customers' hands and none is lost to a crash. Uploads write
each chunk of new codes and the ``uploaded`` counter in one batch the same way, so
the counters always equal the stored documents (they were separate writes: a crash
or an exhausted retry between the two left a counter that no re-upload repaired).

Upload interface (``add_codes``), kept small so the bulk import job (issue 20,
part A) can feed it from a blob: it takes ``(line number, code)`` pairs, already
parsed by ``parse_lines`` (NDJSON ``{"code": ...}`` or CSV with a ``code``
column). The route validates the whole body first: one bad line and nothing is
written (422 naming each line). Re-uploading a file changes nothing.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Literal

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.clock import Clock, iso
from shared.domain.json_text import NotJson, strict_loads
from shared.errors import BatchFailed, Conflict, DocumentExists, FieldProblem, NotFound, OutOfStock, \
    PreconditionFailed, ValidationFailed
from shared.store.contention import attempts
from shared.store.layout import CODES, pool_pk
from shared.store.port import MAX_BATCH_OPERATIONS, Create, Delete, DocumentStore, Filter, Operation, Query, \
    Upsert, read_many

POOL_CODE = re.compile(r"^[\x21-\x7e]{4,64}$")  # printable ASCII, no spaces: what partners send
MAX_LINE_ERRORS = 100
PICK_FROM = 32  # a hand-out picks at random among this many free codes: concurrent ones rarely collide
HAND_OUT_ATTEMPTS = 100
CHUNK = MAX_BATCH_OPERATIONS - 1  # codes per upload batch: one operation is left for the counter
Digest = Callable[[str, str, str], bytes]


@dataclass
class UploadReport:
    accepted: int = 0
    duplicates: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


def parse_lines(text: str, fmt: Literal["ndjson", "csv"]) -> list[tuple[int, str]]:
    """``(line number, code)`` of every code in ``text``; ``ValidationFailed`` naming every bad
    line (up to ``MAX_LINE_ERRORS``) if any is bad: all or nothing."""
    problems: list[FieldProblem] = []
    found: list[tuple[int, str]] = []
    for number, code, problem in _rows(text, fmt):
        if problem is None and (code is None or not POOL_CODE.match(code)):
            problem = "a code is 4 to 64 printable characters without spaces"
        if problem is not None:
            if len(problems) < MAX_LINE_ERRORS:
                problems.append(FieldProblem(f"line {number}", problem))
            continue
        assert code is not None
        found.append((number, code))
    if problems:
        raise ValidationFailed(f"{len(problems)} bad line(s); nothing was added", problems)
    if not found:
        raise ValidationFailed("no codes in the upload", [FieldProblem("body", "send at least one code")])
    return found


def _rows(text: str, fmt: str) -> Iterator[tuple[int, str | None, str | None]]:
    if fmt == "ndjson":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = strict_loads(line)
            except NotJson as exc:
                yield number, None, str(exc)
                continue
            except (ValueError, RecursionError):
                yield number, None, "not a JSON object"
                continue
            if not isinstance(row, dict) or not isinstance(row.get("code"), str):
                yield number, None, 'expected {"code": "..."}'
                continue
            yield number, row["code"], None
        return
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or "code" not in [h.strip() for h in header]:
        yield 1, None, "the first line is a header naming a 'code' column"
        return
    column = [h.strip() for h in header].index("code")
    for row in reader:
        number = reader.line_num
        if not row:
            continue
        yield number, (row[column].strip() if column < len(row) else None), None


def _hash(tenant_id: str, pool_id: str, code: str) -> str:
    return hashlib.sha256(f"accrue-pool\x00{tenant_id}\x00{pool_id}\x00{code}".encode()).hexdigest()


class CodePools:
    def __init__(self, store: DocumentStore, clock: Clock, digest: Digest) -> None:
        self._store = store
        self._clock = clock
        self._digest = digest

    def add_codes(self, tenant_id: str, pool_id: str, rows: Iterable[tuple[int, str]]) -> UploadReport:
        """Add each code not already in the pool; idempotent (a code already there is a duplicate)."""
        pk = pool_pk(tenant_id, pool_id)
        aead = AESGCM(self._key(tenant_id, pool_id))
        report = UploadReport()
        now = iso(self._clock.now())
        batch: list[dict[str, Any]] = []
        seen: set[str] = set()
        for _number, code in rows:
            digest = _hash(tenant_id, pool_id, code)
            if digest in seen:
                report.duplicates += 1
                continue
            seen.add(digest)
            doc_id = f"code-{digest}"
            nonce = os.urandom(12)
            sealed = base64.b64encode(nonce + aead.encrypt(nonce, code.encode(), f"{pk}/{doc_id}".encode())).decode()
            batch.append({"id": doc_id, "pk": pk, "docType": "poolcode", "tenantId": tenant_id, "poolId": pool_id,
                          "status": "free", "sealed": sealed, "createdAt": now})
            if len(batch) == CHUNK:
                self._write(tenant_id, pool_id, batch, report)
                batch = []
        self._write(tenant_id, pool_id, batch, report)
        return report

    def _write(self, tenant_id: str, pool_id: str, docs: list[dict[str, Any]], report: UploadReport) -> None:
        """The codes of ``docs`` not yet in the pool, and the count of them, in one batch (an
        empty upload still creates the pool). A lost race (a concurrent upload of some of these
        codes, or any change to the counter) re-reads and decides again."""
        assert len(docs) <= CHUNK
        pk = pool_pk(tenant_id, pool_id)
        for attempt in attempts(HAND_OUT_ATTEMPTS):
            pool = self._store.read(CODES, pk, "pool")
            # Optimistic first: a new file's codes are new, and a code already there fails the
            # batch; only then is each code looked up.
            present = read_many(self._store, CODES, [(pk, d["id"]) for d in docs]) if attempt else [None] * len(docs)
            fresh = [d for d, there in zip(docs, present, strict=True) if there is None]
            if not fresh and pool is not None:
                report.duplicates += len(docs)
                return
            try:
                self._store.batch(CODES, pk, [Create(d) for d in fresh] + [
                    self._counted(tenant_id, pool_id, pool, uploaded=len(fresh))])
            except (BatchFailed, DocumentExists, PreconditionFailed):
                continue
            report.accepted += len(fresh)
            report.duplicates += len(docs) - len(fresh)
            return
        raise Conflict(f"code pool {pool_id!r} is being changed by many requests at once: upload the file again "
                       "(codes already stored are counted as duplicates, never twice)")

    def _counted(self, tenant_id: str, pool_id: str, pool: dict[str, Any] | None, uploaded: int = 0,
                 handed_out: int = 0) -> Operation:
        """The pool's counters moved by the given amounts, guarded by the ETag they were read with."""
        fresh = {"id": "pool", "pk": pool_pk(tenant_id, pool_id), "docType": "pool", "tenantId": tenant_id,
                 "poolId": pool_id, "uploaded": (pool["uploaded"] if pool else 0) + uploaded,
                 "handedOut": (pool["handedOut"] if pool else 0) + handed_out, "updatedAt": iso(self._clock.now())}
        return Create(fresh) if pool is None else Upsert(fresh, if_match=pool["_etag"])

    def get(self, tenant_id: str, pool_id: str) -> dict[str, Any]:
        doc = self._store.read(CODES, pool_pk(tenant_id, pool_id), "pool")
        if doc is None:
            raise NotFound(f"no code pool {pool_id!r}")
        return {"poolId": pool_id, "uploaded": doc["uploaded"], "handedOut": doc["handedOut"],
                "remaining": max(0, doc["uploaded"] - doc["handedOut"]), "updatedAt": doc["updatedAt"]}

    def hand_out(self, tenant_id: str, pool_id: str, redemption_id: str, customer_id: str) -> str:
        """The code for ``redemption_id``: the one it already got, or a free one, never one given
        to anyone else; ``OutOfStock`` when the pool has none left."""
        pk = pool_pk(tenant_id, pool_id)
        claim_id = f"claim-{redemption_id}"
        for _ in attempts(HAND_OUT_ATTEMPTS):
            claim = self._store.read(CODES, pk, claim_id)
            if claim is not None:
                break  # handed out before (a replay), or by a concurrent replay that won
            pool = self._store.read(CODES, pk, "pool")
            free = self._store.query(CODES, Query(pk=pk, filters=(
                Filter("docType", "=", "poolcode"), Filter("status", "=", "free")), limit=PICK_FROM))
            if not free:
                raise OutOfStock(f"code pool {pool_id!r} has no code left", poolId=pool_id)
            pick = random.choice(free)
            taken = {k: v for k, v in pick.items() if not k.startswith("_")}
            taken.update(status="assigned", redemptionId=redemption_id, customerId=customer_id,
                         assignedAt=iso(self._clock.now()))
            try:
                self._store.batch(CODES, pk, [
                    Upsert(taken, if_match=pick["_etag"]),
                    Create({"id": claim_id, "pk": pk, "docType": "poolclaim", "tenantId": tenant_id,
                            "codeId": pick["id"], "customerId": customer_id}),
                    self._counted(tenant_id, pool_id, pool, handed_out=1)])
            except (BatchFailed, DocumentExists, PreconditionFailed):
                continue  # the code, the claim or the counter changed a moment ago: decide again
            break
        else:
            raise OutOfStock(f"code pool {pool_id!r} is in heavy demand: retry", poolId=pool_id)
        if claim is None:
            claim = self._store.read(CODES, pk, claim_id)
        code_doc = self._store.read(CODES, pk, claim["codeId"]) if claim is not None else None
        if claim is None or code_doc is None or code_doc.get("redemptionId") != redemption_id:
            # Given back between the hand-out and these reads (the redemption's points came
            # back): the code is the pool's again, never this customer's (nor another's).
            raise Conflict(f"redemption {redemption_id!r}'s code was given back to pool {pool_id!r} just now")
        return self._open(tenant_id, pool_id, code_doc)

    def give_back(self, tenant_id: str, pool_id: str, redemption_id: str) -> bool:
        """Return the code ``redemption_id`` was given to the pool, for a redemption whose points
        came back before it was confirmed (its code must not stay with the customer, nor be lost
        to the pool): code ``assigned -> free``, its claim deleted and ``handedOut`` less one, in
        one batch. False when the redemption holds no code (never given, or given back)."""
        pk = pool_pk(tenant_id, pool_id)
        for _ in attempts(HAND_OUT_ATTEMPTS):
            claim = self._store.read(CODES, pk, f"claim-{redemption_id}")
            if claim is None:
                return False
            code_doc = self._store.read(CODES, pk, claim["codeId"])
            pool = self._store.read(CODES, pk, "pool")
            if code_doc is None or code_doc.get("redemptionId") != redemption_id or pool is None \
                    or pool["handedOut"] < 1:
                # Three reads, not a snapshot: a racing give-back (the reservations job and a
                # retried exchange) may have committed between them. The claim is in every batch
                # that changes its code, so an unchanged claim means the reads agree and the
                # state itself is wrong.
                now = self._store.read(CODES, pk, claim["id"])
                assert now is None or now["_etag"] != claim["_etag"], \
                    "a claim names its code, and a claimed code was counted"
                continue
            freed = {k: v for k, v in code_doc.items() if not k.startswith("_") and k not in (
                "redemptionId", "customerId", "assignedAt")}
            freed["status"] = "free"
            try:
                self._store.batch(CODES, pk, [Upsert(freed, if_match=code_doc["_etag"]),
                                              Delete(claim["id"], if_match=claim["_etag"]),
                                              self._counted(tenant_id, pool_id, pool, handed_out=-1)])
                return True
            except (BatchFailed, NotFound, PreconditionFailed):
                continue
        raise Conflict(f"code pool {pool_id!r} is being changed by many requests at once: retry")

    def _open(self, tenant_id: str, pool_id: str, doc: dict[str, Any]) -> str:
        raw = base64.b64decode(doc["sealed"])
        aad = f"{doc['pk']}/{doc['id']}".encode()
        return AESGCM(self._key(tenant_id, pool_id)).decrypt(raw[:12], raw[12:], aad).decode()

    def _key(self, tenant_id: str, pool_id: str) -> bytes:
        return self._digest(tenant_id, "voucher-pool-key", pool_id)
