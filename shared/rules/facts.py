"""What a rule can know of one order, extracted once and shared by both evaluators.

``extract`` reads the ``Order``, the ``CustomerContext`` and the tenant's time
zone into the slots of ``shared.rules.schema``: amounts scaled to fixed point,
local date/hour/weekday in the tenant's zone, days since 1970 for dates, and a
0/1 flag per tag the rule set asks about. The closure evaluator reads these
slots directly; the wasm encoder copies them into linear memory (interning
strings). Extraction is host-side data preparation, not rule semantics: it is
the same code for both evaluators by design.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

from shared.domain.orders import Order
from shared.earning import CustomerContext
from shared.rules import numeric
from shared.rules.schema import (
    N_SCALARS, S_AMOUNT, S_CHANNEL, S_CURRENCY, S_DATE, S_HOUR, S_ITEM_COUNT, S_ITEMS_RAW, S_JOIN_DATE,
    S_LIFETIME_POINTS, S_MEMBER_DAYS, S_MINUTE, S_ORDER_COUNT, S_RECORD_BYTES, S_TIER, S_TIER_MULTIPLIER, S_WEEKDAY,
    WEEKDAYS,
)

EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@dataclass(slots=True)
class Facts:
    scalars: list                     # by slot; numbers scaled, dates in days, strings as str
    items: list[tuple]                # (sku, category, quantity, unit_price, total)


def extract(order: Order, customer: CustomerContext, zone: ZoneInfo, tag_literals: tuple[str, ...]) -> Facts:
    local = order.timestamp.astimezone(zone)
    local_day = local.date().toordinal() - EPOCH_ORDINAL
    join_day = customer.join_date.toordinal() - EPOCH_ORDINAL
    scale = numeric.SCALE
    items = [(item.sku, item.category, item.quantity * scale, numeric.from_decimal(item.unit_price),
              item.quantity * numeric.from_decimal(item.unit_price)) for item in order.items]
    scalars: list = [0] * (N_SCALARS + len(tag_literals))
    scalars[S_RECORD_BYTES] = 0
    scalars[S_AMOUNT] = numeric.from_decimal(order.amount)
    scalars[S_CURRENCY] = order.currency
    scalars[S_CHANNEL] = order.channel
    scalars[S_DATE] = local_day
    scalars[S_HOUR] = local.hour * scale
    scalars[S_MINUTE] = local.minute * scale
    scalars[S_WEEKDAY] = WEEKDAYS[local.weekday()]
    scalars[S_ITEM_COUNT] = len(items) * scale
    scalars[S_TIER] = customer.tier or ""
    scalars[S_LIFETIME_POINTS] = numeric.from_int(customer.lifetime_points)
    scalars[S_ORDER_COUNT] = numeric.from_int(customer.order_count)
    scalars[S_JOIN_DATE] = join_day
    scalars[S_MEMBER_DAYS] = numeric.from_int(local_day - join_day)
    scalars[S_ITEMS_RAW] = len(items)
    scalars[S_TIER_MULTIPLIER] = numeric.from_decimal(customer.tier_multiplier)
    if tag_literals:
        have = set(customer.tags)
        for index, tag in enumerate(tag_literals):
            scalars[N_SCALARS + index] = 1 if tag in have else 0
    return Facts(scalars, items)
