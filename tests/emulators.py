"""Start and stop the emulators the integration tests run against.

Two npm packages, pinned in ``tests/emulators/package-lock.json`` and installed
with ``npm ci --prefix tests/emulators``:

* ``@vercel/cosmosdb-server``: the Cosmos DB NoSQL REST API over HTTPS with a
  self-signed certificate (clients connect with ``connection_verify=False``);
* ``azurite``: Blob Storage (``azurite-blob``), data in a temporary folder.

Guarantees: each emulator gets a free port on 127.0.0.1, is waited for with a
bound (a clear error, never a hang, if it does not answer), runs in its own
process group so that stopping it also stops any child it spawned, and its
temporary folder is removed when it stops. A missing ``node_modules`` is an
error naming the command that installs it: the tests never skip silently.

Importable by conftest as ``tests.emulators`` (a namespace package: pytest puts
the repository root on ``sys.path``) and runnable by hand for debugging::

    python tests/emulators.py cosmos    # prints the endpoint, Ctrl-C stops it
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

EMULATORS_DIR = Path(__file__).resolve().parent / "emulators"
BIN_DIR = EMULATORS_DIR / "node_modules" / ".bin"
INSTALL_HINT = "run `npm ci --prefix tests/emulators` (the `make test` target does it)"

# Azurite's well-known development account (public, documented by Microsoft;
# it only ever opens the local emulator).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

# The well-known key of the Cosmos DB emulator; cosmosdb-server accepts any key.
COSMOS_EMULATOR_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU9DJuW5F8IDBmnJa8x7A7vV6YJ2A0JGfLA3kFJ6MH7f1oyPQ=="

STARTUP_TIMEOUT_S = 30.0


class EmulatorError(RuntimeError):
    """An emulator is not installed, did not start, or did not answer in time."""


@dataclass
class Emulator:
    """One running emulator process; ``stop()`` is idempotent."""

    name: str
    url: str
    process: subprocess.Popen[bytes] | None
    log_path: Path | None = None
    workdir: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            # Own process group (start_new_session): one signal reaches node and
            # anything it forked, and nothing outside it.
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def log_tail(self, chars: int = 2000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]


def free_port() -> int:
    """A port free right now on 127.0.0.1 (the emulator binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _binary(name: str) -> Path:
    path = BIN_DIR / name
    if not path.exists():
        raise EmulatorError(f"the {name} emulator is not installed ({path} is missing): {INSTALL_HINT}")
    return path


def _spawn(name: str, argv: list[str], workdir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, log_path


def _wait_until_answering(emulator: Emulator, probe_url: str, timeout_s: float) -> None:
    """Poll ``probe_url`` until any HTTP answer comes back (even 4xx: it is up)."""
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE  # the emulator's self-signed certificate
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if emulator.process is not None and emulator.process.poll() is not None:
            raise EmulatorError(
                f"{emulator.name} exited with code {emulator.process.returncode} before answering:\n"
                f"{emulator.log_tail()}"
            )
        try:
            with urllib.request.urlopen(probe_url, timeout=2, context=insecure):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError) as exc:
            last_error = exc
            time.sleep(0.2)
    emulator.stop()
    raise EmulatorError(
        f"{emulator.name} did not answer at {probe_url} within {timeout_s:.0f}s ({last_error}):\n{emulator.log_tail()}"
    )


def start_cosmos(timeout_s: float = STARTUP_TIMEOUT_S) -> Emulator:
    """Start cosmosdb-server on a free port; its URL is ``https://127.0.0.1:PORT/``."""
    _binary("cosmosdb-server")  # installed?
    node = shutil.which("node")
    if node is None:
        raise EmulatorError("node is not on PATH: the emulators need Node.js 20 or newer")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="accrue-cosmos-"))
    # Our launcher wraps the pinned package with fixes for two emulator bugs
    # (see tests/emulators/cosmosdb-server.js); the emulator is otherwise as shipped.
    argv = [node, str(EMULATORS_DIR / "cosmosdb-server.js"), "-p", str(port), "--host", "127.0.0.1"]
    proc, log_path = _spawn("cosmosdb-server", argv, workdir)
    emulator = Emulator("cosmosdb-server", f"https://127.0.0.1:{port}/", proc, log_path, workdir)
    _wait_until_answering(emulator, emulator.url, timeout_s)
    return emulator


def azurite_connection_string(account_url: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={account_url.rstrip('/')};"
    )


def start_azurite(timeout_s: float = STARTUP_TIMEOUT_S) -> Emulator:
    """Start azurite-blob on a free port; its account URL is ``http://127.0.0.1:PORT/devstoreaccount1``."""
    binary = _binary("azurite-blob")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="accrue-azurite-"))
    data = workdir / "data"
    data.mkdir()
    argv = [
        str(binary),
        # The current azure-storage-blob speaks a newer API version than Azurite knows.
        "--skipApiVersionCheck",
        "--disableTelemetry",
        "--silent",
        "--blobHost", "127.0.0.1",
        "--blobPort", str(port),
        "--location", str(data),
    ]
    proc, log_path = _spawn("azurite-blob", argv, workdir)
    url = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    emulator = Emulator("azurite-blob", url, proc, log_path, workdir,
                        extra={"connection_string": azurite_connection_string(url)})
    _wait_until_answering(emulator, url + "?comp=list", timeout_s)
    return emulator


def external(name: str, url: str) -> Emulator:
    """An emulator somebody else started (ACCRUE_TEST_* variables): never stopped by us."""
    extra = {"connection_string": azurite_connection_string(url)} if name == "azurite-blob" else {}
    return Emulator(name, url, None, extra=extra)


if __name__ == "__main__":  # pragma: no cover - a debugging aid
    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Stop the emulator on Ctrl-C and on kill alike (a background job ignores SIGINT).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    which = sys.argv[1] if len(sys.argv) > 1 else "cosmos"
    running = start_cosmos() if which == "cosmos" else start_azurite()
    print(running.url, running.extra, flush=True)
    try:
        running.process.wait()  # type: ignore[union-attr]
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
