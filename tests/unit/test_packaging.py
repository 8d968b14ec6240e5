"""The lock files (docs/packaging.md), checked offline: each is up to date with
the ``.in`` file it is compiled from, every requirement in it is hash-pinned
(pip refuses the whole file otherwise under ``--require-hashes``), what Azure
installs carries no local-only server, and the supported Pythons are stated
once, consistently. Whether the locks resolve for each supported Python needs
the package index: ``make lock-check`` (tests/lock_check.py)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCKS = {  # lock file -> the .in it is compiled from
    "requirements.txt": "requirements.in",
    "requirements-local.txt": "requirements-local.in",
    "tests/requirements.txt": "tests/requirements.in",
}
LOCAL_ONLY = {"uvicorn", "uvloop", "httptools", "websockets"}
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==(?P<version>[^\s;\\]+)")


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            found[normal(match["name"])] = match["version"]
    return found


def requirements(path: Path) -> list[str]:
    """A lock file's requirements, each with its continuation lines joined."""
    text = path.read_text().replace("\\\n", " ")
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize("lock, source", LOCKS.items())
def test_each_lock_pins_what_its_source_pins(lock: str, source: str) -> None:
    wanted, locked = pins(ROOT / source), pins(ROOT / lock)
    assert wanted, source
    stale = {name: (version, locked.get(name)) for name, version in wanted.items() if locked.get(name) != version}
    assert not stale, f"{lock} is stale for {source} (wanted, locked): {stale}; run `make lock`"


@pytest.mark.parametrize("lock", LOCKS)
def test_every_locked_requirement_is_pinned_and_hashed(lock: str) -> None:
    lines = requirements(ROOT / lock)
    assert lines
    for line in lines:
        assert PIN.match(line), f"{lock}: not an exact pin: {line[:80]}"
        assert "--hash=sha256:" in line, f"{lock}: no hash: {line[:80]}"


def test_the_locks_agree_where_they_overlap() -> None:
    locked = {lock: pins(ROOT / lock) for lock in LOCKS}
    seen: dict[str, tuple[str, str]] = {}
    for lock, found in locked.items():
        for name, version in found.items():
            first = seen.setdefault(name, (lock, version))
            assert first[1] == version, f"{name}: {first[1]} in {first[0]} but {version} in {lock}"


# The official MCP SDK (requirements.in, issue 21) declares uvicorn as a dependency of its own
# runners, so uvicorn's pure-Python package is installed on Azure too; Accrue never imports it
# outside shared/local (test below), and its speedups (uvloop, httptools) stay local-only.
RUNTIME_BY_DEPENDENCY = {"uvicorn"}


def test_what_azure_installs_has_no_local_server() -> None:
    runtime = set(pins(ROOT / "requirements.txt"))
    assert not runtime & (LOCAL_ONLY - RUNTIME_BY_DEPENDENCY)
    assert LOCAL_ONLY <= set(pins(ROOT / "requirements-local.txt"))


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def test_only_the_local_runner_imports_a_local_only_package() -> None:
    offenders = {}
    sources = [ROOT / "function_app.py", *(ROOT / "functions").rglob("*.py"), *(ROOT / "shared").rglob("*.py")]
    for path in sources:
        if (ROOT / "shared" / "local") in path.parents:
            continue
        used = _imported_roots(path) & LOCAL_ONLY
        if used:
            offenders[str(path.relative_to(ROOT))] = sorted(used)
    assert not offenders, f"Azure does not install these (requirements-local.in): {offenders}"


def test_the_supported_pythons_are_stated_once_and_this_one_is_among_them() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'requires-python\s*=\s*">=3\.(\d+),\s*<3\.(\d+)"', pyproject)
    assert match, "pyproject.toml states requires-python"
    low, high = int(match[1]), int(match[2]) - 1
    makefile = (ROOT / "Makefile").read_text()
    assert f"PYTHON_MIN := 3.{low}\n" in makefile and f"PYTHON_MAX := 3.{high}\n" in makefile
    assert (3, low) <= sys.version_info[:2] <= (3, high)
