"""The bus of a dry run: messages are never sent; each published order is handed
at once to the dry run's own ingestion (over the same overlay store), so the
answer is the outcome ingestion would reach: credited, held or rejected."""

from __future__ import annotations

import json
from typing import Any, Callable, Sequence

from shared.bus.port import BusMessage


class InlineBus:
    def __init__(self) -> None:
        self.consumer: Callable[[list[Any]], Any] | None = None
        self.published = 0

    def publish(self, messages: Sequence[BusMessage]) -> None:
        # A JSON round trip, as the real bus gives the consumer what it serialised.
        bodies = [json.loads(json.dumps(m.body, default=str)) for m in messages]
        self.published += len(bodies)
        if self.consumer is not None and bodies:
            self.consumer(bodies)

    def close(self) -> None:
        pass
