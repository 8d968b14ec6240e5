"""Every feature that takes a URL and later calls it goes through the one address guard
(``shared.webhooks.ssrf``), at registration and at connection.

``FEATURES`` is the table of such features (webhook endpoints, partner base URLs); a
third one is one more row, and then it meets every hostile URL of ``HOSTILE`` and the
DNS-rebinding check below. The resolver is faked (``FAKE_DNS``): no test looks a name
up, and the only traffic is to a counting listener on 127.0.0.1.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from typing import Callable, Iterator

import pytest

from shared.app.auth import Role
from shared.platform import Platform
from shared.spend.partners import PartnerCallFailed, PartnerRequest
from shared.webhooks.ssrf import TestAllowance, UnsafeUrl
from tests.conftest import PerPlatform, auth

PUBLIC = "93.184.216.34"

# Names the fake resolver knows; any other name "does not resolve".
FAKE_DNS: dict[str, list[str]] = {
    "good.example.com": [PUBLIC],
    "internal.example.com": ["10.1.2.3"],
    "imds.example.com": ["169.254.169.254"],
    "loop.example.com": ["127.0.0.1"],
    "mixed.example.com": [PUBLIC, "127.0.0.1"],
    "ula.example.com": ["fd12:3456::1"],
    "mapped.example.com": ["::ffff:10.0.0.1"],
    "cgnat.example.com": ["100.64.1.1"],
    "wire.example.com": ["168.63.129.16"],
    "scoped.example.com": ["fe80::1%eth0"],
}

HOSTILE = [
    # the review's three
    "http://169.254.169.254", "https://127.0.0.1", "https://localhost",
    # link-local, loopback, private, CGNAT, unspecified, Azure's wire server
    "https://169.254.169.254", "https://169.254.1.1", "https://127.0.0.2", "https://10.0.0.1",
    "https://172.16.0.1", "https://172.31.255.254", "https://192.168.0.1", "https://100.64.0.1",
    "https://0.0.0.0", "https://168.63.129.16",
    # IPv6 forms
    "https://[::1]", "https://[::]", "https://[fe80::1]", "https://[fd00::1]", "https://[fc00::1]",
    "https://[::ffff:127.0.0.1]", "https://[::ffff:a9fe:a9fe]", "https://[::ffff:10.0.0.1]",
    "https://[64:ff9b::a9fe:a9fe]", "https://[2002:a9fe:a9fe::]", "https://[::127.0.0.1]",
    # decimal, octal, hex and short IPv4 notations
    "https://2130706433", "https://2852039166", "https://0177.0.0.1", "https://0x7f.0.0.1",
    "https://0xa9fea9fe", "https://127.1", "https://10.1", "https://017700000001",
    # local names
    "https://localhost.", "https://a.localhost", "https://metadata.google.internal", "https://printer.local",
    "https://intranet",
    # DNS names resolving to private addresses (fake resolver), or to nothing
    "https://internal.example.com", "https://imds.example.com", "https://loop.example.com",
    "https://mixed.example.com", "https://ula.example.com", "https://mapped.example.com",
    "https://cgnat.example.com", "https://wire.example.com", "https://scoped.example.com",
    "https://does-not-resolve.example.com",
    # other tricks
    "https://user:pw@good.example.com", "https://good.example.com@127.0.0.1", "http://good.example.com",
]


def fake_resolver(host: str, port: int) -> list[str]:
    if host not in FAKE_DNS:
        raise UnsafeUrl(f"the endpoint's host {host!r} does not resolve")
    return FAKE_DNS[host]


@dataclass(frozen=True)
class Feature:
    """One URL-taking feature: how to register a URL over the API, how many are stored,
    and how to make it call its registered URL once (returns an error text, or None if sent)."""

    register: Callable[[Platform, object, str], object]  # -> the HTTP response
    stored: Callable[[Platform], int]
    call: Callable[[Platform, str], str | None]
    use_resolver: Callable[[Platform, Callable[[str, int], list[str]]], None]


_OPERATORS = PerPlatform()


def _ceremony(platform: Platform, client):  # type: ignore[no-untyped-def]
    """Partner configuration is a platform act: two operators approve it (tests/operators.py)."""
    from tests.operators import Ceremony, add_operators

    return Ceremony(client, _OPERATORS.get(platform, lambda: add_operators(platform, 2)))


def _register_webhook(platform, client, url):  # type: ignore[no-untyped-def]
    from tests.conftest import make_tenant

    if not platform.tenants.exists("acme"):
        make_tenant(platform, "acme")
    admin = platform.keys.issue("acme", Role.TENANT_ADMIN, None).secret_key
    return client.post("/v1/webhooks/endpoints", headers=auth(admin),
                       json={"url": url, "eventTypes": ["ruleset.activated"]})


def _call_webhook(platform, url):  # type: ignore[no-untyped-def]
    platform.webhooks.rule_set_activated("acme", "rs1", 1)
    platform.webhook_worker.run_once()
    [endpoint] = platform.webhooks.list("acme")
    [attempt] = platform.webhooks.attempts("acme", endpoint["id"])
    return attempt.get("error")


def _register_partner(platform, client, url):  # type: ignore[no-untyped-def]
    return _ceremony(platform, client).act("PUT", "/v1/platform/partners/p1",
                                           {"baseUrl": url, "timeoutSeconds": 1, "maxAttempts": 1})


def _call_partner(platform, url):  # type: ignore[no-untyped-def]
    try:
        platform.spend.partners.port("p1").fulfil(PartnerRequest("p1", "reward", "red-1", "acme", "c1", 10))
    except PartnerCallFailed as failure:
        return failure.message
    return None


def _set_webhook_resolver(platform, resolver):  # type: ignore[no-untyped-def]
    platform.webhooks.resolver = resolver


def _set_partner_resolver(platform, resolver):  # type: ignore[no-untyped-def]
    platform.spend.partners.resolver = resolver


FEATURES = {
    "webhook endpoint url": Feature(_register_webhook, lambda p: len(p.webhooks.list("acme")) if
                                    p.tenants.exists("acme") else 0, _call_webhook, _set_webhook_resolver),
    "partner baseUrl": Feature(_register_partner, lambda p: len(p.spend.partners.list()), _call_partner,
                               _set_partner_resolver),
}


@pytest.fixture
def guarded(platform: Platform) -> Platform:
    """The platform with the fake resolver on every feature and no allowance anywhere."""
    for feature in FEATURES.values():
        feature.use_resolver(platform, fake_resolver)
    assert platform.webhooks.allowance is None and getattr(platform.spend.partners, "allowance", None) is None
    return platform


@pytest.mark.parametrize("url", HOSTILE)
@pytest.mark.parametrize("name", FEATURES)
def test_registration_refuses_every_hostile_url_and_stores_nothing(name, url, guarded, client) -> None:
    feature = FEATURES[name]
    response = feature.register(guarded, client, url)
    assert response.status_code == 422, f"{name} accepted {url}: {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert feature.stored(guarded) == 0


@pytest.mark.parametrize("name", FEATURES)
def test_a_public_url_is_accepted(name, guarded, client) -> None:
    feature = FEATURES[name]
    response = feature.register(guarded, client, "https://good.example.com/in")
    assert response.status_code in (200, 201), response.text
    assert feature.stored(guarded) == 1


@pytest.fixture
def listener() -> Iterator[tuple[int, list[int]]]:
    """A TCP listener on 127.0.0.1 that only counts connections: where a rebinding would lead."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    accepted: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            accepted.append(1)
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join(timeout=2)
    server.close()


