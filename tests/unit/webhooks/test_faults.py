"""Endpoints that hang, drip, send huge bodies or reset: bounded, and no stall for others."""

from __future__ import annotations

import socket
import time

from tests.unit.webhooks.conftest import wait_for


def test_a_hung_endpoint_does_not_stall_another_tenant(platform, tenant, other_tenant, receiver,
                                                       allow_loopback) -> None:
    def hang(handler):  # type: ignore[no-untyped-def]
        time.sleep(3)
        return (200, {}, b"late")

    receiver.behaviour["/hang"] = hang
    receiver.behaviour["/huge"] = lambda h: (200, {}, b"x" * (5 * 1024 * 1024))

    def reset(handler):  # type: ignore[no-untyped-def]
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        handler.connection.close()
        return None

    receiver.behaviour["/reset"] = reset
    platform.webhooks.register("acme", receiver.url + "/hang", ["ruleset.activated"])
    platform.webhooks.register("acme", receiver.url + "/huge", ["ruleset.activated"])
    platform.webhooks.register("acme", receiver.url + "/reset", ["ruleset.activated"])
    platform.webhooks.register("globex", receiver.url + "/fine", ["ruleset.activated"])
    for version in range(1, 6):
        platform.webhooks.rule_set_activated("acme", "rs", version)
    platform.webhooks.rule_set_activated("globex", "rs", 1)
    started = time.monotonic()
    report = platform.webhook_worker.run_once()
    elapsed = time.monotonic() - started
    # The hung endpoint's lanes stop after their first timeout (deadline 2 s): 2 lanes in parallel.
    assert elapsed < 6, elapsed
    paths = [r.path for r in receiver.received]
    assert "/fine" in paths
    hang_attempts = [a for a in platform.webhooks.attempts("acme") if a["url"].endswith("/hang")]
    assert len(hang_attempts) == 2 and all("timeout" in a["error"] for a in hang_attempts)
    huge = [a for a in platform.webhooks.attempts("acme") if a["url"].endswith("/huge")]
    assert huge and all(a["succeeded"] for a in huge)
    resets = [a for a in platform.webhooks.attempts("acme") if a["url"].endswith("/reset")]
    assert resets and all(not a["succeeded"] and a["status"] is None for a in resets)
    assert report.sent >= 6
