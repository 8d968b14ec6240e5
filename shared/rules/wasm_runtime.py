"""The isolated evaluator: a rule set's wasm module run under wasmtime.

Isolation, in layers:

* the module has **no imports** (checked before instantiation), so the only
  thing it can touch is its own linear memory;
* the memory is fixed at ``MEMORY_PAGES`` (min = max) and the store's limits
  refuse any growth beyond it;
* every call runs on fuel derived from the rule set's static cost: the cost
  model bounds the work per order, so ``FUEL_PER_UNIT`` fuel per cost unit
  (plus a fixed allowance per order and per call) always suffices for a valid
  rule set, and anything that somehow runs longer is stopped by wasmtime.

Calling into wasmtime costs tens of microseconds, so orders are encoded as a
batch into linear memory (one ``struct.pack``), evaluated by one call, and the
outcome records are read back with one read. A batch larger than memory is
split into chunks.

If a call traps (fuel exhausted or a fault, neither of which a valid rule set
can cause), the chunk is retried order by order and any order that still traps
gets ``None`` instead of an outcome record: ``CompiledRuleSet`` turns it into
an "evaluation-aborted" result for that order only.
"""

from __future__ import annotations

import struct
import threading
from typing import Sequence

import wasmtime

from shared.rules.facts import Facts
from shared.rules.program import Program
from shared.rules.schema import ITEM_STRING_SLOTS, ITEM_SLOTS, STRING_SLOTS, S_RECORD_BYTES
from shared.rules.wasm_codegen import MEMORY_PAGES, PAGE, generate, out_bytes, scratch_bytes

FUEL_PER_UNIT = 120          # measured worst case is under 50 per cost unit (test_wasm.py keeps 2x headroom)
FUEL_PER_ORDER = 2_000       # the fixed prologue/epilogue of one order
FUEL_PER_CALL = 1_000

_engine_lock = threading.Lock()
_engine: wasmtime.Engine | None = None


def engine() -> wasmtime.Engine:
    """One engine per process (engines are thread-safe and costly to create)."""
    global _engine
    with _engine_lock:
        if _engine is None:
            config = wasmtime.Config()
            config.consume_fuel = True
            config.cranelift_opt_level = "speed"
            _engine = wasmtime.Engine(config)
        return _engine


class WasmEvaluator:
    def __init__(self, program: Program) -> None:
        self.program = program
        self.wat = generate(program)
        self.module = wasmtime.Module(engine(), self.wat)
        assert not self.module.imports, "rule modules must not import anything"
        self.out_bytes = out_bytes(program)
        self.scratch = scratch_bytes(program)
        self.memory_bytes = MEMORY_PAGES * PAGE
        self.fuel_per_order = FUEL_PER_ORDER + FUEL_PER_UNIT * program.cost.total
        self._base_ids = {s: i for i, s in enumerate(program.string_literals)}
        self._local = threading.local()
        n_inputs = program.n_inputs
        self._string_slots = tuple(s for s in STRING_SLOTS if s < n_inputs)
        self._record_format = struct.Struct(f"<{program.size}q")

    def _instance(self) -> tuple[wasmtime.Store, wasmtime.Func, wasmtime.Memory]:
        state = getattr(self._local, "state", None)
        if state is None:
            store = wasmtime.Store(engine())
            store.set_limits(memory_size=self.memory_bytes, instances=1, tables=0, memories=1)
            instance = wasmtime.Instance(store, self.module, [])
            exports = instance.exports(store)
            state = (store, exports["eval_batch"], exports["memory"])
            self._local.state = state
        return state

    def encode(self, facts: Sequence[Facts]) -> tuple[list[int], list[int]]:
        """Flatten facts to i64 values; strings become ids (literals first, then per-batch ids).

        Returns the values and each record's length in slots."""
        ids = dict(self._base_ids)
        values: list[int] = []
        lengths: list[int] = []
        string_slots = self._string_slots
        for fact in facts:
            record = list(fact.scalars)
            for slot in string_slots:
                text = record[slot]
                sid = ids.get(text)
                if sid is None:
                    sid = ids[text] = len(ids)
                record[slot] = sid
            for item in fact.items:
                flat = list(item)
                for slot in ITEM_STRING_SLOTS:
                    sid = ids.get(flat[slot])
                    if sid is None:
                        sid = ids[flat[slot]] = len(ids)
                    flat[slot] = sid
                record.extend(flat)
            record[S_RECORD_BYTES] = len(record) * 8
            assert len(record) == self.program.n_inputs + ITEM_SLOTS * len(fact.items)
            values.extend(record)
            lengths.append(len(record))
        return values, lengths

    def run_batch(self, facts: Sequence[Facts]) -> list[Sequence[int] | None]:
        values, lengths = self.encode(facts)
        results: list[Sequence[int] | None] = []
        start = 0
        budget = self.memory_bytes - self.scratch
        while start < len(facts):
            # Greedy chunk: as many records as fit with their outputs.
            used, end, offset = 0, start, sum(lengths[:start])
            slot_start = offset
            while end < len(facts):
                need = lengths[end] * 8 + self.out_bytes
                if used + need > budget:
                    break
                used += need
                offset += lengths[end]
                end += 1
            if end == start:        # cannot happen within the schema's limits; isolate it anyway
                results.append(None)
                start += 1
                continue
            results.extend(self._call(values[slot_start:offset], lengths[start:end], end - start))
            start = end
        return results

    def _call(self, values: list[int], lengths: list[int], count: int) -> list[Sequence[int] | None]:
        store, eval_batch, memory = self._instance()
        data = struct.pack(f"<{len(values)}q", *values)
        in_ptr = self.scratch
        out_ptr = in_ptr + len(data)
        out_ptr = (out_ptr + 7) // 8 * 8
        memory.write(store, data, in_ptr)
        store.set_fuel(FUEL_PER_CALL + self.fuel_per_order * count)
        try:
            eval_batch(store, in_ptr, count, out_ptr)
        except (wasmtime.Trap, wasmtime.WasmtimeError):
            if count == 1:
                return [None]
            return self._one_by_one(values, lengths)
        raw = memory.read(store, out_ptr, out_ptr + count * self.out_bytes)
        unpack = self._record_format.unpack_from
        size = self.out_bytes
        return [unpack(raw, i * size) for i in range(count)]

    def _one_by_one(self, values: list[int], lengths: list[int]) -> list[Sequence[int] | None]:
        results: list[Sequence[int] | None] = []
        offset = 0
        for length in lengths:
            results.extend(self._call(values[offset:offset + length], [length], 1))
            offset += length
        return results

    def fuel_used(self, facts: Sequence[Facts]) -> int:
        """Fuel one call over ``facts`` consumes (for the tests that keep FUEL_PER_UNIT honest)."""
        values, lengths = self.encode(facts)
        store, eval_batch, memory = self._instance()
        data = struct.pack(f"<{len(values)}q", *values)
        memory.write(store, data, self.scratch)
        out_ptr = (self.scratch + len(data) + 7) // 8 * 8
        store.set_fuel(10 ** 12)
        eval_batch(store, self.scratch, len(facts), out_ptr)
        return 10 ** 12 - store.get_fuel()
