"""The typed columns of every export subject: the one source of each subject's Parquet
schema, of the schema shipped in every manifest (``manifest["schemas"]``), and of the
column tables in docs/exports.md (a test checks the docs and the JSON Schemas under
shared/schemas/events agree with this module).

Types (``type`` in the manifest):

* ``string``, ``int64``, ``bool``;
* ``timestamp``: UTC instant, microseconds (Parquet ``TIMESTAMP(MICROS, isAdjustedToUTC)``);
* ``date``: calendar date;
* ``decimal(18,3)``: money, exact. One column has one type while a tenant may sell in
  several currencies, so the scale is 3, the largest minor unit of any currency
  (shared.domain.money.MAX_MINOR_UNITS): every amount of every currency is exact, and
  ``currencyScale`` carries the currency's own minor units for display;
* ``list<string>``; ``json``: a string holding JSON (nested traces, addresses).

Every subject also has ``rowKey`` (the row's identity) and ``rowVersion`` (microseconds
since the epoch of the change it records): a warehouse merges idempotently by keeping,
per ``rowKey``, the row of the highest ``rowVersion``; the same row exported twice
(a redone micro-batch, a backfill, a compacted day) carries the same key and version.
"""

from __future__ import annotations

from typing import Any

# Bumped when a column changes type or meaning (additions too): manifests name it per subject.
# 3: transactions gained runningReserved, imported and recordedAt (a file of version 2 lacks
# them; the nightly compaction fills them with nulls, as a warehouse merging both would).
COLUMNS_VERSION = 3

_KEY = ("rowKey", "string", False, "the row's identity (merge key)")
_VERSION = ("rowVersion", "int64", False, "µs since 1970 of the change the row records; keep the highest per rowKey")

# subject -> (column, type, nullable, description); JSON Schema property names are the same.
COLUMNS: dict[str, tuple[tuple[str, str, bool, str], ...]] = {
    "customers": (
        _KEY, _VERSION,
        ("tenantId", "string", False, "tenant"),
        ("customerId", "string", False, "customer id"),
        ("joinDate", "date", True, "date the customer joined"),
        ("tags", "list<string>", True, "segment tags"),
        ("tier", "string", True, "current tier"),
        ("createdAt", "timestamp", True, "profile created"),
        ("updatedAt", "timestamp", True, "profile last changed (the row's change stamp)"),
        ("erased", "bool", False, "personal data erased (delete your copy)"),
        ("email", "string", True, "personal, only if the tenant exports it"),
        ("name", "string", True, "personal, only if the tenant exports it"),
        ("phone", "string", True, "personal, only if the tenant exports it"),
        ("birthDate", "string", True, "personal, only if the tenant exports it"),
        ("postalAddress", "json", True, "personal, only if the tenant exports it"),
    ),
    "transactions": (
        _KEY, _VERSION,
        ("tenantId", "string", False, "tenant"),
        ("entryId", "string", False, "ledger entry id"),
        ("customerId", "string", False, "customer id"),
        ("seq", "int64", False, "entry sequence in the customer's ledger"),
        ("transactionId", "string", True, "transaction the entry belongs to"),
        ("entryType", "string", True, "earn, redeem, adjust, expire, ..."),
        ("points", "int64", False, "signed points"),
        ("status", "string", True, "posted or pending"),
        ("runningBalance", "int64", True, "balance after the entry"),
        ("runningPending", "int64", True, "pending points after the entry"),
        ("runningReserved", "int64", True, "points held by open redemptions after the entry"),
        ("runningLifetimeEarned", "int64", True, "lifetime earned after the entry"),
        ("ordersCredited", "int64", True, "orders credited so far"),
        ("referenceOrderId", "string", True, "order the entry refers to"),
        ("referenceEntryId", "string", True, "entry the entry refers to"),
        ("settlesEntryId", "string", True, "pending entry this one settles"),
        ("ruleSetId", "string", True, "rule set that earned it"),
        ("ruleSetVersion", "string", True, "its version"),
        ("arm", "string", True, "experiment arm"),
        ("createdAt", "timestamp", False, "committed (an imported row: its own time)"),
        ("imported", "bool", True, "imported history (null in files of schema version 2)"),
        ("recordedAt", "timestamp", True, "when the import wrote it (imported rows only)"),
    ),
    "orders": (
        _KEY, _VERSION,
        ("tenantId", "string", False, "tenant"),
        ("orderId", "string", False, "order id"),
        ("customerId", "string", False, "customer id"),
        ("status", "string", False, "outcome"),
        ("points", "int64", False, "points awarded"),
        ("amount", "decimal(18,3)", True, "order amount, exact"),
        ("currency", "string", True, "ISO 4217 code"),
        ("currencyScale", "int64", True, "the currency's minor units (2 for EUR, 0 for JPY)"),
        ("channel", "string", True, "sales channel"),
        ("orderedAt", "timestamp", True, "when the order was placed"),
        ("items", "int64", True, "line items"),
        ("ruleSetId", "string", True, "rule set evaluated"),
        ("ruleSetVersion", "string", True, "its version"),
        ("arm", "string", True, "experiment arm"),
        ("reasonCode", "string", True, "why (rejections, holds)"),
        ("acceptedAt", "timestamp", True, "accepted by the API"),
        ("createdAt", "timestamp", True, "outcome recorded"),
    ),
    "ruleevaluations": (
        _KEY, _VERSION,
        ("tenantId", "string", False, "tenant"),
        ("orderId", "string", False, "order id"),
        ("customerId", "string", False, "customer id"),
        ("status", "string", False, "outcome"),
        ("points", "int64", False, "points awarded"),
        ("ruleSetId", "string", True, "rule set evaluated"),
        ("ruleSetVersion", "string", True, "its version"),
        ("arm", "string", True, "experiment arm"),
        ("trace", "json", True, "the rule trace (JSON array)"),
        ("createdAt", "timestamp", True, "evaluated"),
    ),
    "webhookdeliveries": (
        _KEY, _VERSION,
        ("tenantId", "string", False, "tenant"),
        ("id", "string", False, "attempt id"),
        ("endpointId", "string", True, "endpoint"),
        ("messageId", "string", True, "message"),
        ("deliveryId", "string", True, "delivery"),
        ("eventType", "string", True, "event type"),
        ("attempt", "int64", True, "attempt number"),
        ("status", "int64", True, "HTTP status"),
        ("succeeded", "bool", True, "delivered"),
        ("latencyMs", "int64", True, "latency"),
        ("error", "string", True, "error, if any"),
        ("createdAt", "timestamp", False, "attempted"),
    ),
    "tierhistory": (
        _KEY, _VERSION,
        ("tenantId", "string", False, "tenant"),
        ("changeId", "string", False, "tier change id"),
        ("customerId", "string", True, "customer id"),
        ("changeSeq", "int64", True, "change sequence"),
        ("fromTier", "string", True, "tier before"),
        ("toTier", "string", True, "tier after"),
        ("direction", "string", True, "up or down"),
        ("reason", "string", True, "why"),
        ("trigger", "string", True, "what triggered it"),
        ("qualifyingPoints", "int64", True, "qualifying points"),
        ("qualifyingSpend", "decimal(18,3)", True, "qualifying spend, exact"),
        ("windowStart", "timestamp", True, "qualifying window start"),
        ("windowEnd", "timestamp", True, "qualifying window end"),
        ("evaluationAt", "timestamp", True, "evaluated"),
        ("programVersion", "int64", True, "tier program version"),
        ("createdAt", "timestamp", False, "recorded"),
    ),
    "erasures": (
        _KEY, _VERSION,
        ("tenantId", "string", False, "tenant"),
        ("customerId", "string", False, "erased customer"),
        ("erasedAt", "timestamp", False, "erased; delete your copy of their personal data"),
    ),
    # The agents' decision trail (issue 21, shared/agents/trail.py): no personal data.
    "agentdecisions": (
        _KEY, _VERSION,
        ("tenantId", "string", False, "tenant"),
        ("callId", "string", False, "the tool call"),
        ("at", "timestamp", False, "when the call was decided"),
        ("agentKeyId", "string", False, "the agent's API key id"),
        ("tool", "string", False, "MCP tool called"),
        ("arguments", "json", False, "arguments, personal fields redacted"),
        ("policyId", "string", True, "guardrail policy applied"),
        ("policyVersion", "int64", True, "its version"),
        ("decision", "string", False, "allowed, refused, escalated, approved or rejected"),
        ("reasons", "json", False, "machine-readable reasons (JSON array)"),
        ("result", "json", True, "what the call returned or did"),
        ("consentReference", "string", True, "the customer's recorded consent"),
        ("quoteId", "string", True, "quote executed or created"),
        ("customerId", "string", True, "customer concerned"),
        ("decidedBy", "string", True, "person who approved or rejected an escalation"),
    ),
}

