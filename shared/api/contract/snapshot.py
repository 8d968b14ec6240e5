"""Writes the committed snapshot of the OpenAPI document, docs/openapi-v1.json.

The document is generated from the code (``shared.api.contract.document``) and
never edited by hand; a test fails when the snapshot and the code disagree.
Regenerate it with ``python -m shared.api.contract.snapshot`` (REGENERATE)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).resolve().parents[3] / "docs" / "openapi-v1.json"
REGENERATE = ".venv/bin/python -m shared.api.contract.snapshot"


def generate() -> dict[str, Any]:
    """The document of an app over a throwaway embedded platform (the document depends on no data)."""
    from shared.api.app import create_app
    from shared.platform import build_platform
    from shared.settings import Settings

    with tempfile.TemporaryDirectory(prefix="accrue-openapi-") as folder:
        platform = build_platform(Settings.from_env({"ACCRUE_DATA_DIR": folder}))
        try:
            return create_app(platform).openapi()
        finally:
            close = getattr(platform, "close", None)
            if callable(close):
                close()


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else SNAPSHOT
    target.write_text(render(generate()), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
