"""The wasm evaluator: exact numeric helpers, isolation (no imports, fixed
memory, fuel), batching across memory chunks, and trap containment."""

from __future__ import annotations

import itertools
import re

import pytest
import wasmtime
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.rules import numeric
from shared.rules.numeric import MAX_SCALED, RuleFailure
from shared.rules.cost import measure
from shared.rules.parser import parse
from shared.rules.ruleset import CompiledRuleSet
from shared.rules.wasm_codegen import _HELPERS, MEMORY_PAGES, PAGE
from shared.rules.wasm_runtime import FUEL_PER_UNIT, engine

from .helpers import TENANT, WASM_TENANT, customer, order

_OPS = {"add": numeric.add, "sub": numeric.sub, "mul": numeric.mul, "div": numeric.div}
_UNARY = {"floor": numeric.floor, "ceil": numeric.ceil, "round": numeric.round_half_away}


@pytest.fixture(scope="module")
def helpers():
    """The module's numeric helpers, exported for direct comparison with shared.rules.numeric."""
    exports = "".join(f'(func (export "{n}") (param i64 i64) (result i64) (local.get 0) (local.get 1) (call ${n}))'
                      for n in _OPS)
    exports += "".join(f'(func (export "{n}") (param i64) (result i64) (local.get 0) (call ${n}))' for n in _UNARY)
    exports += '(func (export "err") (result i32) (global.get $err) (global.set $err (i32.const 0)))'
    store = wasmtime.Store(engine())
    store.set_fuel(10 ** 12)
    instance = wasmtime.Instance(store, wasmtime.Module(engine(), f"(module {_HELPERS} {exports})"), [])
    return store, instance.exports(store)


def wasm_op(helpers, name, *args):
    store, exports = helpers
    value = exports[name](store, *args)
    err = exports["err"](store)
    return ("fail", err) if err else value


def python_op(name, *args):
    fn = _OPS.get(name) or _UNARY[name]
    try:
        return fn(*args)
    except RuleFailure as failure:
        return ("fail", int(failure.failure))