@pytest.mark.parametrize("name", FEATURES)
def test_at_connection_a_name_now_resolving_to_loopback_is_refused_and_nothing_is_sent(
        name, guarded, client, listener) -> None:
    """DNS rebinding: public at registration, 127.0.0.1 (where a listener waits) at the call."""
    port, accepted = listener
    feature = FEATURES[name]
    answers = {"rebind.example.com": [PUBLIC]}
    feature.use_resolver(guarded, lambda host, p: answers[host])
    url = f"https://rebind.example.com:{port}/in"
    assert feature.register(guarded, client, url).status_code in (200, 201)
    answers["rebind.example.com"] = ["127.0.0.1"]
    error = feature.call(guarded, url)
    assert error is not None and "SSRF" in error, error
    assert accepted == [], "the call reached the address the guard refused"


def test_a_partner_call_connects_to_the_checked_address_with_the_name_as_host(platform, client) -> None:
    """The pinned connection: the name resolves (fake DNS) to 127.0.0.1, allowed by the test-only
    allowance; the partner receives the request there, with the name in the Host header."""
    from http.server import ThreadingHTTPServer

    from tests.unit.spend.conftest import FakePartner, _handler  # the spending tests' fake partner

    fake = FakePartner()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        platform.spend.partners.resolver = lambda host, p: {"air.partner.example": ["127.0.0.1"]}[host]
        platform.spend.partners.allowance = TestAllowance(frozenset({"127.0.0.1"}))
        saved = _register_partner(platform, client, f"http://air.partner.example:{port}")
        assert saved.status_code == 200, saved.text
        assert _call_partner(platform, "") is None
        assert len(fake.calls) == 1 and fake.hosts == [f"air.partner.example:{port}"]
    finally:
        server.shutdown()
        server.server_close()
