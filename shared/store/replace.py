"""Replace one whole document (a PUT) exactly once per change, under any number of
writers in any number of processes.

``replace`` reads the document, builds the wanted one from it, and writes it only
if it was not changed meanwhile: a conditional create when there is none (the id
is the key), else an upsert guarded by the ETag that was read. A writer that loses
the race reads again and builds again on what won, so:

* **No lost update.** Every change is built on the state it replaces, and
  ``before`` is exactly that state: an audit record's ``before`` is the previous
  record's ``after``, whatever the concurrency.
* **A repeat changes nothing.** When the stored document already has the wanted
  content (``content`` of both equal), nothing is written and ``changed`` is
  False: twenty identical PUTs make one change, one version, one audit record.
* **Conflicting PUTs are serialised,** last writer wins, each one a change (and a
  version) of its own; none is answered 2xx without being stored.

Never a process-local lock: on Azure the writers are separate instances, and the
store's conditional writes (Cosmos ETags, SQLite's serialised writers) are the
only arbiter. After ``ATTEMPTS`` lost races the caller gets a ``Conflict`` (409),
and nothing of its request was written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from shared.errors import Conflict, DocumentExists, PreconditionFailed
from shared.store.contention import ATTEMPTS, attempts
from shared.store.port import Document, DocumentStore



@dataclass(frozen=True)
class Replaced:
    before: Document | None
    after: Document
    changed: bool


@dataclass(frozen=True)
class Change:
    """What a replace did, as its caller's views (``before`` None: there was none): the
    route audits ``before`` -> ``after`` when ``changed``, and only then."""

    before: Any
    after: Any
    changed: bool


def replace(store: DocumentStore, container: str, pk: str, id: str, build: Callable[[Document | None], Document],
            content: Callable[[Document], Any]) -> Replaced:
    """Write ``build(current)`` over the current document unless its ``content`` is already that."""
    for _ in attempts(ATTEMPTS):
        current = store.read(container, pk, id)
        wanted = build(current)
        assert wanted["id"] == id and wanted["pk"] == pk, "replace writes the document it read"
        if current is not None and content(current) == content(wanted):
            return Replaced(current, current, False)
        try:
            if current is None:
                saved = store.create(container, wanted)
            else:
                saved = store.upsert(container, wanted, if_match=current["_etag"])
        except (DocumentExists, PreconditionFailed):
            # Another writer changed it first: build again on what it wrote (after the
            # jittered pause of shared/store/contention.py).
            continue
        return Replaced(current, saved, True)
    raise Conflict(f"{id!r} kept changing under concurrent writers; nothing was written: retry")
