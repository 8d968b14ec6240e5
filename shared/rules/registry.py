"""Compiled rule sets, one per (tenant, rule set id, version), per process.

Saved versions are immutable, so a compiled version never goes stale: the
registry compiles each at most once (concurrent first requests wait for the
same compilation) and keeps the most recently used ``capacity`` of them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable

from shared.rules.ruleset import CompiledRuleSet

Key = tuple[str, str, int]
SourceLoader = Callable[[str, str, int], str]     # (tenant id, rule set id, version) -> source


class RuleSetRegistry:
    def __init__(self, load_source: SourceLoader, capacity: int = 256) -> None:
        assert capacity >= 1
        self._load = load_source
        self._capacity = capacity
        self._compiled: OrderedDict[Key, CompiledRuleSet] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[Key, threading.Lock] = {}
        self.compilations = 0

    def get(self, tenant_id: str, rule_set_id: str, version: int) -> CompiledRuleSet:
        key = (tenant_id, rule_set_id, version)
        with self._lock:
            found = self._compiled.get(key)
            if found is not None:
                self._compiled.move_to_end(key)
                return found
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                found = self._compiled.get(key)
            if found is not None:
                return found
            compiled = CompiledRuleSet.from_source(self._load(*key), rule_set_id, version)
            with self._lock:
                self.compilations += 1
                self._compiled[key] = compiled
                self._key_locks.pop(key, None)
                while len(self._compiled) > self._capacity:
                    self._compiled.popitem(last=False)
            return compiled
