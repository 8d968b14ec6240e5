"""Endpoints that hang, drip, send huge bodies or reset: bounded, and no stall for others."""

from __future__ import annotations

import socket
import threading
import time

from tests.unit.webhooks.conftest import wait_for


def test_a_hung_endpoint_does_not_stall_another_tenant(platform, tenant, other_tenant, receiver,
                                                       allow_loopback) -> None:
    fine_arrived = threading.Event()
    fine_during_hang: list[bool] = []

    def hang(handler):  # type: ignore[no-untyped-def]
        # Another tenant's delivery must arrive while this one hangs, well before
        # the sender's 2 s deadline: waiting for it here proves nothing queued behind us.
        started = time.monotonic()
        fine_during_hang.append(fine_arrived.wait(1.5))
        time.sleep(3 - (time.monotonic() - started))  # past the deadline either way
        return (200, {}, b"late")

    def fine(handler):  # type: ignore[no-untyped-def]
        fine_arrived.set()
        return (200, {}, b"ok")

    receiver.behaviour["/hang"] = hang
    receiver.behaviour["/fine"] = fine
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
    report = platform.webhook_worker.run_once()
    assert fine_during_hang and fine_during_hang[0] is True
    paths = [r.path for r in receiver.received]
    assert "/fine" in paths
    hang_attempts = [a for a in platform.webhooks.attempts("acme") if a["url"].endswith("/hang")]
    assert len(hang_attempts) == 2 and all("timeout" in a["error"] for a in hang_attempts)
    huge = [a for a in platform.webhooks.attempts("acme") if a["url"].endswith("/huge")]
    assert huge and all(a["succeeded"] for a in huge)
    resets = [a for a in platform.webhooks.attempts("acme") if a["url"].endswith("/reset")]
    assert resets and all(not a["succeeded"] and a["status"] is None for a in resets)
    assert report.sent >= 6
