"""Every answer a test receives through the ``client`` fixture is checked against
the OpenAPI document (issue 13): its status is one the operation declares, the
headers of the API's policies it carries (RateLimit, Retry-After, Deprecation,
Sunset, Accrue-Dry-Run, Location...) are declared on that response, its media type is the
declared one (``application/problem+json`` for errors) and its body matches the
declared schema.

So each API test of the suite is also a conformance test, on the realistic
states those tests build (held orders, reservations, decided reviews...) that a
fuzzer starting from an empty tenant rarely reaches. A request that matches no
operation of the document (an unknown path, a method the path does not serve)
is not checked here; neither is a 500, which no operation promises."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

_BASE = "urn:accrue:openapi"
_POLICY_HEADERS = {"ratelimit", "ratelimit-policy", "retry-after", "deprecation", "sunset", "accrue-dry-run",
                   "www-authenticate", "location"}


class Conformance:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource.from_contents({"components": document["components"]}, default_specification=DRAFT202012)
        self.registry = Registry().with_resource(_BASE, resource)
        # Literal paths first: /v1/customers/lookup is POST lookup, not customers/{customerId}.
        templates = sorted(document["paths"], key=lambda p: (p.count("{"), p))
        self.operations = [(re.compile("^" + re.sub(r"\{\w+\}", "[^/]+", p) + "$"), p) for p in templates]

    @lru_cache(maxsize=None)
    def _validator(self, ref: str) -> Draft202012Validator:
        return Draft202012Validator({"$ref": _BASE + ref}, registry=self.registry)

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        for regex, template in self.operations:
            item = self.document["paths"][template]
            if regex.match(path) and method.lower() in item:
                return template, item[method.lower()]
        return None

    def check(self, response: httpx.Response) -> None:
        request = response.request
        found = self.operation(request.method, request.url.path)
        if found is None or response.status_code == 500:
            return
        template, operation = found
        where = f"{request.method} {request.url.path} ({template}) answered {response.status_code}"
        declared = operation["responses"].get(str(response.status_code))
        assert declared is not None, (
            f"{where}, a status its operation {operation['operationId']} does not declare "
            f"({', '.join(operation['responses'])}): declare it in op(...) (shared/api/contract)\n{response.text[:500]}")
        # The headers of the API's own policies the server sent are declared on this response
        # (rate limits, deprecation, dry runs, Retry-After); the document may declare more.
        sent = {name.lower() for name in response.headers} & _POLICY_HEADERS
        undeclared = sent - {name.lower() for name in declared.get("headers", {})}
        assert not undeclared, f"{where} with header(s) {sorted(undeclared)} its response does not declare"
        content = declared.get("content")
        if not content:
            assert not response.content, f"{where} with a body the document says it has not"
            return
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        assert media_type in content, f"{where} as {media_type!r}; the document declares {list(content)}"
        schema = content[media_type]["schema"]
        errors = sorted(self._validator(schema["$ref"]).iter_errors(response.json()), key=lambda e: list(e.path))
        assert not errors, (f"{where}: the body does not match {schema['$ref']}: " + "; ".join(
            f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message[:200]}" for e in errors[:5])
            + f"\n{response.text[:800]}")