EDGES = sorted({0, 1, -1, 5000, -5000, 15000, -15000, 25000, -25000, 9999, 10001, 3, 7, 30000,
                MAX_SCALED, -MAX_SCALED, MAX_SCALED - 1, 10 ** 14, 10 ** 14 + 1, 10 ** 9, -(10 ** 9) - 7,
                123456789012345, MAX_SCALED // 3})


def test_helpers_match_python_on_edge_values(helpers):
    for name in _OPS:
        for a, b in itertools.product(EDGES, repeat=2):
            assert wasm_op(helpers, name, a, b) == python_op(name, a, b), (name, a, b)
    for name in _UNARY:
        for a in EDGES:
            assert wasm_op(helpers, name, a) == python_op(name, a), (name, a)


@settings(max_examples=300, deadline=None)
@given(a=st.integers(-MAX_SCALED, MAX_SCALED), b=st.integers(-MAX_SCALED, MAX_SCALED),
       small=st.integers(-10 ** 9, 10 ** 9))
def test_helpers_match_python_on_random_values(helpers, a, b, small):
    for name in _OPS:
        for x, y in ((a, b), (a, small), (small, b), (small, small)):
            assert wasm_op(helpers, name, x, y) == python_op(name, x, y), (name, x, y)
    for name in _UNARY:
        assert wasm_op(helpers, name, small) == python_op(name, small)


SOURCE = '''
rule "base" then earn floor(order.total * 10) points
rule "coffee" when any i in order.items has i.category = "coffee" then earn 5 points
rule "sum" then earn sum(i.total / i.quantity for i in order.items where i.category != "tea") points
'''


def test_module_has_no_imports_and_a_fixed_memory():
    compiled = CompiledRuleSet.from_source(SOURCE, "rs", 1)
    evaluator = compiled.wasm
    assert evaluator.module.imports == []
    assert sorted(e.name for e in evaluator.module.exports) == ["eval_batch", "memory"]
    assert re.search(rf'\(memory \(export "memory"\) {MEMORY_PAGES} {MEMORY_PAGES}\)', evaluator.wat)
    store, _, memory = evaluator._instance()
    assert memory.data_len(store) == MEMORY_PAGES * PAGE
    assert memory.grow(store, 0) == MEMORY_PAGES
    with pytest.raises(wasmtime.WasmtimeError):
        memory.grow(store, 1)                      # the store refuses growth beyond the limit


def worst_order(n_items: int = 100):
    return order("9999999.99", items=tuple((f"S{i}", "coffee", 10_000, "99999.99") for i in range(n_items)))


def test_fuel_budget_covers_the_most_expensive_rule_sets():
    # Near-budget rule sets built from the costliest constructs: division in aggregates, multiply loops.
    heavy = [
        'rule "d" when sum(i.total / i.quantity / 3 for i in order.items where i.unit_price / 7 > 0) > 0 '
        'then earn 1 points',
        'rule "m" then earn 1 points, earn 2 points, earn 3 points, multiply earned by 1.5 / 1.1, '
        'cap earned at 1000 / 3',
        'rule "q" when all i in order.items has (i.category in ["coffee", "tea", "cake"] and i.total * 2 / 3 > 1) '
        'then earn round(order.total / 3) points',
    ]
    for text in heavy:
        def copies_of(count):
            return "\n".join(text.replace('rule "', f'rule "{n}') for n in range(count))
        fits = 1
        while measure(parse(copies_of(fits + 1))).total <= 10_000:
            fits += 1
        copies = copies_of(fits)
        compiled = CompiledRuleSet.from_source(copies, "rs", 1)
        cost = compiled.program.cost.total
        assert cost > 4_000
        used = compiled.wasm.fuel_used([compiled_facts(compiled, worst_order())])
        print(f"fuel per cost unit: {used / cost:.1f}")
        assert used < FUEL_PER_UNIT * cost / 2, (text, used, cost)   # at least 2x headroom


def compiled_facts(compiled, the_order, the_customer=None):
    from zoneinfo import ZoneInfo

    from shared.rules.facts import extract
    return extract(the_order, the_customer or customer(), ZoneInfo("UTC"), compiled.program.tag_literals)


def test_large_batches_are_chunked_and_agree_with_closure():
    compiled = CompiledRuleSet.from_source(SOURCE, "rs", 1)
    orders = [(worst_order(100 if n % 3 == 0 else n % 7), customer()) for n in range(500)]
    assert compiled.evaluate_batch(WASM_TENANT, orders) == compiled.evaluate_batch(TENANT, orders)


def test_a_trap_is_contained_to_its_order(monkeypatch):
    monkeypatch.setattr("shared.rules.wasm_runtime.FUEL_PER_CALL", 0)
    compiled = CompiledRuleSet.from_source(SOURCE, "rs", 1)
    compiled.wasm.fuel_per_order = 10          # far too little: every call runs out of fuel
    results = compiled.evaluate_batch(WASM_TENANT, [(order(), customer()), (order(), customer())])
    assert [r.trace[0]["error"]["code"] for r in results] == ["evaluation-aborted"] * 2
    assert all(r.points == 0 for r in results)
    compiled.wasm.fuel_per_order = 10 ** 6      # the evaluator stays usable after a trap
    assert compiled.evaluate(WASM_TENANT, order(), customer()).points == 1000


@pytest.mark.parametrize("word", ["and", "or"])
@pytest.mark.parametrize("operands", [
    [True, False], [False, True], [True] * 1400, [False] * 1400, [True] * 1399 + [False], [False] * 1399 + [True],
    [index % 3 == 0 for index in range(997)],
], ids=["2-tf", "2-ft", "1400-t", "1400-f", "1400-last-f", "1400-last-t", "997-mixed"])
def test_long_and_or_chains_agree_with_closure(word: str, operands: list[bool]) -> None:
    """An outside review: the checker sees an ``and``/``or`` chain as one node, so ~1,000
    operands save; the wasm generator recursed once per operand, raised RecursionError, and
    every order of a wasm tenant earned 0 while closure credited the points. Chains up to the
    save limits must agree, short-circuit included."""
    conditions = ["order.total > 1" if value else "order.total > 1000" for value in operands]
    source = 'rule "a"\n  when (' + f"\n  {word} ".join(conditions) + ")\n  then earn 7 points"
    compiled = CompiledRuleSet.from_source(source, "rs", 1)
    closure = compiled.evaluate(TENANT, order(), customer())
    wasm = compiled.evaluate(WASM_TENANT, order(), customer())
    expected = 7 if (all(operands) if word == "and" else any(operands)) else 0
    assert sum(lot.points for lot in closure.lots) == expected
    assert sum(lot.points for lot in wasm.lots) == expected, wasm.trace[0]
