"""The schema a rule can read: the only names that exist in the language.

Rules reach data through these fields and nothing else: the checker rejects any
other name, and both evaluators read a field from a fixed slot of the order's
``Facts`` (``shared.rules.facts``), never by attribute lookup on a Python
object. This is what makes ``order.__class__`` a type error instead of an
escape hatch.

Each scalar has a slot in the order record shared by both evaluators (the wasm
input record is exactly these slots as little-endian i64):

* numbers are fixed-point scaled integers (``shared.rules.numeric``);
* dates are days since 1970-01-01;
* strings are Python ``str`` in the closure evaluator and interned ids in wasm
  (only ``=``, ``!=`` and ``in`` apply to strings, so ids suffice).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Type(Enum):
    NUMBER = "number"
    STRING = "string"
    BOOL = "boolean"
    DATE = "date"
    TAGS = "list of tags"
    ITEMS = "list of items"
    LIST = "list"


@dataclass(frozen=True)
class FieldSpec:
    type: Type
    slot: int
    doc: str
    values: tuple[str, ...] = ()  # the closed set of values of an enumerated string


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# Slot 0 of the wasm input record is the record's byte length; the rest are facts.
S_RECORD_BYTES = 0
S_AMOUNT = 1
S_CURRENCY = 2
S_CHANNEL = 3
S_DATE = 4
S_HOUR = 5
S_MINUTE = 6
S_WEEKDAY = 7
S_ITEM_COUNT = 8
S_TIER = 9
S_LIFETIME_POINTS = 10
S_ORDER_COUNT = 11
S_JOIN_DATE = 12
S_MEMBER_DAYS = 13
S_ITEMS_RAW = 14            # the item count as a plain integer (loop bound)
S_TIER_MULTIPLIER = 15      # the earning multiplier of the customer's tier (tiers, issue 6)
N_SCALARS = 16              # then one 0/1 slot per tag the rule set asks about, then the items

ORDER_FIELDS: dict[str, FieldSpec] = {
    "total": FieldSpec(Type.NUMBER, S_AMOUNT, "the order's amount, in the order's currency"),
    "amount": FieldSpec(Type.NUMBER, S_AMOUNT, "same as order.total (the name used by the order API)"),
    "currency": FieldSpec(Type.STRING, S_CURRENCY, "ISO 4217 code, e.g. \"EUR\""),
    "channel": FieldSpec(Type.STRING, S_CHANNEL, "sales channel, e.g. \"web\" or \"store\""),
    "date": FieldSpec(Type.DATE, S_DATE, "local date of the order in the tenant's time zone"),
    "hour": FieldSpec(Type.NUMBER, S_HOUR, "local hour of the order, 0-23"),
    "minute": FieldSpec(Type.NUMBER, S_MINUTE, "local minute of the order, 0-59"),
    "weekday": FieldSpec(Type.STRING, S_WEEKDAY, "local day of the week, \"monday\" ... \"sunday\"", WEEKDAYS),
    "item_count": FieldSpec(Type.NUMBER, S_ITEM_COUNT, "number of line items"),
    "items": FieldSpec(Type.ITEMS, S_ITEMS_RAW, "the line items (only inside any/all/count/sum)"),
}

CUSTOMER_FIELDS: dict[str, FieldSpec] = {
    "tier": FieldSpec(Type.STRING, S_TIER, "tier name; \"\" when the customer has none"),
    "tags": FieldSpec(Type.TAGS, -1, "the customer's tags (only in: \"vip\" in customer.tags)"),
    "lifetime_points": FieldSpec(Type.NUMBER, S_LIFETIME_POINTS, "points earned before this order"),
    "order_count": FieldSpec(Type.NUMBER, S_ORDER_COUNT, "orders before this one"),
    "join_date": FieldSpec(Type.DATE, S_JOIN_DATE, "date the customer joined"),
    "member_days": FieldSpec(Type.NUMBER, S_MEMBER_DAYS, "days from join date to the order's local date"),
    "tier_multiplier": FieldSpec(Type.NUMBER, S_TIER_MULTIPLIER,
                                 "the multiplier of the customer's tier in the tenant's tier programme; "
                                 "1 when the customer has no tier (or the tier is not in the programme)"),
}

I_SKU = 0
I_CATEGORY = 1
I_QUANTITY = 2
I_UNIT_PRICE = 3
I_TOTAL = 4
ITEM_SLOTS = 5

ITEM_FIELDS: dict[str, FieldSpec] = {
    "sku": FieldSpec(Type.STRING, I_SKU, "stock keeping unit"),
    "category": FieldSpec(Type.STRING, I_CATEGORY, "product category slug"),
    "quantity": FieldSpec(Type.NUMBER, I_QUANTITY, "units bought"),
    "unit_price": FieldSpec(Type.NUMBER, I_UNIT_PRICE, "price of one unit"),
    "total": FieldSpec(Type.NUMBER, I_TOTAL, "quantity * unit_price"),
}

STRING_SLOTS = tuple(spec.slot for spec in (*ORDER_FIELDS.values(), *CUSTOMER_FIELDS.values())
                     if spec.type is Type.STRING)
ITEM_STRING_SLOTS = tuple(spec.slot for spec in ITEM_FIELDS.values() if spec.type is Type.STRING)

ROOTS = {"order": ORDER_FIELDS, "customer": CUSTOMER_FIELDS}

# name -> (number of arguments (min, max)); all take and return numbers.
FUNCTIONS: dict[str, tuple[int, int]] = {
    "floor": (1, 1),
    "ceil": (1, 1),
    "round": (1, 1),
    "min": (2, 8),
    "max": (2, 8),
}

KEYWORDS = (
    "valid", "from", "until", "rule", "priority", "when", "then", "earn", "point", "points",
    "expiring", "in", "on", "day", "days", "multiply", "earned", "by", "cap", "at", "tag",
    "customer", "stop", "or", "and", "not", "between", "true", "false", "count", "sum", "for",
    "where", "any", "all", "has", "have", "pending", "into",
)
