"""Read every document a query matches, in keyset pages: never one read capped at a
fixed ``limit`` (that silently drops whatever lies past the cap).

``read_all`` pages on the document ``id`` (``id > last id``, ordered by ``id``), a key
unique inside a partition, so a write meanwhile never shifts a page and no document is
read twice or skipped. It is for the bounded per-tenant lists the API pages in memory
(``shared.api.pagination.in_memory``); a caller that wants a particular order sorts the
result itself (the ``id`` order is only the read's order)."""

from __future__ import annotations

from typing import Iterator

from shared.store.port import Document, DocumentStore, Filter, Query

PAGE = 1000


def pages(store: DocumentStore, container: str, pk: str | None, filters: tuple[Filter, ...] = (),
          page: int = PAGE, key: str = "id") -> Iterator[list[Document]]:
    """The matching documents, ``page`` at a time, in ``key`` order. ``key`` must be a
    string field unique among the documents read: ``id`` inside one partition; with
    ``pk=None`` (across partitions) ``id`` only if each document has its own partition or
    its id embeds it, else another unique field (a voucher's ``voucherId``)."""
    after: str | None = None
    while True:
        keyset = (Filter(key, ">", after),) if after is not None else ()
        found = store.query(container, Query(pk=pk, filters=filters + keyset, order_by=key, limit=page))
        if found:
            yield found
        if len(found) < page:
            return
        after = found[-1][key]


def read_all(store: DocumentStore, container: str, pk: str | None, filters: tuple[Filter, ...] = (),
             page: int = PAGE, key: str = "id") -> list[Document]:
    """Every document of ``pk`` (every partition with None) that matches ``filters``."""
    return [doc for found in pages(store, container, pk, filters, page, key) for doc in found]
