"""Hypothesis strategies: well-typed rule sets (as source text) and orders.

The rule generator builds text from a typed grammar walk, so every example
passes the checker and exercises evaluation: arithmetic near the overflow
limit, division by expressions that can be zero, aggregates, dates, tags, and
every action including failing ones (negative points or factors).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from hypothesis import strategies as st

from .helpers import customer, order

CATEGORIES = ("coffee", "tea", "cake", "beans")
CHANNELS = ("web", "store", "app")
TIERS = ("", "silver", "gold", "platinum")
TAGS = ("vip", "staff", "new")

NUM_FIELDS = ("order.total", "order.amount", "order.hour", "order.minute", "order.item_count",
              "customer.lifetime_points", "customer.order_count", "customer.member_days", "earned")
ITEM_NUM_FIELDS = ("quantity", "unit_price", "total")
NUMBERS = ("0", "1", "2", "3", "0.5", "0.1", "0.0001", "10", "99.99", "1000", "123456789",
           "100000000000000", "99999999999999.9999")


@st.composite
def num(draw, depth: int = 0, item: str | None = None, aggregates: bool = True) -> str:
    leaves = [st.sampled_from(NUMBERS), st.sampled_from(NUM_FIELDS)]
    if item:
        leaves.append(st.sampled_from([f"{item}.{f}" for f in ITEM_NUM_FIELDS]))
    if depth >= 3:
        return draw(st.one_of(leaves))
    choice = draw(st.integers(0, 9))
    if choice <= 3:
        return draw(st.one_of(leaves))
    if choice <= 6:
        op = draw(st.sampled_from("+-*/"))
        return f"({draw(num(depth + 1, item, aggregates))} {op} {draw(num(depth + 1, item, aggregates))})"
    if choice == 7:
        fn = draw(st.sampled_from(("floor", "ceil", "round", "min", "max", "-")))
        if fn in ("min", "max"):
            args = [draw(num(depth + 1, item, aggregates)) for _ in range(draw(st.integers(2, 3)))]
            return f"{fn}({', '.join(args)})"
        if fn == "-":
            return f"-{draw(num(depth + 1, item, aggregates))}"
        return f"{fn}({draw(num(depth + 1, item, aggregates))})"
    if choice >= 8 and aggregates and item is None:
        where = f" where {draw(boolean(depth + 1, 'i', False))}" if draw(st.booleans()) else ""
        if choice == 8:
            return f"count(i in order.items{where})"
        return f"sum({draw(num(depth + 1, 'i', False))} for i in order.items{where})"
    return draw(st.one_of(leaves))


@st.composite
def boolean(draw, depth: int = 0, item: str | None = None, aggregates: bool = True) -> str:
    choice = draw(st.integers(0, 11 if depth < 3 else 5))
    if choice == 0:
        return draw(st.sampled_from(("true", "false")))
    if choice <= 2:
        op = draw(st.sampled_from(("=", "!=", "<", "<=", ">", ">=")))
        return f"{draw(num(depth + 1, item, aggregates))} {op} {draw(num(depth + 1, item, aggregates))}"
    if choice == 3:
        field = draw(st.sampled_from(("order.channel", "customer.tier", "order.weekday")
                                     + ((f"{item}.category",) if item else ())))
        values = {"order.channel": CHANNELS, "customer.tier": TIERS,
                  "order.weekday": ("monday", "saturday", "sunday")}.get(field, CATEGORIES)
        chosen = draw(st.lists(st.sampled_from(values), min_size=1, max_size=3))
        negated = "not " if draw(st.booleans()) else ""
        return f'{field} {negated}in [{", ".join(chr(34) + v + chr(34) for v in chosen)}]'
    if choice == 4:
        tag = draw(st.sampled_from(TAGS))
        return f'"{tag}" {"not " if draw(st.booleans()) else ""}in customer.tags'
    if choice == 5:
        if draw(st.booleans()):
            return f"order.date between 2026-03-01 and {draw(st.sampled_from(('2026-03-15', '2026-06-30')))}"
        return f"{draw(num(depth + 1, item, aggregates))} between {draw(num(depth + 1, item, aggregates))} " \
               f"and {draw(num(depth + 1, item, aggregates))}"
    if choice <= 7:
        word = draw(st.sampled_from(("and", "or")))
        parts = [draw(boolean(depth + 1, item, aggregates)) for _ in range(draw(st.integers(2, 3)))]
        return "(" + f" {word} ".join(parts) + ")"
    if choice == 8:
        return f"not {draw(boolean(depth + 1, item, aggregates))}"
    if choice >= 9 and aggregates and item is None:
        kind = draw(st.sampled_from(("any", "all")))
        return f"({kind} i in order.items has {draw(boolean(depth + 1, 'i', False))})"
    return "true"


@st.composite
def action(draw) -> str:
    kind = draw(st.integers(0, 5))
    if kind <= 1:
        expiry = draw(st.sampled_from(("", " expiring in 30 days", " expiring on 2026-12-31")))
        minus = draw(st.sampled_from(("", "", " - 100")))
        return f"earn {draw(num())}{minus} points{expiry}"
    if kind == 2:
        return f"multiply earned by {draw(num())}"
    if kind == 3:
        return f"cap earned at {draw(num())} - {draw(st.sampled_from(('0', '50')))}"
    return f'tag customer "{draw(st.sampled_from(TAGS + ("fan",)))}"'


@st.composite
def ruleset_source(draw) -> str:
    lines = []
    if draw(st.integers(0, 4)) == 0:
        lines.append("valid from 2026-02-01 until 2026-10-31")
    for index in range(draw(st.integers(1, 6))):
        priority = f" priority {draw(st.integers(0, 3))}" if draw(st.booleans()) else ""
        conditions = [draw(boolean()) for _ in range(draw(st.integers(0, 3)))]
        when = f"\n  when {' and '.join(conditions)}" if conditions else ""
        actions = [draw(action()) for _ in range(draw(st.integers(1, 3)))]
        if draw(st.integers(0, 5)) == 0:
            actions.append("stop")
        lines.append(f'rule "r{index}"{priority}{when}\n  then {", ".join(actions)}')
    return "\n".join(lines)


@st.composite
def order_and_customer(draw):
    items = tuple(
        (f"S{n}", draw(st.sampled_from(CATEGORIES)), draw(st.integers(1, 5)),
         draw(st.sampled_from(("0", "0.01", "1.50", "3.33", "99.99", "5000"))))
        for n in range(draw(st.integers(0, 4))))
    moment = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=draw(st.integers(0, 365 * 24 * 60)))
    amount = draw(st.sampled_from(("0.01", "1", "12.34", "50", "99.99", "1000", "9999999.99")))
    the_order = order(amount, items=items, channel=draw(st.sampled_from(CHANNELS)),
                      timestamp=moment.isoformat())
    the_customer = customer(
        tier=draw(st.sampled_from(TIERS)) or None,
        tags=tuple(draw(st.lists(st.sampled_from(TAGS), max_size=2, unique=True))),
        lifetime_points=draw(st.sampled_from((0, 10, 5000, 10 ** 15))),
        order_count=draw(st.integers(0, 5)),
        join_date=date(2025, 1, 1) + timedelta(days=draw(st.integers(0, 500))))
    return the_order, the_customer
