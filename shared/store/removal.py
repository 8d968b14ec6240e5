"""Deleting a document that other writers may delete, or file again, at the same time.

* ``delete_if_present``: the document is gone afterwards, whoever deleted it; a
  document already absent, or deleted by another writer between the read and the
  delete, is not an error. Only a delete the store refused while the document is
  still there raises.
* ``delete_if``: the document is deleted only while ``condition`` holds of it (it is
  still the caller's: its owner, its key id), under the ETag it was read with, so a
  document another writer changed or filed again meanwhile is judged again, never
  deleted on a stale read. After ``ATTEMPTS`` lost races the caller gets a
  ``Conflict`` and nothing was deleted by this call.
"""

from __future__ import annotations

from typing import Callable

from shared.errors import Conflict, PreconditionFailed, StoreError
from shared.store.contention import attempts
from shared.store.port import Document, DocumentStore


def delete_if_present(store: DocumentStore, container: str, pk: str, id: str) -> None:
    if store.read(container, pk, id) is None:
        return
    try:
        store.delete(container, pk, id)
    except StoreError:
        if store.read(container, pk, id) is not None:
            raise  # still there: the store failed (else another writer deleted it just now)


def delete_if(store: DocumentStore, container: str, pk: str, id: str, condition: Callable[[Document], bool]) -> None:
    for _ in attempts():
        doc = store.read(container, pk, id)
        if doc is None or not condition(doc):
            return
        try:
            store.delete(container, pk, id, if_match=doc["_etag"])
            return
        except PreconditionFailed:
            continue  # changed just now: judge it again
        except StoreError:
            now = store.read(container, pk, id)
            if now is not None and now["_etag"] == doc["_etag"]:
                raise  # still there as read: the store failed
            # Gone, or deleted and filed again just now: judge it again.
    raise Conflict(f"{id!r} kept changing under concurrent writers; nothing was deleted: retry")
