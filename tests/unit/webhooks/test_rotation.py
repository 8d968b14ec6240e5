"""Secret rotation: a message never carries more than two signatures (the newest secret
and the one it replaced, during its grace), and every one verifies with the reference
receiver (``standardwebhooks``). The outside review rotated three times within a grace
period and got four signatures on every message."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from shared.store.layout import WEBHOOK_ENDPOINTS
from shared.webhooks.signing import format_secret, signature_header


def _signatures(received) -> list[str]:  # type: ignore[no-untyped-def]
    return received.headers["webhook-signature"].split(" ")


def test_three_rotations_in_a_row_sign_with_at_most_two_secrets(platform, tenant, receiver, allow_loopback,
                                                                clock) -> None:
    view, first = platform.webhooks.register("acme", receiver.url + "/rot", ["ruleset.activated"])
    secrets = [first]
    for version in range(1, 5):
        if version > 1:  # three rotations, each well inside the previous one's grace period
            _, fresh = platform.webhooks.rotate_secret("acme", view["id"], timedelta(hours=24))
            secrets.append(fresh)
            clock.advance(timedelta(minutes=5))
        platform.webhooks.rule_set_activated("acme", "rs1", version)
        assert platform.webhook_worker.run_once().succeeded == 1
        got = receiver.received[-1]
        assert 1 <= len(_signatures(got)) <= 2
        Webhook(secrets[-1]).verify(got.body, got.headers)  # the newest always verifies
        if len(secrets) > 1:
            Webhook(secrets[-2]).verify(got.body, got.headers)  # the one it replaced, during its grace
        for retired in secrets[:-2]:
            with pytest.raises(WebhookVerificationError):
                Webhook(retired).verify(got.body, got.headers)
    assert len(receiver.received) == 4
    stored = platform.store.read(WEBHOOK_ENDPOINTS, "acme", view["id"])
    assert [s["version"] for s in stored["secrets"]] == [4, 3]  # the retired ones are gone, sealed copies too
    assert [s["version"] for s in platform.webhooks.get("acme", view["id"])["secrets"]] == [4, 3]


def test_a_zero_grace_rotation_retires_the_old_secret_at_once(platform, tenant, receiver, allow_loopback) -> None:
    view, old = platform.webhooks.register("acme", receiver.url + "/z", ["ruleset.activated"])
    _, new = platform.webhooks.rotate_secret("acme", view["id"], timedelta(0))
    platform.webhooks.rule_set_activated("acme", "rs1", 1)
    platform.webhook_worker.run_once()
    got = receiver.received[-1]
    assert len(_signatures(got)) == 1
    Webhook(new).verify(got.body, got.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(got.body, got.headers)


def test_an_endpoint_stored_with_three_live_secrets_signs_with_the_two_newest(platform, tenant, receiver,
                                                                              allow_loopback, clock) -> None:
    """Endpoints rotated before the fix may rest with more live secrets: still two signatures."""
    view, _ = platform.webhooks.register("acme", receiver.url + "/legacy", ["ruleset.activated"])
    doc = platform.store.read(WEBHOOK_ENDPOINTS, "acme", view["id"])
    _, second = platform.webhooks.rotate_secret("acme", view["id"], timedelta(hours=24))
    _, third = platform.webhooks.rotate_secret("acme", view["id"], timedelta(hours=24))
    now_doc = platform.store.read(WEBHOOK_ENDPOINTS, "acme", view["id"])
    grace = (clock.now() + timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    legacy = ([s for s in now_doc["secrets"] if s["version"] != 1]
              + [dict(doc["secrets"][0], expiresAt=grace)])  # v3, v2, v1: as the old rotation kept them
    platform.store.upsert(WEBHOOK_ENDPOINTS, dict(now_doc, secrets=legacy))
    platform.webhooks.rule_set_activated("acme", "rs1", 1)
    assert platform.webhook_worker.run_once().succeeded == 1
    got = receiver.received[-1]
    assert len(_signatures(got)) == 2
    Webhook(third).verify(got.body, got.headers)
    Webhook(second).verify(got.body, got.headers)


Step = tuple[str, int]
STEPS = st.lists(st.one_of(st.tuples(st.just("rotate"), st.sampled_from([0, 60, 3600, 24 * 3600, 7 * 24 * 3600])),
                           st.tuples(st.just("wait"), st.integers(1, 8 * 24 * 3600))), min_size=1, max_size=8)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_any_rotation_sequence_signs_with_the_newest_and_at_most_one_predecessor(platform, tenant, clock,
                                                                                steps: list[Step]) -> None:
    platform.webhooks.resolver = lambda host, port: ["93.184.216.34"]
    view, current = platform.webhooks.register("acme", "https://hooks.example.com/p", ["ruleset.activated"])
    previous: tuple[str, object] | None = None  # (secret, its end of grace)
    try:
        for kind, amount in steps:
            if kind == "rotate":
                _, fresh = platform.webhooks.rotate_secret("acme", view["id"], timedelta(seconds=amount))
                previous = (current, clock.now() + timedelta(seconds=amount)) if amount else None
                current = fresh
            else:
                clock.advance(timedelta(seconds=amount))
            doc = platform.webhooks.get("acme", view["id"])
            assert len(doc["secrets"]) <= 2
            live = platform.webhooks.live_secrets(doc, clock.now())
            expected = [current] + ([previous[0]] if previous and previous[1] > clock.now() else [])
            assert [format_secret(raw) for raw in live] == expected
            stamp = int(time.time())  # the reference receiver compares it with its own clock
            header = signature_header(live, "msg_x", stamp, b"{}")
            assert len(header.split(" ")) == len(expected) <= 2
            headers = {"webhook-id": "msg_x", "webhook-timestamp": str(stamp), "webhook-signature": header}
            for secret in expected:
                Webhook(secret).verify(b"{}", headers)
    finally:
        platform.webhooks.delete("acme", view["id"])
