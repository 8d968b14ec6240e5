"""Runs every benchmark script of ``bench/`` (``bench_*.py``), one after the other.

Each script runs in its own subprocess with this interpreter (``make bench``
uses the project's ``.venv``), from the repository root, with its output passed
through as it comes. Sequential on purpose: the benchmarks measure throughput
on a small machine, and two at once would measure each other. The scripts
write their own result files (``bench/RESULTS-*.md``) where they do.

At the end a one-screen summary table: every figure the scripts reported
through ``bench/summary.py`` (``record``), against its target where the issue
set one, with the machine's 1-minute load average when it was measured (on a
busy machine a figure says little). A figure below its target is marked, never
failed: the exit status depends only on whether each script ran.

Exit status: 0 if every script succeeded, 1 if any failed (all are still run,
and a summary names the failures), 2 for an unknown script name.

Usage: ``python bench/run_all.py [--list] [NAME ...]`` where NAME selects
scripts by name (``spine`` or ``bench_spine.py``); none selects all.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from summary import ENV as SUMMARY_ENV  # bench/summary.py (the script's folder is on sys.path)

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


# Scripts run a second time with these arguments: the spine's headline figure is with the
# 7-rule set active (issue 22, target 1); its results file keeps the flat-rate run.
VARIANTS: dict[str, list[list[str]]] = {"bench_spine.py": [[], ["--rules", "--output", "-"]]}


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


def number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"


def table(rows: list[dict]) -> str:
    """The figures, one line each: value, target (>= or <=), whether it is met, load average."""
    if not rows:
        return "  (no figures reported)"
    width = min(58, max(len(r["measure"]) for r in rows))
    lines = [f"  {'figure':<{width}} {'value':>12} {'target':>12} {'':4} {'load':>5}  script",
             "  " + "-" * (width + 45)]
    for r in rows:
        value = f"{number(r['value'])} {r['unit']}".strip()
        if r.get("target") is None:
            target, verdict = "", ""
        else:
            met = r["value"] >= r["target"] if r["higher"] else r["value"] <= r["target"]
            target = f"{'>=' if r['higher'] else '<='} {number(r['target'])}"
            verdict = "ok" if met else "LOW" if r["higher"] else "HIGH"
        lines.append(f"  {r['measure'][:width]:<{width}} {value:>12} {target:>12} {verdict:4} "
                     f"{r['load']:>5.1f}  {r['script'].replace('bench_', '', 1).replace('.py', '', 1)}")
    return "\n".join(lines)


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
    with tempfile.TemporaryDirectory(prefix="accrue-bench-") as folder:
        figures = Path(folder) / "figures.jsonl"
        figures.touch()
        for path, extra in [(p, e) for p in chosen for e in VARIANTS.get(p.name, [[]])]:
            name = " ".join([path.name, *extra[:1]])
            print(f"\n===== {path.relative_to(ROOT)} {' '.join(extra)} =====", flush=True)
            start = time.perf_counter()
            env = dict(os.environ, **{SUMMARY_ENV: str(figures), "ACCRUE_BENCH_SCRIPT": name})
            try:
                code = subprocess.call([sys.executable, str(path), *extra], cwd=ROOT, env=env)
            except KeyboardInterrupt:
                print(f"\ninterrupted during {name}", file=sys.stderr)
                return 130
            outcomes.append((name, code, time.perf_counter() - start))
        rows = [json.loads(line) for line in figures.read_text(encoding="utf-8").splitlines() if line.strip()]

    print("\n===== summary =====")
    print(table(rows))
    print()
    for name, code, seconds in outcomes:
        print(f"  {'ok    ' if code == 0 else 'FAILED'} {name} ({seconds:.0f} s, exit {code})")
    failed = [name for name, code, _ in outcomes if code != 0]
    if failed:
        print(f"{len(failed)} of {len(outcomes)} benchmark(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
