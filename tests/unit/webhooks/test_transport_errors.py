"""Whatever goes wrong while sending becomes a recorded failed attempt with the next
retry scheduled: never a delivery left ``pending`` with no attempt (the outside
review's ``https://.../café``, which registered and then failed outside the
sender's error handling on every round). And URLs are stored in RFC 3986 form."""

from __future__ import annotations

import ssl
from datetime import timedelta

import httpcore
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.clock import parse_iso
from shared.errors import ValidationFailed
from shared.store.layout import WEBHOOK_DELIVERIES, WEBHOOK_ENDPOINTS
from shared.store.port import Query
from shared.webhooks.delivery import JITTER, SCHEDULE
from shared.webhooks.http import HttpResult, PinnedSender
from shared.webhooks.service import delivery_pk
from shared.webhooks.ssrf import Target
from shared.webhooks.urls import normalise_url


class _Custom(Exception):
    pass


# Every kind of trouble a transport (ours, an SDK's, a bug) can raise.
RAISED = [
    UnicodeEncodeError("ascii", "café", 3, 4, "ordinal not in range(128)"),
    UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
    ValueError("bad value"), TypeError("bad type"), KeyError("missing"), AttributeError("no such attribute"),
    AssertionError("broken invariant"), RuntimeError("runtime"), ZeroDivisionError("division"),
    RecursionError("too deep"), OSError(99, "cannot assign requested address"), ConnectionResetError(104, "reset"),
    TimeoutError("timed out"), ssl.SSLError("bad record"), httpcore.LocalProtocolError("illegal header"),
    httpcore.RemoteProtocolError("garbage"), httpcore.UnsupportedProtocol("gopher"), httpcore.PoolTimeout("pool"),
    NotImplementedError("later"), MemoryError(), _Custom("anything at all"),
]


class RaisingSender(PinnedSender):
    """The transport, made to raise: the worker's only view of it is ``post``."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(deadline=1.0)
        self.exc = exc
        self.calls = 0

    def post(self, target, body, headers):  # type: ignore[no-untyped-def]
        self.calls += 1
        raise self.exc


def _the_delivery(platform, endpoint_id: str) -> dict:  # type: ignore[no-untyped-def]
    [doc] = platform.store.query(WEBHOOK_DELIVERIES, Query(pk=delivery_pk("acme", endpoint_id)))
    return doc


def _assert_failed_attempt_and_retry(platform, clock, endpoint_id: str, what: str) -> None:  # type: ignore[no-untyped-def]
    [attempt] = platform.webhooks.attempts("acme", endpoint_id)
    assert attempt["succeeded"] is False and attempt["status"] is None and attempt["attempt"] == 1
    assert what in attempt["error"]
    delivery = _the_delivery(platform, endpoint_id)
    assert delivery["status"] == "pending" and delivery["attempts"] == 1 and what in delivery["lastError"]
    delay = (parse_iso(delivery["nextAttemptAt"]) - clock.now()).total_seconds()
    assert SCHEDULE[0] * (1 - JITTER) - 0.01 <= delay <= SCHEDULE[0] * (1 + JITTER) + 0.01  # the schedule, not a lease


@pytest.mark.parametrize("exc", RAISED, ids=lambda e: type(e).__name__)
def test_any_exception_of_the_transport_is_a_recorded_failed_attempt(platform, tenant, receiver, allow_loopback,
                                                                    clock, exc) -> None:
    view, _ = platform.webhooks.register("acme", receiver.url + "/t", ["ruleset.activated"])
    sender = RaisingSender(exc)
    platform.webhook_worker._sender = sender
    platform.webhooks.rule_set_activated("acme", "rs1", 1)
    report = platform.webhook_worker.run_once()
    assert sender.calls == 1 and report.sent == 1 and report.failed == 1
    _assert_failed_attempt_and_retry(platform, clock, view["id"], type(exc).__name__)
    # ... and the next attempt comes on the schedule, and is recorded too.
    assert platform.webhook_worker.run_once().sent == 0
    clock.advance(timedelta(seconds=SCHEDULE[0] * 1.2))
    assert platform.webhook_worker.run_once().failed == 1
    assert [a["attempt"] for a in platform.webhooks.attempts("acme", view["id"])] == [2, 1]


@pytest.mark.parametrize("exc", [ValueError("resolver bug"), OSError("resolver down"), _Custom("odd")],
                         ids=lambda e: type(e).__name__)
def test_any_exception_of_the_resolver_at_delivery_is_a_recorded_failed_attempt(platform, tenant, receiver,
                                                                               allow_loopback, clock, exc) -> None:
    view, _ = platform.webhooks.register("acme", receiver.url + "/r", ["ruleset.activated"])
    platform.webhooks.rule_set_activated("acme", "rs1", 1)

    def broken(host, port):  # type: ignore[no-untyped-def]
        raise exc

    platform.webhooks.resolver = broken
    # A name, so the resolver is asked (a literal address is not resolved).
    doc = platform.store.read(WEBHOOK_ENDPOINTS, "acme", view["id"])
    platform.store.upsert(WEBHOOK_ENDPOINTS, dict(doc, url=f"http://receiver.example:{receiver.port}/r"))
    platform.webhooks.cache.invalidate("acme")
    assert platform.webhook_worker.run_once().failed == 1
    _assert_failed_attempt_and_retry(platform, clock, view["id"], type(exc).__name__)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="#\\"), max_size=12),
       query=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="#\\"), max_size=12))
def test_the_sender_never_raises_whatever_the_target(receiver, path: str, query: str) -> None:
    """The sender's own contract: an answer or an error result, for any path, query and header value."""
    target = Target(url="x", scheme="http", host="127.0.0.1", port=receiver.port, address="127.0.0.1",
                    target="/" + path + (f"?{query}" if query else ""))
    result = PinnedSender(deadline=1.0).post(target, b"{}", {"webhook-id": "msg_" + path})
    assert isinstance(result, HttpResult)
    assert (result.status is not None) or result.error


