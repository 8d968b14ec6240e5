"""The rule grammar is built once, by one thread, however many requests parse at once.

Racing first parses (concurrent rule saves) each built the lark grammar, whose loader
runs ``ast.literal_eval``; CPython 3.11 can fail that with "SystemError: AST
constructor recursion depth mismatch" when threads run it at once (a 500 in
tests/unit/api/test_concurrent_writes.py). Counting builds shows the race
deterministically, where the SystemError itself is rare."""

from __future__ import annotations

import threading

from shared.rules import parser
from tests.conftest import run_in_threads

RULE = 'rule "base" then earn floor(order.total) points'
THREADS = 12


def test_racing_first_parses_build_the_grammar_once(monkeypatch) -> None:
    cached = getattr(parser, "_build_lark", None) or parser._lark
    cached.cache_clear()
    built: list[int] = []
    real = parser.Lark

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        built.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(parser, "Lark", counting)
    start = threading.Barrier(THREADS)
    parsed: list[object] = []

    def parse() -> None:
        start.wait(timeout=10)
        parsed.append(parser.parse(RULE))

    try:
        run_in_threads(parse, [()] * THREADS, timeout=30)
    finally:
        cached.cache_clear()  # the next test builds it again with the real Lark
    assert len(parsed) == THREADS
    assert len(built) == 1
