"""Orders as the domain sees them: validated, immutable, free of personal data.

``Order`` is the contract between the HTTP edge, the bus message and the ingest
handler (and what the rule language reads as ``order``). Validation happens
here once, so a message that made it onto the bus is already well-formed; the
ingest handler validates again because a bus can carry anything.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import (BaseModel, ConfigDict, Field, PlainSerializer, StringConstraints, ValidationError,
                      field_validator, model_validator)
from pydantic_core import InitErrorDetails, PydanticCustomError

from shared.domain.ids import ID_MAX_LENGTH, ID_PATTERN
from shared.domain.inputs import DecimalText, Instant
from shared.domain.money import MAX_MINOR_UNITS, MAX_ORDER_AMOUNT, MINOR_UNITS, fits_minor_unit

MAX_ITEMS_PER_ORDER = 100
MAX_BATCH_ORDERS = 500
MAX_QUANTITY = 10_000

# Where an order's explicit idempotency key holding a ':' lives in the ledger (``Order.ledger_key``).
ORDER_KEY_NAMESPACE = "order-key:"
EntityId = Annotated[str, StringConstraints(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)]
# An opaque id from the merchant's payment or device layer (a card fingerprint, a
# device id): never a card number or anything personal. The fraud controls count
# distinct values per customer (shared/fraud).
OpaqueId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_\-]{0,31}$", max_length=32)]
Sku = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")]
# An amount of money: a JSON string of ASCII digits with at most the largest minor
# unit of any currency (3) after an optional ".", and at most 8 integer digits
# (MAX_ORDER_AMOUNT is 10,000,000); the currency's own minor unit is checked by the
# model that knows the currency (see docs/input.md). Serialised in fixed-point
# ("100", never "1E+2"): the bus schema, the ledger's order records and every
# reader expect plain decimals.
MONEY_INT_DIGITS = len(str(int(MAX_ORDER_AMOUNT)))
Money = Annotated[DecimalText(MONEY_INT_DIGITS, MAX_MINOR_UNITS,
                              "an amount: ASCII digits, optionally '.' and at most the currency's minor units "
                              "of digits, as a JSON string, e.g. \"10.50\""),
                  PlainSerializer(lambda value: format(value, "f"), return_type=str, when_used="json")]


class LineItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    sku: Sku
    category: Slug
    quantity: int = Field(ge=1, le=MAX_QUANTITY)
    unit_price: Money = Field(alias="unitPrice", ge=0, le=MAX_ORDER_AMOUNT)


class Order(BaseModel):
    """One purchase by one customer of one tenant."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    customer_id: EntityId = Field(alias="customerId")
    order_id: EntityId = Field(alias="orderId")
    amount: Money = Field(gt=0, le=MAX_ORDER_AMOUNT)
    currency: str = Field(min_length=3, max_length=3, pattern=r"^[A-Z]{3}$")
    items: tuple[LineItem, ...] = Field(default=(), max_length=MAX_ITEMS_PER_ORDER)
    channel: Slug = "web"
    timestamp: Instant
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")] | None = Field(
        default=None, alias="idempotencyKey"
    )
    card_fingerprint: OpaqueId | None = Field(default=None, alias="cardFingerprint")
    device_id: OpaqueId | None = Field(default=None, alias="deviceId")

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        if value not in MINOR_UNITS:
            raise ValueError(f"unknown currency {value!r}: use an ISO 4217 code such as EUR or USD")
        return value

    # The timestamp is an ``Instant`` (shared.domain.inputs): RFC 3339 with an offset, inside
    # the instants' window (rules read the time in the tenant's zone: year 1 or 9999 would
    # overflow there).

    @model_validator(mode="after")
    def _amounts_fit_currency(self) -> "Order":
        # Checked here, where the currency is known, but reported on the amount's own
        # field (not on the order as a whole), like every other bad value.
        minor = MINOR_UNITS[self.currency]
        wrong = [(("amount",), self.amount)] if not fits_minor_unit(self.amount, self.currency) else []
        wrong += [(("items", index, "unitPrice"), item.unit_price) for index, item in enumerate(self.items)
                  if not fits_minor_unit(item.unit_price, self.currency)]
        if wrong:
            raise ValidationError.from_exception_data("Order", [
                InitErrorDetails(type=PydanticCustomError(
                    "minor_units", "{currency} amounts have at most {minor} decimals",
                    {"currency": self.currency, "minor": minor}), loc=loc, input=format(value, "f"))
                for loc, value in wrong])
        return self

    @property
    def effective_idempotency_key(self) -> str:
        return self.idempotency_key or self.order_id

    @property
    def ledger_key(self) -> str:
        """The order's idempotency key in the customer's ledger, which every writer of that
        ledger shares. Every other writer keys its transactions ``<kind>:...`` (a refund
        ``refund:<order>:<id>``, an adjustment ``adjust:<its key>``, a redemption
        ``redeem:<its key>``...) and an order id has no ``:``; so an explicit key holding a
        ``:`` goes under ``order-key:``, a namespace no other writer uses. Before, an order
        keyed ``redeem:X`` refused a customer's later redemption keyed ``X`` (an outside review)."""
        key = self.effective_idempotency_key
        return ORDER_KEY_NAMESPACE + key if ":" in key else key

    def to_message(self) -> dict:
        """JSON-ready form, as carried on the bus and stored on the order record."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
