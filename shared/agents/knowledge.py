"""Programme knowledge for agents: the reward catalogue, the earning rules in
words, and the tenant's own terms documents (markdown, versioned).

Terms documents are uploaded by a tenant-admin; each upload is a new immutable
version (``ruleversions`` container, ``agent-terms`` documents, create-only), so
an agent always reads the current version and the trail can say which one it
was shown. Everything here reads; only ``save_terms`` writes.
"""

from __future__ import annotations

from typing import Any

from shared.clock import Clock, iso
from shared.errors import Conflict, DocumentExists, NotFound
from shared.store.contention import attempts
from shared.store.layout import RULE_VERSIONS
from shared.store.pages import pages
from shared.store.port import DocumentStore, Filter, Query

TERMS_DOC = "agent-terms"
MAX_TERMS_BYTES = 200_000


def _terms_id(doc_id: str, version: int) -> str:
    return f"agentterms:{doc_id}:{version:06d}"


class Knowledge:
    def __init__(self, store: DocumentStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def save_terms(self, tenant_id: str, doc_id: str, title: str, markdown: str, reason: str,
                   actor: str) -> dict[str, Any]:
        assert len(markdown.encode()) <= MAX_TERMS_BYTES, "the route bounds the document's size"
        for _ in attempts():
            latest = self.terms(tenant_id, doc_id, missing_ok=True)
            version = (latest["version"] if latest else 0) + 1
            doc = {"id": _terms_id(doc_id, version), "pk": tenant_id, "docType": TERMS_DOC, "ruleSetId": doc_id,
                   "docId": doc_id, "version": version, "title": title, "markdown": markdown, "reason": reason,
                   "author": actor, "at": iso(self._clock.now())}
            try:
                self._store.create(RULE_VERSIONS, doc)
            except DocumentExists:
                continue
            return _public(doc)
        raise Conflict("could not allocate a terms version number; retry")

    def terms(self, tenant_id: str, doc_id: str, version: int | None = None,
              missing_ok: bool = False) -> dict[str, Any] | None:
        if version is not None:
            doc = self._store.read(RULE_VERSIONS, tenant_id, _terms_id(doc_id, version))
        else:
            docs = self._store.query(RULE_VERSIONS, Query(
                pk=tenant_id, filters=(Filter("docType", "=", TERMS_DOC), Filter("ruleSetId", "=", doc_id)),
                order_by="version", descending=True, limit=1))
            doc = docs[0] if docs else None
        if doc is None:
            if missing_ok:
                return None
            raise NotFound(f"terms document {doc_id!r} does not exist")
        return _public(doc)

    def list_terms(self, tenant_id: str) -> list[dict[str, Any]]:
        """The newest version of each terms document (without the text), by ``docId``: every
        version is read, in keyset pages (a capped read of the newest versions missed the
        documents whose versions all lay past the cap)."""
        newest: dict[str, dict[str, Any]] = {}
        for found in pages(self._store, RULE_VERSIONS, tenant_id, (Filter("docType", "=", TERMS_DOC),)):
            for doc in found:
                held = newest.get(doc["docId"])
                if held is None or doc["version"] > held["version"]:
                    newest[doc["docId"]] = {k: v for k, v in _public(doc).items() if k != "markdown"}
        return sorted(newest.values(), key=lambda d: d["docId"])


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_") and k not in ("id", "pk", "docType", "ruleSetId")}
