"""Runs every benchmark script of ``bench/`` (``bench_*.py``), one after the other.

Each script runs in its own subprocess with this interpreter (``make bench``
uses the project's ``.venv``), from the repository root, with its output passed
through as it comes. Sequential on purpose: the benchmarks measure throughput
on a small machine, and two at once would measure each other. The scripts
write their own result files (``bench/RESULTS-*.md``) where they do.

Exit status: 0 if every script succeeded, 1 if any failed (all are still run,
and a summary names the failures), 2 for an unknown script name.

Usage: ``python bench/run_all.py [--list] [NAME ...]`` where NAME selects
scripts by name (``spine`` or ``bench_spine.py``); none selects all.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def scripts() -> list[Path]:
    return sorted(BENCH.glob("bench_*.py"))


def select(available: list[Path], names: list[str]) -> list[Path]:
    if not names:
        return available
    by_name = {}
    for path in available:
        by_name[path.name] = by_name[path.stem] = by_name[path.stem.removeprefix("bench_")] = path
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)}; "
                         f"known: {', '.join(p.name for p in available)}")
    return [by_name[name] for name in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the scripts and exit")
    parser.add_argument("names", nargs="*", help="run only these (e.g. spine rules)")
    args = parser.parse_args(argv)
    try:
        chosen = select(scripts(), args.names)
    except SystemExit as refused:
        print(refused, file=sys.stderr)
        return 2
    if args.list:
        for path in chosen:
            print(path.relative_to(ROOT))
        return 0
    if not chosen:
        print("no bench/bench_*.py script found", file=sys.stderr)
        return 1

    outcomes: list[tuple[str, int, float]] = []
    for path in chosen:
        print(f"\n===== {path.relative_to(ROOT)} =====", flush=True)
        start = time.perf_counter()
        try:
            code = subprocess.call([sys.executable, str(path)], cwd=ROOT)
        except KeyboardInterrupt:
            print(f"\ninterrupted during {path.name}", file=sys.stderr)
            return 130
        outcomes.append((path.name, code, time.perf_counter() - start))

    print("\n===== summary =====")
    for name, code, seconds in outcomes:
        print(f"  {'ok    ' if code == 0 else 'FAILED'} {name} ({seconds:.0f} s, exit {code})")
    failed = [name for name, code, _ in outcomes if code != 0]
    if failed:
        print(f"{len(failed)} of {len(outcomes)} benchmark(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
