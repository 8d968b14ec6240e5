"""``accrue import``: upload a file through the blob port, start the import, and follow it
with a progress bar until it ends (``shared.local.__main__`` parses the arguments).

The file is streamed into the blob sink (1 MiB at a time: memory flat in its size); the
job runs in this process through the work-item queue, so it is the very code the
``work-items`` timer runs, and if this process is stopped the item is resumed by the
timer (or by ``accrue import --resume <importId>``) from its stored cursor. The bar is
drawn on stderr; the final status is printed on stdout as JSON. Exit status: 0 when
every row was applied, 1 when some failed or the import was rejected.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Iterator, TextIO

from shared.errors import AccrueError

READ_BYTES = 1024 * 1024
BAR_WIDTH = 30


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(READ_BYTES):
            yield chunk


def bar(status: dict[str, Any]) -> str:
    """One line of progress: the share of the file read, rows done and failed, rate, ETA."""
    total, read = status.get("bytesTotal") or 0, status.get("bytesRead") or 0
    passes = 2 if status.get("mode") == "all-or-nothing" else 1
    share = 1.0 if status["status"] in ("done", "rejected") else (
        ((read / total) + (1 if status.get("phase") == "apply" and passes == 2 else 0)) / passes if total else 0.0)
    filled = int(BAR_WIDTH * min(share, 1.0))
    rate = f"{status['ratePerSecond']:,.0f} rows/s" if status.get("ratePerSecond") else "-"
    eta = f"ETA {status['etaSeconds']:,.0f}s" if status.get("etaSeconds") is not None else ""
    phase = f" {status['phase']}" if status.get("phase") == "validate" else ""
    return (f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {share:6.1%}{phase} {status['rowsDone']:,} done, "
            f"{status['rowsFailed']:,} failed, {rate} {eta}").rstrip()


def run_import(platform: Any, args: argparse.Namespace, who: Any, out: TextIO = sys.stdout,
               err: TextIO = sys.stderr) -> int:
    from shared.imports.service import ImportSpec  # noqa: PLC0415
    from shared.jobs import work_items  # noqa: PLC0415

    try:
        if args.resume:
            import_id = args.resume
        else:
            path = Path(args.file)
            if not path.is_file():
                print(f"no such file: {path}", file=err)
                return 2
            fmt = args.format or ("csv" if path.suffix.lower() == ".csv" else "ndjson")
            spec = ImportSpec.model_validate({"kind": args.kind, "format": fmt, "mode": args.mode,
                                              "evaluate": args.evaluate, "ruleSetId": args.rule_set,
                                              "version": args.version})
            import_id = platform.imports.create(args.tenant, spec, who)["importId"]
            platform.imports.upload(args.tenant, import_id, _chunks(path))
            platform.imports.start(args.tenant, import_id, who)
        print(f"import {import_id}", file=err)
        queue = work_items(platform)
        while True:
            queue.run(max_items=1, budget_seconds=1.0)
            status = platform.imports.status(args.tenant, import_id)
            print("\r" + bar(status), end="", file=err, flush=True)
            if status["status"] in ("done", "rejected"):
                break
            if status["status"] == "stalled":
                print("\nthe import is parked after repeated failures: `accrue jobs list --status parked`",
                      file=err)
                return 1
            if status["status"] != "running":
                time.sleep(0.2)  # another worker holds the item: wait for its next slice
    except AccrueError as error:
        print(f"\nrefused: {error.message}", file=err)
        return 2
    print("", file=err)
    if args.errors:
        with open(args.errors, "w", encoding="utf-8", newline="") as report:
            for part in platform.imports.error_report(args.tenant, import_id):
                report.write(part)
    print(json.dumps(status, indent=2), file=out)
    return 0 if status["status"] == "done" and not status["rowsFailed"] else 1
