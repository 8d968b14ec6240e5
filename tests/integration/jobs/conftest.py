"""The ``store`` fixture of the job tests: the embedded SQLite store and the Cosmos
DB adapter against cosmosdb-server."""

from __future__ import annotations

from typing import Iterator

import pytest

from shared.store.port import DocumentStore


@pytest.fixture(params=["sqlite", pytest.param("cosmos", marks=pytest.mark.cosmos)])
def store(request: pytest.FixtureRequest) -> Iterator[DocumentStore]:
    yield request.getfixturevalue(f"{request.param}_store")
