"""``python -m shared.audit verify <tenantId|_platform>`` checks a chain (exit 1 on a broken link);
``python -m shared.audit archive`` copies unarchived records of every chain to the audit blob sink."""

from __future__ import annotations

import json
import sys

from shared.platform import build_platform


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("verify", "archive") or (argv[0] == "verify" and len(argv) != 2):
        print(__doc__, file=sys.stderr)
        return 2
    platform = build_platform()
    try:
        if argv[0] == "verify":
            report = platform.audit.verify(argv[1])
            print(json.dumps(report, indent=2))
            return 0 if report["ok"] else 1
        print(json.dumps(platform.audit.archive_all(), indent=2))
        return 0
    finally:
        platform.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
