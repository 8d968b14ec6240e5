"""Kept-alive connections (shared/webhooks/http.py): deliveries to one endpoint reuse a
connection, and a pooled connection never lets a delivery past the SSRF guard: the guard
runs before every attempt and the pool is chosen by the address it checked."""

from __future__ import annotations

from shared.webhooks.ssrf import TestAllowance

NAME = "hooks.pool.example"


def _resolving(platform, answer: list[str]) -> None:  # type: ignore[no-untyped-def]
    platform.webhooks.resolver = lambda host, port: list(answer)


def _client_ports(receiver, path: str) -> list[int]:  # type: ignore[no-untyped-def]
    ports: list[int] = []

    def note(handler):  # type: ignore[no-untyped-def]
        ports.append(handler.client_address[1])
        return 204, {}, b""

    receiver.behaviour[path] = note
    return ports


def test_deliveries_to_one_endpoint_reuse_a_kept_alive_connection(platform, tenant, receiver,
                                                                    allow_loopback) -> None:  # type: ignore[no-untyped-def]
    ports = _client_ports(receiver, "/keep")
    platform.webhooks.register("acme", receiver.url + "/keep", ["ruleset.activated"])
    platform.webhook_worker.per_endpoint_concurrency = 1
    for version in range(1, 11):
        platform.webhooks.rule_set_activated("acme", "rs1", version)
    report = platform.webhook_worker.drain()
    assert report.succeeded == 10 and len(ports) == 10
    assert len(set(ports)) == 1  # one connection for all ten


def test_a_pooled_connection_cannot_bypass_the_guard(platform, tenant, receiver, allow_loopback) -> None:  # type: ignore[no-untyped-def]
    """A live connection to an allowed address exists; then the name resolves to a private
    address: the next delivery is refused by the guard and nothing reaches the receiver."""
    _resolving(platform, ["127.0.0.1"])
    view, _ = platform.webhooks.register("acme", f"http://{NAME}:{receiver.port}/p", ["ruleset.activated"])
    platform.webhooks.rule_set_activated("acme", "rs1", 1)
    assert platform.webhook_worker.run_once().succeeded == 1
    sender = platform.webhook_worker._sender  # noqa: SLF001
    assert sender.destinations() == [("http", NAME, receiver.port, "127.0.0.1")]  # its connection is kept

    _resolving(platform, ["10.0.0.1"])  # rebinding to a private address
    second = platform.webhooks.rule_set_activated("acme", "rs1", 2)
    report = platform.webhook_worker.run_once()
    assert report.failed == 1 and report.succeeded == 0
    assert len(receiver.received) == 1  # the first delivery only
    [refused] = platform.webhooks.attempts("acme", view["id"], second)
    assert "SSRF" in refused["error"]

    # The allowance withdrawn (the name resolves to the loopback address again): refused too,
    # though a connection to that very address is still in the pool.
    _resolving(platform, ["127.0.0.1"])
    platform.webhooks.allowance = TestAllowance(frozenset())
    platform.webhooks.rule_set_activated("acme", "rs1", 3)
    assert platform.webhook_worker.run_once().succeeded == 0
    assert len(receiver.received) == 1


def test_a_name_that_moves_gets_a_connection_to_its_new_address(platform, tenant, receiver) -> None:  # type: ignore[no-untyped-def]
    """Rebinding to another allowed address: the delivery connects to the newly checked
    address (nothing listens there: connection refused), never through the connection kept
    to the old one."""
    platform.webhooks.allowance = TestAllowance(frozenset({"127.0.0.1", "127.0.0.2"}))
    platform.webhook_worker._sender.deadline = 2.0  # noqa: SLF001
    _resolving(platform, ["127.0.0.1"])
    view, _ = platform.webhooks.register("acme", f"http://{NAME}:{receiver.port}/m", ["ruleset.activated"])
    platform.webhooks.rule_set_activated("acme", "rs1", 1)
    assert platform.webhook_worker.run_once().succeeded == 1
    _resolving(platform, ["127.0.0.2"])  # the receiver listens on 127.0.0.1 only
    second = platform.webhooks.rule_set_activated("acme", "rs1", 2)
    report = platform.webhook_worker.run_once()
    assert report.failed == 1 and len(receiver.received) == 1
    [refused] = platform.webhooks.attempts("acme", view["id"], second)
    assert refused["status"] is None and "SSRF" not in refused["error"]  # sent to 127.0.0.2, refused there
    sender = platform.webhook_worker._sender  # noqa: SLF001
    assert set(sender.destinations()) == {("http", NAME, receiver.port, "127.0.0.1"),
                                          ("http", NAME, receiver.port, "127.0.0.2")}