# The field of each subject whose instant is the row's change stamp (rowVersion, and its date partition).
STAMP = {"customers": "updatedAt", "erasures": "erasedAt", "agentdecisions": "at"}
# The row key of each subject: the columns that identify a row.
# (Entry and tier-change ids are unique within a customer's ledger partition, not the tenant.)
KEYS = {"customers": ("customerId",), "transactions": ("customerId", "entryId"), "orders": ("orderId",),
        "ruleevaluations": ("orderId",), "webhookdeliveries": ("id",), "tierhistory": ("customerId", "changeId"),
        "erasures": ("customerId",), "agentdecisions": ("callId",)}


def schema_of(subject: str) -> dict[str, Any]:
    """The schema shipped in the manifest for ``subject``."""
    return {"name": f"export.{subject}", "version": COLUMNS_VERSION,
            "jsonSchema": f"export.{subject}.v1", "key": ["rowKey"], "version_column": "rowVersion",
            "columns": [{"name": n, "type": t, "nullable": null, "description": d}
                        for n, t, null, d in COLUMNS[subject]]}


DOCS_BEGIN = "<!-- columns: generated by python -m shared.exports.columns; do not edit -->"
DOCS_END = "<!-- columns: end -->"


def docs_tables() -> str:
    """The per-subject column tables of docs/exports.md (a test holds the docs to this)."""
    out = [DOCS_BEGIN, ""]
    for subject, columns in COLUMNS.items():
        out += [f"### `{subject}` (schema `export.{subject}` version {COLUMNS_VERSION})", "",
                "| column | type | null | meaning |", "|---|---|---|---|"]
        out += [f"| `{name}` | {kind} | {'yes' if null else 'no'} | {text} |" for name, kind, null, text in columns]
        out.append("")
    out.append(DOCS_END)
    return "\n".join(out)


def _write_docs(path: str = "docs/exports.md") -> None:
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    head, _, rest = text.partition(DOCS_BEGIN)
    _, _, tail = rest.partition(DOCS_END)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(head + docs_tables() + tail)


if __name__ == "__main__":
    _write_docs()
