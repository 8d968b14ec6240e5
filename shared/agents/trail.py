"""The decision trail: one record per agent tool call.

Each record names the agent key, the tool, the arguments without personal data
(``redact``), the guardrail policy id and version that decided, the decision
(``allowed``, ``refused``, ``escalated``; ``approved`` and ``rejected`` when a
person decided an escalated action), the machine-readable reasons, a result
summary without personal data, and the customer's consent reference.

Records are append-only: they sit in the ``ruleversions`` container (per tenant,
create-only, never expiring: the store refuses any change), as ``agent-call``
documents ordered by ``at``. A record is written after the call decided, so
a trail reader sees what an agent was told; a crash between the action and its
record loses the record but not the action's own evidence (the ledger entry and
its idempotency key name the quote).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any, Iterator

from shared.clock import Clock, iso
from shared.store.layout import RULE_VERSIONS
from shared.store.port import DocumentStore, Filter, Query

DOC_TYPE = "agent-call"
PERSONAL_ARGUMENTS = frozenset({"email", "name", "phone", "birthDate", "postalAddress", "personalData"})
FREE_TEXT = frozenset({"summary", "note"})
MAX_LIST = 1000
SHAPE_DEPTH = 4
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def redact(value: Any) -> Any:
    """Arguments or results without personal data: personal fields are dropped, free
    text (which may quote the customer) is kept as its length only."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in PERSONAL_ARGUMENTS:
                out[key] = "[redacted]"
            elif key in FREE_TEXT and isinstance(item, str):
                out[key] = f"[{len(item)} characters]"
            else:
                out[key] = redact(item)
        return out
    if isinstance(value, list):
        return [redact(item) for item in value[:50]]
    return value


def name_of(key: Any) -> str:
    """An argument's name as the trail may keep it: an identifier as is, anything else by
    its length (a name that is not an identifier may be a value: ``{"ann@example.com": 1}``)."""
    return key if isinstance(key, str) and _NAME.match(key) else f"[name of {len(str(key))} characters]"


def shape(value: Any, depth: int = 0) -> Any:
    """What arguments no tool validated look like, without their values: the trail keeps
    a refused call's argument names and each value's type (a string by its length), since
    an argument no model checked may hold anything (an email typed as a customer id, a
    ``phoneNumber`` no redaction list names), and the trail is never erased. A name that
    is not an identifier is a value too (``{"ann@example.com": true}``), and nesting stops
    at ``SHAPE_DEPTH``."""
    if depth >= SHAPE_DEPTH and isinstance(value, (dict, list)):
        return f"[{type(value).__name__}]"
    if isinstance(value, dict):
        return {name_of(key): shape(item, depth + 1) for key, item in list(value.items())[:50]}
    if isinstance(value, list):
        return [shape(item, depth + 1) for item in value[:50]]
    if isinstance(value, str):
        return f"[{len(value)} characters]"
    return f"[{type(value).__name__}]"


class DecisionTrail:
    def __init__(self, store: DocumentStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def record(self, tenant_id: str, *, agent_key_id: str, tool: str, arguments: dict[str, Any],
               policy_id: str | None, policy_version: int | None, decision: str,
               reasons: list[dict[str, Any]], result: Any, consent_reference: str | None = None,
               quote_id: str | None = None, customer_id: str | None = None,
               decided_by: str | None = None, validated: bool = True) -> dict[str, Any]:
        """One call; ``validated``: whether the tool's model accepted ``arguments`` (if not,
        only their shape is kept, ``shape``)."""
        at = iso(self._clock.now())
        call_id = f"ac-{uuid.uuid4().hex[:24]}"
        # The id orders the trail: by the clock's instant, then by this host's nanoseconds (calls
        # in one instant keep their order), then the call id (unique).
        doc = {"id": f"agentcall:{at}:{time.time_ns():020d}:{call_id}", "pk": tenant_id, "docType": DOC_TYPE, "callId": call_id,
               "tenantId": tenant_id, "at": at, "agentKeyId": agent_key_id, "tool": tool,
               "arguments": redact(arguments) if validated else shape(arguments),
               "policyId": policy_id, "policyVersion": policy_version,
               "decision": decision, "reasons": reasons, "result": redact(result),
               "consentReference": consent_reference, "quoteId": quote_id, "customerId": customer_id,
               "decidedBy": decided_by}
        self._store.create(RULE_VERSIONS, doc)
        return public(doc)

    def list(self, tenant_id: str, *, after: str | None = None, agent_key_id: str | None = None,
             limit: int = 100) -> list[dict[str, Any]]:
        """Oldest first, after the record whose ``position`` is ``after`` (a keyset: the
        record id sorts by time, then by call id); ``agentKeyId`` filters by key."""
        filters = [Filter("docType", "=", DOC_TYPE)]
        if after:
            filters.append(Filter("id", ">", after))
        if agent_key_id:
            filters.append(Filter("agentKeyId", "=", agent_key_id))
        docs = self._store.query(RULE_VERSIONS, Query(pk=tenant_id, filters=tuple(filters), order_by="id",
                                                      limit=max(1, min(limit, MAX_LIST))))
        return [dict(public(d), position=d["id"]) for d in docs]


def public(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_") and k not in ("id", "pk", "docType")}


EXPORT_FIELDS = ("callId", "at", "agentKeyId", "tool", "arguments", "policyId", "policyVersion", "decision",
                 "reasons", "result", "consentReference", "quoteId", "customerId", "decidedBy")


def export_rows(store: DocumentStore, tenant_id: str, lower: str | None, upper: str,
                page: int = 1000) -> Iterator[dict[str, Any]]:
    """The export subject ``agentdecisions`` (schema export.agentdecisions.v1): the trail's
    records with ``lower < at <= upper``, oldest first, ``page`` at a time (keyset on the id)."""
    window = (Filter("docType", "=", DOC_TYPE), Filter("at", "<=", upper)) + \
        ((Filter("at", ">", lower),) if lower else ())
    after: str | None = None
    while True:
        bound = () if after is None else (Filter("id", ">", after),)
        docs = store.query(RULE_VERSIONS, Query(pk=tenant_id, filters=window + bound, order_by="id", limit=page))
        for doc in docs:
            yield {"tenantId": tenant_id, **{k: doc.get(k) for k in EXPORT_FIELDS}}
        if len(docs) < page:
            return
        after = docs[-1]["id"]

