"""Benchmark of tenant provisioning: how long ``POST /v1/tenants`` takes, plain and
``sandbox: true`` (the platform promises a sandbox in under 60 seconds): the request,
both operators' WebAuthn approvals (software security keys, tests/operators.py) and the
provisioning the second approval runs; the ceremony's own cost is printed apart.

Each tenant is created over real HTTP (the ASGI app through httpx) on the embedded
store (SQLite, ``synchronous=NORMAL`` as in tests; FULL is the local default), with
Key Vault through the SDK's own clients against the in-memory fake vault
(tests/unit/keys/fake_keyvault.py: real RSA-OAEP, 3072-bit keys as the adapter asks,
no network), so the figures are the platform's own work: key creation and the
sealed admin secret, the tenant, its admin key and audit records, and for a sandbox
the sample customers, rewards, rule set (parse, check, activate) and orders.

Usage: ``python bench/bench_provisioning.py [--tenants N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from machine import machine_line  # bench/machine.py (the script's folder is on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi.testclient import TestClient  # noqa: E402

from shared.api.app import create_app  # noqa: E402
from shared.keys.keyvault import KEY_SIZE, KeyVaultKeyProvider  # noqa: E402
from shared.platform import build_platform  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.operators import Ceremony, add_operators  # noqa: E402
from tests.unit.keys.fake_keyvault import (CRYPTO_OFFICER, CRYPTO_USER, VAULT, FakeCredential,  # noqa: E402
                                           FakeKeyVaultTransport)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=5, help="tenants of each kind (default 5)")
    args = parser.parse_args()
    vault = FakeKeyVaultTransport(key_size=KEY_SIZE)
    vault.grant("app", CRYPTO_USER)
    vault.grant("manager", CRYPTO_OFFICER)
    provider = KeyVaultKeyProvider(VAULT, FakeCredential("app"), management_credential=FakeCredential("manager"),
                                   hardware_protected=True, transport=vault, retry_total=0)
    with tempfile.TemporaryDirectory() as folder:
        platform = build_platform(Settings.from_env({"ACCRUE_DATA_DIR": folder, "ACCRUE_SQLITE_SYNCHRONOUS": "NORMAL"}),
                                  key_provider=provider)
        operators = add_operators(platform, 2)
        figures: dict[str, list[float]] = {"plain": [], "sandbox": [], "ceremony only (two approvals)": []}
        with TestClient(create_app(platform), base_url="http://accrue.bench") as http:
            ceremony = Ceremony(http, operators)
            for kind in ("plain", "sandbox"):
                for number in range(args.tenants):
                    body = {"tenantId": f"{kind}-{number}", "name": f"{kind} {number}", "sandbox": kind == "sandbox"}
                    started = time.perf_counter()
                    made = ceremony.tenant(body)
                    figures[kind].append(time.perf_counter() - started)
                    assert made.status_code == 201, made.text
            for number in range(args.tenants):
                filed = http.post("/v1/platform/approvals", headers=operators[0].headers, json={
                    "action": "dual-control.policy", "reason": "bench", "params": {"ttlMinutes": 60}})
                started = time.perf_counter()
                assert ceremony.approve(filed.json()["id"], operators[0]).status_code == 200
                assert ceremony.approve(filed.json()["id"], operators[1]).json()["status"] == "executed"
                figures["ceremony only (two approvals)"].append(time.perf_counter() - started)
        platform.close()
    print(f"Machine: {machine_line()}\n")
    print("| kind | tenants | median s | max s |\n|---|---:|---:|---:|")
    for kind, times in figures.items():
        print(f"| {kind} | {len(times)} | {statistics.median(times):.2f} | {max(times):.2f} |")


if __name__ == "__main__":
    main()
