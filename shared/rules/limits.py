"""Hard limits of the rule language, in one place.

They bound everything a hostile or careless rule file can make the platform do:
the text is bounded before parsing, the tree before checking, and evaluation by
the static cost budget (``shared.rules.cost``). Changing one is a product
decision: the cost model and the WebAssembly fuel are derived from them.
"""

from __future__ import annotations

from shared.domain.orders import MAX_ITEMS_PER_ORDER

MAX_SOURCE_BYTES = 64 * 1024        # a rule set is a page of business logic, not a program
MAX_LINE_CHARS = 1_000
MAX_RULES = 500
MAX_DEPTH = 40                      # nesting of the expression tree (parentheses, not, operators)
MAX_NAME_CHARS = 64
MAX_RULE_NAME_CHARS = 100
MAX_STRING_CHARS = 200
MAX_NUMBER_CHARS = 24               # digits and the decimal point of one literal
MAX_LIST_ITEMS = 200
MAX_EXPIRY_DAYS = 3_650
MAX_PRIORITY = 1_000_000
MAX_DIAGNOSTICS = 50                # report this many problems, then stop

COST_BUDGET = 10_000                # static cost units per rule set
ITEMS_BOUND = MAX_ITEMS_PER_ORDER   # what an aggregate over order.items is charged for
