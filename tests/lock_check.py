"""Do the lock files resolve for every supported Python? (``make lock-check``; needs PyPI.)

For each version from ``requires-python`` (pyproject.toml), asks pip (what the
Functions remote build runs) to install the runtime locks, exactly as pinned
and hash-checked, for the Linux the Functions host runs (x86_64 manylinux), as a
dry run, with an interpreter of that version when one is installed (pip
evaluates environment markers such as azure-functions' ``python_version`` split
with the running interpreter, never with ``--python-version``; without one the
line says "markers of" the running version): a pin with no release or no wheel for that version, or whose
``Requires-Python`` excludes it, fails here instead of in a deployment. pip, not
uv: uv ignores upper bounds of ``Requires-Python`` by design, and they matter
here (azure-functions 1.26.0 says ``<3.13``; its 2.x line, which 3.13 gets
through a marker, is 3.13+ only). The first version above the range is
reported too, for information: resolving is necessary, not sufficient, to
widen the range (the suite must run there). The test lock is checked by
installing it (``make test`` into a fresh venv, docs/packaging.md).

Not a pytest test: it asks the package index, and the suite keeps its traffic
on loopback. Prints one line per version; exit status 1 if a supported version
does not resolve.
"""

from __future__ import annotations

import glob
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ("requirements.txt", "requirements-local.txt")
# pip takes exact platform tags: the manylinux levels a current x86_64 Linux accepts.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_5_x86_64",
             "manylinux1_x86_64", "linux_x86_64")


def supported() -> tuple[tuple[int, int], tuple[int, int]]:
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'requires-python\s*=\s*">=3\.(\d+),\s*<3\.(\d+)"', text)
    assert match, "pyproject.toml must say requires-python = \">=3.X,<3.Y\""
    return (3, int(match[1])), (3, int(match[2]) - 1)


def interpreter(version: str) -> str | None:
    """An installed Python of ``version`` (PATH, then pyenv), or None."""
    candidates = [shutil.which(f"python{version}"),
                  *sorted(glob.glob(str(Path.home() / f".pyenv/versions/{version}.*/bin/python")))]
    for candidate in filter(None, candidates):
        check = subprocess.run([candidate, "-c", f"import sys; assert sys.version.startswith('{version}.')"],
                               check=False, capture_output=True, timeout=60)
        if check.returncode == 0:
            return candidate
    return None


def resolves(version: str) -> tuple[bool, str]:
    python = interpreter(version) or sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        command = [python, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed",
                   "--require-hashes", "--only-binary=:all:", "--python-version", version, "--target", tmp]
        for platform in PLATFORMS:
            command += ["--platform", platform]
        for lock in LOCKS:
            command += ["-r", str(ROOT / lock)]
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR: No matching")]
    note = "" if python != sys.executable or sys.version.startswith(f"{version}.") else \
        f" [no Python {version} here: markers of {sys.version.split()[0]}]"
    return done.returncode == 0, (errors or [""])[-1].removeprefix("ERROR: ") + note


def main() -> int:
    (low_major, low), (_, high) = supported()
    failures = 0
    for minor in range(low, high + 2):
        version = f"{low_major}.{minor}"
        supported_here = minor <= high
        ok, reason = resolves(version)
        verdict = (f"resolves{reason}" if ok else f"does not resolve ({reason})")
        if supported_here:
            failures += not ok
            print(f"{'ok  ' if ok else 'FAIL'} Python {version}: {verdict}")
        else:
            print(f"info Python {version} (above the supported range): {verdict}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
