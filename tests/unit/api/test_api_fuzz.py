"""Conformance, fuzzed (schemathesis): whatever a client sends, with a key of any
role, the answer is what the OpenAPI document promises.

Every operation of ``/openapi/v1.json`` gets generated requests (valid and
invalid), each sent once with a key of every role (merchant, analyst,
tenant-admin, platform-admin), so the fuzzing reaches past the role check on
the routes each role may use and checks the 403 of the others. Each answer
goes through schemathesis' response checks, not only "no 5xx":

* ``not_a_server_error``: never a 5xx for a client's input;
* ``status_code_conformance``: the status is one the operation declares;
* ``content_type_conformance``: the media type is the declared one
  (``application/problem+json`` for every error);
* ``response_schema_conformance``: the body matches the declared schema
  (the success models of shared/api/contract, the ``Problem`` schema);
* ``response_headers_conformance``: declared headers have their declared type.

Bounded and repeatable: derandomized (a fixed seed), a fixed number of
examples per operation. Zero findings is the bar; a finding that is the
checker's mistake is listed in ``CHECKER_MISTAKES`` with why."""

from __future__ import annotations

import tempfile
from decimal import Decimal
from pathlib import Path

import httpx
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_headers_conformance,
                                               response_schema_conformance, status_code_conformance)

from shared.api.app import create_app
from shared.app.auth import Role
from shared.app.customers import CustomerProfile
from shared.domain.tenants import TenantSettings
from shared.platform import build_platform
from shared.settings import Settings

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
EXAMPLES_PER_OPERATION = 8

_folder = Path(tempfile.mkdtemp(prefix="accrue-fuzz-"))
_platform = build_platform(Settings.from_env({"ACCRUE_DATA_DIR": str(_folder), "ACCRUE_SQLITE_SYNCHRONOUS": "NORMAL"}))
_platform.tenants.save(TenantSettings(tenantId="fuzz", name="Fuzz", currency="EUR", pointsPerUnit=Decimal(1)))
_platform.customers.register("fuzz", CustomerProfile(customerId="c1", joinDate="2025-01-01"))
KEYS = {role: _platform.keys.issue("fuzz", role, None, f"fuzz {role.value}").secret_key
        for role in (Role.MERCHANT, Role.ANALYST, Role.TENANT_ADMIN)}
KEYS[Role.PLATFORM_ADMIN] = _platform.keys.issue("_platform", Role.PLATFORM_ADMIN, None, "fuzzer").secret_key

app = create_app(_platform)
# The voucher-pool upload takes a file (text/csv or NDJSON): its body schema is a string,
# sent as is.
for _media_type in ("text/csv", "application/x-ndjson"):
    schemathesis.serializer.alias(_media_type, "text/plain")
schema = schemathesis.openapi.from_asgi("/openapi/v1.json", app)


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_answer_conforms_to_the_document(case) -> None:
    if "api-keys" in case.path and case.method == "DELETE":
        # Never revoke a fuzzer's own key mid-run: a key id that no key has.
        case.path_parameters = {"keyId": "aaaaaaaaaaaa"}
    for role, key in KEYS.items():
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {key}"}
        case.headers.pop("x-api-key", None)
        try:
            response = case.call()
        except httpx.InvalidURL:
            return  # no client can send this (a control character in the path): nothing reached the server
        case.validate_response(response, checks=CHECKS)
        if response.status_code >= 400:
            problem = response.json()
            assert problem["status"] == response.status_code, (role, problem)
