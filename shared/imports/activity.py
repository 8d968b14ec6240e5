"""When imports of a tenant can have written ledger rows: what the warehouse feed asks
before it looks for imported rows (``shared.exports.service``).

An imported row keeps its own instant as ``createdAt`` and carries ``imported: true``
and ``recordedAt``, the instant the import wrote it (``shared.ledger.service``). Only
an import that was running writes such rows: after its ``startedAt`` and no later than
its ``finishedAt`` (the swap to its final status comes after its last row). An import
that is not finished (queued, running, died and not resumed yet) may write at any time.

What it guarantees: ``wrote_between`` is True whenever some import of the tenant may
have recorded a row in ``(lower, upper]``, give or take ``margin`` for the clocks of the
instances that ran the import and the one asking. It can say True when none did (the
caller's search then finds nothing), never False when one did.
"""

from __future__ import annotations

from datetime import timedelta

from shared.clock import iso, parse_iso
from shared.store.layout import SYSTEM
from shared.store.port import DocumentStore, Filter, Query


def import_pk(tenant_id: str) -> str:
    """The partition of a tenant's import documents."""
    return f"imports:{tenant_id}"


def wrote_between(store: DocumentStore, tenant_id: str, lower: str | None, upper: str,
                  margin: timedelta) -> bool:
    """Whether an import of ``tenant_id`` may have written a ledger row with ``recordedAt``
    in ``(lower, upper]`` (``lower`` None: no lower bound)."""
    latest_start = iso(parse_iso(upper) + margin)
    started = (Filter("docType", "=", "import"), Filter("startedAt", "<=", latest_start))
    # A range never matches a missing field: an import never started is in neither query.
    unfinished = started + (Filter("finishedAt", "=", None),)
    finished = started + (() if lower is None else (Filter("finishedAt", ">=", iso(parse_iso(lower) - margin)),))
    return any(store.query(SYSTEM, Query(pk=import_pk(tenant_id), filters=filters, limit=1))
               for filters in (unfinished, finished))
