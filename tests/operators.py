"""Platform operators for tests: the region's bootstrap operator and further operators,
each with a software security key (tests/webauthn_authenticator.py) and a platform-admin
key bound to them, and the two-operator ceremony over HTTP (``Ceremony``).

Setting operators up (``add_operators``) goes straight to the domain, as the
bootstrap and an approved ``operator.register`` would leave them; the ceremony itself
(``Ceremony.approve``) is the real one: assertion options from the API, the software
key signs the request's challenge, the API verifies. Tests that create tenants or
other platform acts through the API use ``Ceremony.run``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.app.auth import Role
from shared.audit.log import PLATFORM_CHAIN
from shared.governance.bootstrap import bootstrap_operator
from shared.governance.operators import stored_credential
from shared.governance.webauthn import Credential
from shared.platform import Platform
from tests.webauthn_authenticator import SoftKey


@dataclass
class Operator:
    operator_id: str
    name: str
    api_key: str
    key: SoftKey

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def _credential(key: SoftKey) -> Credential:
    from fido2.cose import ES256
    from fido2.utils import websafe_encode
    from fido2.webauthn import AttestedCredentialData

    data = AttestedCredentialData.create(key.aaguid, key.credential_id,
                                         ES256.from_cryptography_key(key.private_key.public_key()))
    return Credential(key.id, websafe_encode(bytes(data)), "00000000-0000-0000-0000-000000000000", 0)


def add_operators(platform: Platform, count: int = 2, names: tuple[str, ...] = ("ana", "ben", "cy", "dee")
                  ) -> list[Operator]:
    """``count`` operators with a security key each: the bootstrap operator first (when
    the region has none), then operators as an approved registration leaves them."""
    made: list[Operator] = []
    for index in range(count):
        name = names[index % len(names)] + ("" if index < len(names) else str(index))
        key = SoftKey()
        if not platform.operators.bootstrapped():
            done = bootstrap_operator(platform, name, None)
            platform.operators.register_bootstrap_key(done.operator_id, _credential(key), _system())
            made.append(Operator(done.operator_id, name, done.key.secret_key, key))
            continue
        operator_id = "op-" + key.credential_id[:8].hex()
        platform.operators.create_with_key(operator_id, name, stored_credential(_credential(key)))
        issued = platform.keys.issue(PLATFORM_CHAIN, Role.PLATFORM_ADMIN, None, label=name, operator_id=operator_id)
        made.append(Operator(operator_id, name, issued.secret_key, key))
    return made


def _system() -> Any:
    from shared.audit.log import SYSTEM_ACTOR
    return SYSTEM_ACTOR


class Ceremony:
    """Two operators approving requests over HTTP with their software keys."""

    def __init__(self, client: Any, operators: list[Operator]) -> None:
        assert len(operators) >= 2, "dual control needs two operators"
        self.client = client
        self.operators = operators

    def approve(self, request_id: str, operator: Operator, verb: str = "approve", **signing: Any) -> Any:
        options = self.client.get(f"/v1/platform/approvals/{request_id}/assertion-options", headers=operator.headers)
        assert options.status_code == 200, options.text
        assertion = operator.key.get(options.json(), **signing)
        return self.client.post(f"/v1/platform/approvals/{request_id}/{verb}", json={"assertion": assertion},
                                headers=operator.headers)

    def run(self, method: str, path: str, json: Any = None, *, requester: int = 0, second: int = 1) -> dict[str, Any]:
        """File a request with ``method path`` as operator ``requester``; both approve; the
        second approval's answer (``result``: what the act did)."""
        first, other = self.operators[requester], self.operators[second]
        filed = self.client.request(method, path, json=json, headers=first.headers)
        assert filed.status_code == 202, filed.text
        request_id = filed.json()["id"]
        mine = self.approve(request_id, first)
        assert mine.status_code == 200 and mine.json()["status"] == "pending", mine.text
        done = self.approve(request_id, other)
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "executed", done.text
        return done.json()

    def act(self, method: str, path: str, json: Any = None, ok: int = 200) -> Any:
        """Like ``run``, but any outcome: the filing's refusal, the approval's error, or
        ``ok`` with the act's result (what the route answered before dual control)."""
        first, other = self.operators[0], self.operators[1]
        filed = self.client.request(method, path, json=json, headers=first.headers)
        if filed.status_code != 202:
            return filed  # refused at once: the route's own answer
        request_id = filed.json()["id"]
        mine = self.approve(request_id, first)
        assert mine.status_code == 200, mine.text
        done = self.approve(request_id, other)
        if done.status_code != 200:
            return done  # the act failed: the approval's answer
        return Answer(ok, done.json()["result"], dict(done.headers))

    def tenant(self, body: dict[str, Any]) -> Any:
        """POST /v1/tenants through the ceremony: 201 and the provisioning answer, or the error."""
        return self.act("POST", "/v1/tenants", body, ok=201)

    def create_tenant(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /v1/tenants through the ceremony: the provisioning answer (tenant, adminKey)."""
        return self.run("POST", "/v1/tenants", body)["result"]


@dataclass
class Answer:
    """The outcome of an act run through the ceremony, shaped like an HTTP response."""

    status_code: int
    body: Any
    headers: dict[str, str]

    def json(self) -> Any:
        return self.body

    @property
    def text(self) -> str:
        return repr(self.body)
