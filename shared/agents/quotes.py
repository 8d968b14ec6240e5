"""Quotes: a dry run of an agent's action, bound to its content, executed once.

A quote is what would happen (a redemption of a reward, or a goodwill
adjustment of points, for one customer), written down before anything happens.
Its ``contentHash`` is the SHA-256 of its canonical JSON content, and its id is
derived from that hash and a random nonce, so:

* **bound to its content**: executing needs the hash the agent was given; a hash
  of anything else, or a stored quote whose content no longer hashes to what it
  was issued with, is refused (``quote-altered``) and nothing is written;
* **expires**: ``expiresAt`` (``QUOTE_SECONDS`` after it was made) is checked
  when it executes (``quote-expired``); an escalated quote is instead decided by a
  person, whose approval executes the copy of the content held by the review;
* **executes once**: the action's ledger idempotency key is ``agent-quote:<id>``,
  so a second execution (a retry, a replay, a racing copy, an approval) appends
  nothing and answers the first outcome.

Quotes live in the ``system`` container (partition ``agent-quotes:<tenant>``)
and expire after 30 days (layout ``TTL_RULES``); they hold ids and points only.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime, timedelta
from typing import Any

from shared.clock import Clock, iso, parse_iso
from shared.errors import Conflict, NotFound
from shared.store.layout import SYSTEM
from shared.store.port import DocumentStore

QUOTE_SECONDS = 600
DOC_TYPE = "agentQuote"


class QuoteRefused(Conflict):
    """A quote that cannot execute; ``reason`` is the machine-readable code."""

    code = "quote-refused"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, reason=reason)
        self.reason = reason


def content_hash(content: dict[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotency_key(quote_id: str) -> str:
    return f"agent-quote:{quote_id}"


class Quotes:
    def __init__(self, store: DocumentStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    @staticmethod
    def _pk(tenant_id: str) -> str:
        return f"agent-quotes:{tenant_id}"

    def issue(self, tenant_id: str, content: dict[str, Any]) -> dict[str, Any]:
        now = self._clock.now()
        content = dict(content, createdAt=iso(now), expiresAt=iso(now + timedelta(seconds=QUOTE_SECONDS)))
        digest = content_hash(content)
        quote_id = "aq-" + hashlib.sha256(f"{tenant_id}\x00{digest}\x00{secrets.token_hex(8)}".encode()
                                          ).hexdigest()[:24]
        self._store.create(SYSTEM, {"id": quote_id, "pk": self._pk(tenant_id), "docType": DOC_TYPE,
                                    "quoteId": quote_id, "tenantId": tenant_id, "content": content,
                                    "contentHash": digest})
        return {"quoteId": quote_id, "contentHash": digest, **content}

    def load(self, tenant_id: str, quote_id: str, presented_hash: str) -> dict[str, Any]:
        """The quote's content if it may run: it exists in this tenant and is unaltered."""
        doc = self._store.read(SYSTEM, self._pk(tenant_id), quote_id)
        if doc is None or doc.get("docType") != DOC_TYPE:
            raise NotFound(f"quote {quote_id!r} does not exist (quotes are per tenant)")
        content = doc["content"]
        if content_hash(content) != doc["contentHash"] or presented_hash != doc["contentHash"]:
            raise QuoteRefused("quote-altered", f"quote {quote_id} does not match the content it was issued "
                                                "with; ask for a new quote")
        return content

    def expired(self, content: dict[str, Any], now: datetime | None = None) -> bool:
        return (now or self._clock.now()) >= parse_iso(content["expiresAt"])
