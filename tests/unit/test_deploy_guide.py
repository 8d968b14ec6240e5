"""docs/deploy.md's verification steps work as written.

The guide marks the shell blocks an operator runs against a new stack
(``<!-- deploy-guide: NAME ... -->`` before the fence). This test runs them, in
order and unchanged, with bash, against the real ASGI app served by uvicorn on
loopback, over the embedded store and queue, and with Key Vault through the SDK's
own clients against the fake vault with Azure RBAC modelled as the stack grants
it: the app's identity holds Crypto User, the key manager Crypto Officer. The
bootstrap block runs the real CLI (``python -m shared.local issue-key``) against
the same store. The Azure-only lines (``az ...``) are outside the marked blocks.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from shared.api.app import create_app
from shared.keys.keyvault import KeyVaultKeyProvider, key_name
from shared.local.workers import FeedPoller, QueueConsumer
from shared.platform import build_platform
from shared.settings import Settings
from tests.unit.keys.fake_keyvault import CRYPTO_OFFICER, CRYPTO_USER, VAULT, FakeCredential, FakeKeyVaultTransport

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "deploy.md"
MARKED = re.compile(r"<!-- deploy-guide: (?P<name>[\w-]+)[^>]*-->\s*\n```sh\n(?P<body>.*?)\n```", re.S)


def guide_blocks() -> dict[str, str]:
    return {m["name"]: m["body"] for m in MARKED.finditer(GUIDE.read_text())}


def test_the_guide_marks_the_bootstrap_and_the_verification_blocks() -> None:
    blocks = guide_blocks()
    assert set(blocks) == {"bootstrap", "verify"}
    assert "issue-key --role platform-admin" in blocks["bootstrap"]
    assert '"sandbox":true' in blocks["verify"] and "/v1/tenants" in blocks["verify"]
    assert not any(line.lstrip().startswith("az ") for block in blocks.values() for line in block.splitlines())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def stack(tmp_path: Path):
    """The app as a stack serves it: Key Vault with two identities, workers consuming orders."""
    vault = FakeKeyVaultTransport()
    vault.grant("app", CRYPTO_USER)
    vault.grant("manager", CRYPTO_OFFICER)
    provider = KeyVaultKeyProvider(VAULT, FakeCredential("app"), management_credential=FakeCredential("manager"),
                                   hardware_protected=True, transport=vault, retry_total=0)
    data = tmp_path / "data"
    env = {"ACCRUE_DATA_DIR": str(data), "ACCRUE_SQLITE_SYNCHRONOUS": "NORMAL"}
    platform = build_platform(Settings.from_env(env), key_provider=provider)
    workers = [QueueConsumer(platform, platform.bus), FeedPoller(platform)]
    for worker in workers:
        worker.start()
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(platform), host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and serving.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", env, platform, vault
    server.should_exit = True
    serving.join(timeout=10)
    for worker in workers:
        worker.stop()
        worker.join()
    platform.close()


def test_the_verification_steps_work_as_written(stack, tmp_path: Path) -> None:
    api, env, platform, vault = stack
    blocks = guide_blocks()
    # The operator's shell: the repository root, its virtual environment's python first.
    script = "\n".join(["set -e", blocks["bootstrap"], 'test -n "$PLATFORM_KEY"', blocks["verify"],
                        'echo "KEYS $PLATFORM_KEY $ADMIN_KEY"'])  # for the checks below, not from the guide
    shell_env = {"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                 "HOME": str(tmp_path), "API": api, "USER": "first-operator", **env}
    started = time.perf_counter()
    ran = subprocess.run(["bash", "-c", script], cwd=ROOT, env=shell_env, capture_output=True, text=True,
                         timeout=240)
    print(f"\nthe guide's verification ran in {time.perf_counter() - started:.1f} s\n{ran.stdout}")
    assert ran.returncode == 0, f"stdout:\n{ran.stdout}\nstderr:\n{ran.stderr}"
    assert "'status': 'credited'" in ran.stdout
    # What the guide says the stack now holds.
    assert platform.tenants.get("sandbox-eu").sandbox
    assert vault.created_types == {key_name("sandbox-eu"): "RSA-HSM"}
    bootstrap = [r for r in platform.audit.records("_platform") if r["action"] == "apikey.created"]
    assert len(bootstrap) == 1 and bootstrap[0]["after"].get("bootstrap") is True
    # "Safe to repeat": the same request answers with the same tenant and the same admin key.
    [keys] = [line.split()[1:] for line in ran.stdout.splitlines() if line.startswith("KEYS ")]
    platform_key, admin_key = keys
    again = httpx.post(f"{api}/v1/tenants", headers={"Authorization": f"Bearer {platform_key}"}, timeout=30, json={
        "tenantId": "sandbox-eu", "name": "Sandbox EU", "currency": "EUR", "timeZone": "Europe/Paris",
        "pointsPerUnit": "10", "sandbox": True})
    assert again.status_code == 201 and again.json()["adminKey"]["apiKey"] == admin_key


def test_a_second_bootstrap_is_refused_as_the_guide_says(stack, tmp_path: Path) -> None:
    _, env, _, _ = stack
    command = ["bash", "-c", guide_blocks()["bootstrap"] + '\necho "$PLATFORM_KEY"']
    shell_env = {"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                 "HOME": str(tmp_path), **env}
    first = subprocess.run(command, cwd=ROOT, env=shell_env, capture_output=True, text=True, timeout=120)
    assert first.stdout.strip().startswith("acr_"), first.stderr
    second = subprocess.run(command, cwd=ROOT, env=shell_env, capture_output=True, text=True, timeout=120)
    assert not second.stdout.strip().startswith("acr_") and "refused" in second.stderr
