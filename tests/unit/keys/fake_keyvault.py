"""A Key Vault keys service in memory, behind an azure-core ``HttpTransport``.

The SDK's own ``KeyClient`` and ``CryptographyClient`` run unchanged over it:
the transport answers the REST API (challenge authentication, create, get,
rotate, wrapkey, unwrapkey, key versions, recover a deleted key) with the JSON
the service returns, and does real RSA-OAEP-256 with ``cryptography``; private
keys never leave it.

Azure RBAC as the vault applies it: each ``FakeCredential`` presents its own
token, and ``grant(token, role)`` gives that token a built-in role's data
actions (``CRYPTO_USER``, ``CRYPTO_OFFICER``); with any grant made, an operation
outside the caller's role answers 403 ``Forbidden`` as the vault does. Soft
delete too: ``soft_delete(name)`` moves a key to the deleted collection, where
its name stays taken (a create answers 409) until it is recovered.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from typing import Any
from urllib.parse import urlparse

from azure.core.credentials import AccessToken
from azure.core.rest._requests_basic import RestRequestsTransportResponse
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.fake_transport import FakeTransport

VAULT = "https://fake-accrue.vault.azure.net"
OAEP256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


# The data actions of the built-in roles this project uses (operation names as routed below).
CRYPTO_USER = frozenset({"get", "versions", "wrap", "unwrap"})
CRYPTO_OFFICER = frozenset({"get", "versions", "create", "rotate", "recover"})


class FakeCredential:
    def __init__(self, token: str = "fake-token") -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, **kwargs: Any):  # newer azure-core protocol
        from azure.core.credentials import AccessTokenInfo

        return AccessTokenInfo(self.token, int(time.time()) + 3600)


class FakeKeyVaultTransport(FakeTransport):
    def __init__(self, key_size: int = 2048) -> None:
        self.key_size = key_size  # 2048 keeps tests fast; the adapter asks for 3072
        self.keys: dict[str, list[tuple[str, rsa.RSAPrivateKey, dict[str, Any]]]] = {}
        self.deleted: dict[str, list[tuple[str, rsa.RSAPrivateKey, dict[str, Any]]]] = {}
        self.calls: list[tuple[str, str]] = []
        self.unavailable = False
        self.roles: dict[str, set[str]] = {}  # token -> allowed operations; empty: RBAC not modelled
        self.created_types: dict[str, str] = {}  # key name -> kty it was created with (RSA | RSA-HSM)

    def grant(self, token: str, role: frozenset[str]) -> None:
        self.roles.setdefault(token, set()).update(role)

    def soft_delete(self, name: str) -> None:
        self.deleted[name] = self.keys.pop(name)

    # the service's routes
    def send(self, request: Any, **kwargs: Any) -> RestRequestsTransportResponse:
        path = urlparse(request.url).path
        self.calls.append((request.method, path))
        if self.unavailable:
            return self._respond(request, 503, {"error": {"code": "ServiceUnavailable", "message": "try later"}})
        if "Authorization" not in request.headers:
            return self._respond(request, 401, {"error": {"code": "Unauthorized", "message": "no token"}}, {
                "WWW-Authenticate": 'Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-'
                                    '0000-000000000000", resource="https://vault.azure.net"'})
        body = json.loads(request.body) if request.body else {}
        route = [
            ("POST", r"^/keys/(?P<name>[^/]+)/create$", self._create, "create"),
            ("POST", r"^/keys/(?P<name>[^/]+)/rotate$", self._rotate, "rotate"),
            ("POST", r"^/deletedkeys/(?P<name>[^/]+)/recover$", self._recover, "recover"),
            ("GET", r"^/keys/(?P<name>[^/]+)/versions$", self._versions, "versions"),
            ("POST", r"^/keys/(?P<name>[^/]+)/(?P<version>[^/]*)/wrapkey$", self._wrap, "wrap"),
            ("POST", r"^/keys/(?P<name>[^/]+)/(?P<version>[^/]*)/unwrapkey$", self._unwrap, "unwrap"),
            ("GET", r"^/keys/(?P<name>[^/]+)(/(?P<version>[^/]*))?/?$", self._get, "get"),
        ]
        token = request.headers["Authorization"].removeprefix("Bearer ")
        for method, pattern, handler, operation in route:
            match = re.match(pattern, path)
            if request.method == method and match:
                if self.roles and operation not in self.roles.get(token, set()):
                    return self._respond(request, 403, {"error": {
                        "code": "Forbidden", "message": f"Caller is not authorized to perform action on resource. "
                        f"Action: 'Microsoft.KeyVault/vaults/keys/{operation}/action'",
                        "innererror": {"code": "ForbiddenByRbac"}}})
                status, payload = handler(body, **{k: v for k, v in match.groupdict().items()})
                return self._respond(request, status, payload)
        return self._respond(request, 400, {"error": {"code": "BadRequest", "message": f"no route {path}"}})

    # the service
    def _bundle(self, name: str, version: str, key: rsa.RSAPrivateKey, attrs: dict[str, Any]) -> dict[str, Any]:
        numbers = key.public_key().public_numbers()
        return {"key": {"kid": f"{VAULT}/keys/{name}/{version}", "kty": "RSA", "key_ops": attrs["ops"],
                        "n": b64url(_int_bytes(numbers.n)), "e": b64url(_int_bytes(numbers.e))},
                "attributes": {"enabled": True, "created": attrs["created"], "updated": attrs["created"],
                               "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90},
                "tags": attrs.get("tags") or {}}

    def _new_version(self, name: str, ops: list[str], tags: dict[str, str] | None) -> dict[str, Any]:
        version = secrets.token_hex(16)
        key = rsa.generate_private_key(public_exponent=65537, key_size=self.key_size)
        attrs = {"ops": ops, "created": int(time.time()) + len(self.keys.get(name, [])), "tags": tags}
        self.keys.setdefault(name, []).append((version, key, attrs))
        return self._bundle(name, version, key, attrs)

    def _not_found(self, name: str, version: str | None = None) -> tuple[int, dict[str, Any]]:
        what = f"{name}/{version}" if version else name
        return 404, {"error": {"code": "KeyNotFound",
                               "message": f"A key with (name/id) {what} was not found in this key vault."}}

    def _create(self, body: dict[str, Any], name: str) -> tuple[int, dict[str, Any]]:
        if body.get("kty") not in ("RSA", "RSA-HSM"):
            return 400, {"error": {"code": "BadParameter", "message": "kty"}}
        if name in self.deleted:
            return 409, {"error": {"code": "Conflict", "message": f"Key {name} is currently in a deleted but "
                                   "recoverable state, and its name cannot be reused; in this state, the key can "
                                   "be recovered or purged."}}
        self.created_types[name] = body["kty"]
        return 200, self._new_version(name, body.get("key_ops") or ["wrapKey", "unwrapKey"], body.get("tags"))

    def _recover(self, body: dict[str, Any], name: str) -> tuple[int, dict[str, Any]]:
        if name not in self.deleted:
            return 404, {"error": {"code": "KeyNotFound", "message": f"Deleted Key not found: {name}"}}
        self.keys[name] = self.deleted.pop(name)
        return 200, self._bundle(name, *self.keys[name][-1])

    def _rotate(self, body: dict[str, Any], name: str) -> tuple[int, dict[str, Any]]:
        if name not in self.keys:
            return self._not_found(name)
        _, _, attrs = self.keys[name][-1]
        return 200, self._new_version(name, attrs["ops"], attrs.get("tags"))

    def _find(self, name: str, version: str | None):
        versions = self.keys.get(name)
        if not versions:
            return None
        if not version:
            return versions[-1]
        return next((v for v in versions if v[0] == version), None)

    def _get(self, body: dict[str, Any], name: str, version: str | None = None) -> tuple[int, dict[str, Any]]:
        found = self._find(name, version)
        if found is None:
            return self._not_found(name, version)
        return 200, self._bundle(name, *found)

    def _versions(self, body: dict[str, Any], name: str) -> tuple[int, dict[str, Any]]:
        if name not in self.keys:
            return self._not_found(name)
        return 200, {"value": [{"kid": f"{VAULT}/keys/{name}/{v}", "attributes": {
            "enabled": True, "created": a["created"], "updated": a["created"]}} for v, _, a in self.keys[name]],
            "nextLink": None}

    def _wrap(self, body: dict[str, Any], name: str, version: str) -> tuple[int, dict[str, Any]]:
        found = self._find(name, version)
        if found is None:
            return self._not_found(name, version)
        if body.get("alg") != "RSA-OAEP-256":
            return 400, {"error": {"code": "BadParameter", "message": "unsupported algorithm"}}
        encrypted = found[1].public_key().encrypt(unb64url(body["value"]), OAEP256)
        return 200, {"kid": f"{VAULT}/keys/{name}/{found[0]}", "value": b64url(encrypted)}

    def _unwrap(self, body: dict[str, Any], name: str, version: str) -> tuple[int, dict[str, Any]]:
        found = self._find(name, version)
        if found is None:
            return self._not_found(name, version)
        try:
            plain = found[1].decrypt(unb64url(body["value"]), OAEP256)
        except ValueError:
            return 400, {"error": {"code": "BadParameter", "message": "Bad Request"}}
        return 200, {"kid": f"{VAULT}/keys/{name}/{found[0]}", "value": b64url(plain)}
