"""Fuzz the API from its own OpenAPI document (schemathesis): whatever a client
sends, the answer is never a 5xx, and every error is an RFC 9457 problem.

Runs with a real tenant-admin key (a platform-admin key on platform routes),
so generated requests get past authentication and reach validation and the
services."""

from __future__ import annotations

import tempfile
from decimal import Decimal
from pathlib import Path

import httpx
import schemathesis
from hypothesis import HealthCheck, settings

from shared.api.app import create_app
from shared.app.auth import Role
from shared.app.customers import CustomerProfile
from shared.domain.tenants import TenantSettings
from shared.platform import build_platform
from shared.settings import Settings

_folder = Path(tempfile.mkdtemp(prefix="accrue-fuzz-"))
_platform = build_platform(Settings.from_env({"ACCRUE_DATA_DIR": str(_folder), "ACCRUE_SQLITE_SYNCHRONOUS": "NORMAL"}))
_platform.tenants.save(TenantSettings(tenantId="fuzz", name="Fuzz", currency="EUR", pointsPerUnit=Decimal(1)))
_platform.customers.register("fuzz", CustomerProfile(customerId="c1", joinDate="2025-01-01"))
ADMIN_KEY = _platform.keys.issue("fuzz", Role.TENANT_ADMIN, None).secret_key
PLATFORM_KEY = _platform.keys.issue("_platform", Role.PLATFORM_ADMIN, None, "fuzzer").secret_key


def _key_for(path: str, method: str) -> str:
    """Platform routes get a platform-admin key, so they are fuzzed past the role check too."""
    if path.startswith("/v1/platform") or (path == "/v1/tenants" and method == "POST"):
        return PLATFORM_KEY
    return ADMIN_KEY

app = create_app(_platform)
schema = schemathesis.openapi.from_asgi("/openapi/v1.json", app)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_client_input_gets_a_server_error(case) -> None:
    if "api-keys" in case.path and case.method == "DELETE":
        # Never revoke the fuzzer's own key mid-run (ids are random, but be safe).
        case.path_parameters = {"keyId": "aaaaaaaaaaaa"}
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {_key_for(case.path, case.method.upper())}"}
    try:
        response = case.call()
    except httpx.InvalidURL:
        return  # no client can send this (a control character in the path): nothing reached the server
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    if response.status_code >= 400:
        assert response.headers["content-type"][0].startswith("application/problem+json") \
            if isinstance(response.headers["content-type"], list) \
            else response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert {"type", "title", "status", "detail"} <= problem.keys()
        assert problem["status"] == response.status_code