def test_a_non_ascii_url_is_stored_percent_encoded_and_delivered(platform, tenant, receiver, allow_loopback) -> None:
    view, _ = platform.webhooks.register("acme", receiver.url + "/café/ü?name=zoë&x=%41", ["ruleset.activated"])
    assert view["url"] == receiver.url + "/caf%C3%A9/%C3%BC?name=zo%C3%AB&x=%41"
    assert platform.webhooks.get("acme", view["id"])["url"] == view["url"]
    changed = platform.webhooks.update("acme", view["id"], url=receiver.url + "/€")
    assert changed["url"] == receiver.url + "/%E2%82%AC"
    platform.webhooks.rule_set_activated("acme", "rs1", 1)
    assert platform.webhook_worker.run_once().succeeded == 1
    assert [r.path for r in receiver.received] == ["/%E2%82%AC"]


def test_a_non_ascii_url_stored_before_the_fix_is_delivered(platform, tenant, receiver, allow_loopback) -> None:
    view, _ = platform.webhooks.register("acme", receiver.url + "/plain", ["ruleset.activated"])
    doc = platform.store.read(WEBHOOK_ENDPOINTS, "acme", view["id"])
    platform.store.upsert(WEBHOOK_ENDPOINTS, dict(doc, url=receiver.url + "/café"))  # as registered before
    platform.webhooks.cache.invalidate("acme")
    platform.webhooks.rule_set_activated("acme", "rs1", 1)
    assert platform.webhook_worker.run_once().succeeded == 1
    assert [r.path for r in receiver.received] == ["/caf%C3%A9"]


@pytest.mark.parametrize("url", ["https://hooks.example.com/a b", "https://hooks.example.com/a\tb",
                                 "https://hooks.example.com/a\\b", "https://hooks.example.com/x#frag",
                                 "https://hooks.example.com/" + "é" * 700], ids=lambda u: u[:40])
def test_normalising_never_lets_through_what_the_guard_refuses(platform, tenant, url: str) -> None:
    platform.webhooks.resolver = lambda host, port: ["93.184.216.34"]
    with pytest.raises(ValidationFailed):
        platform.webhooks.register("acme", url, ["ruleset.activated"])
    assert platform.webhooks.list("acme") == []


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_normalising_is_idempotent_and_leaves_ascii_urls_alone(tail: str) -> None:
    url = "https://hooks.example.com/" + tail
    once = normalise_url(url)
    assert normalise_url(once) == once
    if all(c.isascii() and (c.isalnum() or c in "-._~!$&'()*+,;=:@/?") for c in tail):
        assert once == url


def test_the_api_answers_with_the_url_as_it_will_be_sent(client, platform, tenant, receiver, allow_loopback) -> None:
    from tests.conftest import auth

    response = client.post("/v1/webhooks/endpoints", headers=auth(tenant.admin),
                           json={"url": receiver.url + "/café", "eventTypes": ["ruleset.activated"]})
    assert response.status_code == 201
    assert response.json()["url"] == receiver.url + "/caf%C3%A9"
    platform.webhooks.rule_set_activated("acme", "rs1", 1)
    assert platform.webhook_worker.run_once().succeeded == 1
    [attempt] = platform.webhooks.attempts("acme", response.json()["id"])
    assert attempt["succeeded"] and attempt["url"] == receiver.url + "/caf%C3%A9"


def test_an_internationalised_host_is_stored_in_its_idna_form(platform, tenant) -> None:
    asked: list[str] = []
    platform.webhooks.resolver = lambda host, port: asked.append(host) or ["93.184.216.34"]
    view, _ = platform.webhooks.register("acme", "https://Bücher.example:8443/é?x=ü", ["ruleset.activated"])
    assert view["url"] == "https://xn--bcher-kva.example:8443/%C3%A9?x=%C3%BC"
    assert asked == ["xn--bcher-kva.example"]
