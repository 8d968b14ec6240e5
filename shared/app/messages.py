"""The bus message that carries an accepted order to ingestion.

Schema ``order.received`` version 1. It carries ids and amounts only, never
personal data. ``parse_order_message`` is the consumer-side check: a bus can
carry anything, so the ingest handler validates again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from shared.domain.orders import EntityId, Order
from shared.store.layout import customer_pk

MESSAGE_TYPE = "order.received"


class OrderMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    type: Literal["order.received"]
    version: Literal[1]
    tenant_id: EntityId = Field(alias="tenantId")
    accepted_at: datetime = Field(alias="acceptedAt")
    order: Order

    @property
    def partition_key(self) -> str:
        return customer_pk(self.tenant_id, self.order.customer_id)

    def to_body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def order_message(tenant_id: str, order: Order, accepted_at: datetime) -> OrderMessage:
    return OrderMessage(type=MESSAGE_TYPE, version=1, tenantId=tenant_id, acceptedAt=accepted_at, order=order)


_INSTANT = TypeAdapter(datetime)


def order_message_body(tenant_id: str, payload: dict[str, Any], accepted_at: datetime) -> dict[str, Any]:
    """``order_message(tenant_id, order, accepted_at).to_body()`` for an order already
    dumped (``payload`` is ``order.to_message()``): the same body, without building
    and dumping the message model around it again (the intake does this for up to
    500 orders a call, and has the payload for the fingerprint anyway)."""
    return {"type": MESSAGE_TYPE, "version": 1, "tenantId": tenant_id,
            "acceptedAt": _INSTANT.dump_python(accepted_at, mode="json"), "order": payload}


class MalformedMessage(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_order_message(body: Any) -> OrderMessage:
    try:
        return OrderMessage.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise MalformedMessage(f"{where}: {first['msg']}") from None
