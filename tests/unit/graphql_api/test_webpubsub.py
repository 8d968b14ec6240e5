"""Live updates on Azure through Web PubSub, tested as the Key Vault adapter is: the SDK's own
``WebPubSubServiceClient`` over a faked azure-core transport that answers the service's REST
API (generateToken, send to group) and records what it was asked."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from azure.core.rest._requests_basic import RestRequestsTransportResponse

from shared.app.auth import Principal, Role
from shared.graphql import webpubsub
from shared.store.layout import LEDGER
from tests.conftest import auth, drain, order_body
from tests.fake_transport import FakeTransport
from tests.unit.keys.fake_keyvault import FakeCredential

ENDPOINT = "https://accrue-eu.webpubsub.azure.com"


class FakeWebPubSub(FakeTransport):
    def __init__(self) -> None:
        self.tokens: list[dict[str, list[str]]] = []
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.unavailable = False

    def send(self, request: Any, **kwargs: Any) -> RestRequestsTransportResponse:
        url = urlparse(request.url)
        assert request.headers.get("Authorization") == "Bearer fake-token", "managed identity, never a key"
        if self.unavailable:
            return self._respond(request, 503, {"code": "ServiceUnavailable"})
        if request.method == "POST" and url.path == "/api/hubs/accrue/:generateToken":
            self.tokens.append(parse_qs(url.query))
            return self._respond(request, 200, {"token": "eyJ.fake.jwt"})
        prefix = "/api/hubs/accrue/groups/"
        if request.method == "POST" and url.path.startswith(prefix) and url.path.endswith("/:send"):
            group = url.path[len(prefix):-len("/:send")]
            body = request.content if isinstance(request.content, (bytes, str)) else request.body
            self.sent.append((group, json.loads(body)))
            return self._respond(request, 202, None)
        return self._respond(request, 404, {"code": "NotFound", "message": url.path})


@pytest.fixture
def fake() -> FakeWebPubSub:
    return FakeWebPubSub()


@pytest.fixture
def live(fake: FakeWebPubSub) -> webpubsub.LiveUpdates:
    built = webpubsub.build(ENDPOINT, "accrue", credential=FakeCredential(), transport=fake, retry_total=0)
    assert built is not None
    return built


def test_not_configured_means_no_adapter() -> None:
    assert webpubsub.build(None, "accrue") is None


def test_negotiate_issues_a_short_lived_url_for_the_keys_tenant_group_only(live, fake) -> None:
    answer = live.negotiate(Principal("k1", "acme", Role.ANALYST))
    assert answer["url"].startswith("wss://accrue-eu.webpubsub.azure.com/client/hubs/accrue?access_token=")
    assert answer["group"] == "tenant-acme" and answer["expiresInMinutes"] == 10
    [asked] = fake.tokens
    assert asked["group"] == ["tenant-acme"] and asked["userId"] == ["k1"]
    assert asked["minutesToExpire"] == ["10"]
    assert "role" not in asked, "no role: the client may neither join another group nor send"


def test_the_change_feed_publishes_each_event_to_its_tenants_group(platform, client, tenant, other_tenant,
                                                                   live, fake) -> None:
    for keys in (tenant, other_tenant):
        assert client.post("/v1/orders", json=order_body("c1", "w1", "7.00"),
                           headers=auth(keys.merchant)).status_code == 202
    drain(platform)
    docs = [c.doc for c in platform.store.changes(LEDGER, 0, 10_000)]
    assert live.publish(docs) == len(fake.sent) >= 4
    by_group: dict[str, list[str]] = {}
    for group, message in fake.sent:
        assert group == f"tenant-{message['tenantId']}"
        by_group.setdefault(group, []).append(message["type"])
    assert set(by_group) == {"tenant-acme", "tenant-globex"}
    for types in by_group.values():
        assert {"transactionCreated", "orderDecided"} <= set(types)
    transaction = next(m for g, m in fake.sent if m["type"] == "transactionCreated" and g == "tenant-acme")
    assert transaction["data"]["entries"][0]["signedAmount"] == 70
    assert transaction["data"]["dataAsOf"] == transaction["data"]["createdAt"]


def test_a_web_pubsub_outage_never_fails_the_projection(platform, client, tenant, live, fake) -> None:
    assert client.post("/v1/orders", json=order_body(), headers=auth(tenant.merchant)).status_code == 202
    drain(platform)
    fake.unavailable = True
    assert live.publish([c.doc for c in platform.store.changes(LEDGER, 0, 10_000)]) == 0
    assert live.failures >= 2


def test_the_negotiate_route_needs_a_key_and_web_pubsub(platform, app, tenant, live) -> None:
    import asyncio

    async def post(headers: dict[str, str]) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://accrue.test") as c:
            return await c.post("/graphql/v1/negotiate", headers=headers)

    assert asyncio.run(post({})).status_code == 401
    local = asyncio.run(post(auth(tenant.analyst)))
    assert local.status_code == 501 and local.json()["type"].endswith("/subscriptions-unavailable")
    platform.live_updates = live
    answer = asyncio.run(post(auth(tenant.analyst)))
    assert answer.status_code == 200 and answer.json()["group"] == "tenant-acme"
