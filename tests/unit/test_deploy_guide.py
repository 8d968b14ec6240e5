"""docs/deploy.md's verification steps work as written.

The guide marks the shell blocks an operator runs against a new stack
(``<!-- deploy-guide: NAME ... -->`` before the fence). This test runs them, in
order and unchanged, with bash, against the real ASGI app served by uvicorn on
loopback, over the embedded store and queue, and with Key Vault through the SDK's
own clients against the fake vault with Azure RBAC modelled as the stack grants
it: the app's identity holds Crypto User, the key manager Crypto Officer. The
bootstrap block runs the real CLI (``python -m shared.local bootstrap-operator``)
against the same store; what the guide has people do on the operator page (register
security keys, sponsor the second operator, approve the tenant request) is done here
over the same API with software security keys (tests/webauthn_authenticator.py). The
Azure-only lines (``az ...``) are outside the marked blocks.
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
    assert set(blocks) == {"bootstrap", "request", "verify"}
    assert "bootstrap-operator" in blocks["bootstrap"]
    assert '"sandbox":true' in blocks["request"] and "/v1/tenants" in blocks["request"]
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


def _operator_page(api: str, platform_key: str, request_id: str) -> str:
    """What the guide has the operators do on the page, over the same API: the bootstrap
    operator's key, the second operator, both approvals; the new tenant's admin key."""
    from tests.webauthn_authenticator import SoftKey

    first, second = SoftKey(), SoftKey()
    mine = {"Authorization": f"Bearer {platform_key}"}
    with httpx.Client(base_url=api, timeout=60) as http:
        me = http.get("/v1/platform/operators/me", headers=mine).json()

        def register(key: SoftKey, body: dict) -> dict:
            options = http.post("/v1/platform/operators/registration-options", json=body, headers=mine).json()
            done = http.post("/v1/platform/operators/registrations", headers=mine, json={
                "challengeId": options["challengeId"], "credential": key.create(options["publicKey"])})
            assert done.status_code == 200, done.text
            return done.json()

        def approve(request: str, key: SoftKey, headers: dict) -> dict:
            options = http.get(f"/v1/platform/approvals/{request}/assertion-options", headers=headers).json()
            done = http.post(f"/v1/platform/approvals/{request}/approve", json={"assertion": key.get(options)},
                             headers=headers)
            assert done.status_code == 200, done.text
            return done.json()

        assert register(first, {"operatorId": me["operatorId"]})["operator"]["credentials"]
        enrol = register(second, {"name": "second operator"})["request"]["id"]
        approve(enrol, first, mine)
        newcomer = approve(enrol, second, mine)["result"]
        theirs = {"Authorization": f"Bearer {newcomer['apiKey']}"}
        assert approve(request_id, first, mine)["status"] == "pending"
        done = approve(request_id, second, theirs)
    assert done["status"] == "executed", done
    return done["result"]["adminKey"]["apiKey"]


def test_the_verification_steps_work_as_written(stack, tmp_path: Path) -> None:
    api, env, platform, vault = stack
    blocks = guide_blocks()
    # The operator's shell: the repository root, its virtual environment's python first.
    shell_env = {"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                 "HOME": str(tmp_path), "API": api, "USER": "first-operator", **env}
    started = time.perf_counter()
    filed = subprocess.run(["bash", "-c", "\n".join(["set -e", blocks["bootstrap"], 'test -n "$PLATFORM_KEY"',
                                                    blocks["request"], 'echo "FILED $PLATFORM_KEY $REQUEST"'])],
                           cwd=ROOT, env=shell_env, capture_output=True, text=True, timeout=240)
    assert filed.returncode == 0, f"stdout:\n{filed.stdout}\nstderr:\n{filed.stderr}"
    [(platform_key, request_id)] = [tuple(line.split()[1:]) for line in filed.stdout.splitlines()
                                    if line.startswith("FILED ")]
    assert not platform.tenants.exists("sandbox-eu"), "a request, not yet a tenant"
    admin_key = _operator_page(api, platform_key, request_id)
    ran = subprocess.run(["bash", "-c", "\n".join(["set -e", blocks["verify"]])], cwd=ROOT,
                         env={**shell_env, "ADMIN_KEY": admin_key}, capture_output=True, text=True, timeout=240)
    print(f"\nthe guide's verification ran in {time.perf_counter() - started:.1f} s\n{ran.stdout}")
    assert ran.returncode == 0, f"stdout:\n{ran.stdout}\nstderr:\n{ran.stderr}"
    assert "'status': 'credited'" in ran.stdout
    # What the guide says the stack now holds.
    assert platform.tenants.get("sandbox-eu").sandbox
    assert vault.created_types == {key_name("sandbox-eu"): "RSA-HSM"}
    bootstrap = [r for r in platform.audit.records("_platform") if r["action"] == "apikey.created"]
    assert bootstrap[0]["after"].get("operatorBootstrap") is True
    assert [r["action"] for r in platform.audit.records("_platform")].count("operator.bootstrapped") == 1


def test_a_second_bootstrap_is_refused_as_the_guide_says(stack, tmp_path: Path) -> None:
    _, env, _, _ = stack
    command = ["bash", "-c", guide_blocks()["bootstrap"] + '\necho "$PLATFORM_KEY"']
    shell_env = {"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                 "HOME": str(tmp_path), **env}
    first = subprocess.run(command, cwd=ROOT, env=shell_env, capture_output=True, text=True, timeout=120)
    assert first.stdout.strip().startswith("acr_"), first.stderr
    second = subprocess.run(command, cwd=ROOT, env=shell_env, capture_output=True, text=True, timeout=120)
    assert not second.stdout.strip().startswith("acr_") and "refused" in second.stderr
