"""The process's registry compiles each schema on first use (cold start), while an
explicitly built registry stays eager (the CI gate still fails on a bad file)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from shared.schemas.registry import EVENTS_DIR, SchemaFileInvalid, SchemaRegistry

ROOT = Path(__file__).resolve().parents[3]


def _schema(event_type: str, version: int = 1) -> dict[str, object]:
    return {"x-event-type": event_type, "x-event-version": version, "type": "object",
            "additionalProperties": False, "properties": {"points": {"type": "integer"}}}


def test_a_lazy_registry_compiles_only_what_is_used() -> None:
    registry = SchemaRegistry(EVENTS_DIR, lazy=True)
    assert len(registry) >= 3 and registry._schemas == {}
    body = {"type": "order.received", "version": 1}
    registry.problems(body)  # invalid or not, it needs the order.received schema only
    assert set(registry._schemas) == {("order.received", 1)}
    assert len(list(registry)) == len(registry) == len(registry._schemas)  # iterating loads them all


def test_a_bad_file_fails_an_eager_registry_at_once_and_a_lazy_one_at_first_use(tmp_path: Path) -> None:
    (tmp_path / "good.event.v1.json").write_text(json.dumps(_schema("good.event")))
    (tmp_path / "bad.event.v1.json").write_text(json.dumps({"type": 12}))
    with pytest.raises(SchemaFileInvalid, match="bad.event.v1.json"):
        SchemaRegistry(tmp_path)
    lazy = SchemaRegistry(tmp_path, lazy=True)
    assert lazy.problems({"points": 1}, "good.event", 1) == []
    with pytest.raises(SchemaFileInvalid, match="bad.event.v1.json"):
        lazy.problems({}, "bad.event", 1)
    # A misnamed file is refused even by a lazy registry: listing the folder checks names.
    (tmp_path / "misnamed.json").write_text("{}")
    with pytest.raises(SchemaFileInvalid, match="misnamed.json"):
        SchemaRegistry(tmp_path, lazy=True)


def test_concurrent_first_uses_load_a_schema_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "one.event.v1.json").write_text(json.dumps(_schema("one.event")))
    registry = SchemaRegistry(tmp_path, lazy=True)
    loads: list[Path] = []
    real_load = SchemaRegistry._load

    def counted(file: Path):  # type: ignore[no-untyped-def]
        loads.append(file)
        return real_load(file)

    monkeypatch.setattr(SchemaRegistry, "_load", staticmethod(counted))
    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda: results.append(registry.problems({"points": "x"}, "one.event", 1)))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(loads) == 1 and len(results) == 8 and all(r and "points" in r[0] for r in results)


def test_importing_the_registry_imports_no_validator() -> None:
    probe = "import json, sys, shared.schemas; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=False, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    modules = json.loads(done.stdout)
    assert not [m for m in modules if m.split(".")[0] in ("jsonschema", "jsonschema_rs")]
