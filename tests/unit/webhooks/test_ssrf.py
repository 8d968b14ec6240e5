"""The SSRF guard, by a table of bypass attempts; and the pinned connection."""

from __future__ import annotations

import ipaddress

import pytest

from shared.webhooks.ssrf import TestAllowance, UnsafeUrl, check_url, is_public


def public_resolver(host, port):  # type: ignore[no-untyped-def]
    return ["93.184.216.34"]


REFUSED = [
    "http://example.com/hook",  # not https
    "ftp://example.com/",
    "https://127.0.0.1/", "https://2130706433/", "https://0177.0.0.1/", "https://0x7f.1/", "https://0x7f000001/",
    "https://127.1/", "https://[::1]/", "https://[::ffff:127.0.0.1]/", "https://[::ffff:7f00:1]/",
    "https://[::127.0.0.1]/", "https://[64:ff9b::7f00:1]/", "https://[2002:7f00:1::]/", "https://[fc00::1]/",
    "https://[fe80::1]/", "https://[ff02::1]/", "https://localhost/", "https://localhost./", "https://a.localhost/",
    "https://metadata.google.internal/", "https://169.254.169.254/latest/meta-data", "https://168.63.129.16/",
    "https://100.64.0.1/", "https://10.0.0.1/", "https://192.168.1.1/", "https://172.16.0.1/", "https://0.0.0.0/",
    "https://224.0.0.1/", "https://240.0.0.1/", "https://192.0.2.1/", "https://198.51.100.7/",
    "https://203.0.113.9/", "https://198.18.0.1/", "https://user:pass@example.com/", "https://example.com@10.0.0.1/",
    "https://example.com/#frag", "https://example.com:0/", "https://exa mple.com/", "https:///nohost",
    "https://example.com/" + "a" * 2100, "https://intranet/", "https://[::]/",
]


@pytest.mark.parametrize("url", REFUSED)
def test_bypass_attempts_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        check_url(url, public_resolver)


@pytest.mark.parametrize("answer", [["10.0.0.7"], ["93.184.216.34", "127.0.0.1"], ["::ffff:169.254.169.254"],
                                    ["fd00::1"], ["168.63.129.16"], ["100.100.100.100"], ["fe80::1%eth0"]])
def test_a_name_resolving_to_any_private_address_is_refused(answer) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnsafeUrl):
        check_url("https://hooks.example.com/x", lambda h, p: answer)


def test_unresolvable_names_are_refused() -> None:
    with pytest.raises(UnsafeUrl):
        check_url("https://does-not-exist.invalid/")


def test_a_public_name_is_pinned_to_the_checked_address() -> None:
    target = check_url("https://hooks.example.com:8443/in?x=1", public_resolver)
    assert (target.address, target.host, target.port, target.target) == ("93.184.216.34", "hooks.example.com", 8443,
                                                                         "/in?x=1")
    assert target.host_header == "hooks.example.com:8443"


def test_the_allowance_is_explicit_and_narrow() -> None:
    allowance = TestAllowance(frozenset({"127.0.0.1"}))
    assert check_url("http://127.0.0.1:9/h", allowance=allowance).address == "127.0.0.1"
    with pytest.raises(UnsafeUrl):
        check_url("http://127.0.0.2:9/h", allowance=allowance)
    with pytest.raises(UnsafeUrl):
        check_url("http://127.0.0.1:9/h")


def test_public_addresses_pass() -> None:
    for text in ("93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"):
        assert is_public(ipaddress.ip_address(text))


def test_dns_rebinding_gets_nothing(platform, tenant, receiver, allow_loopback) -> None:  # type: ignore[no-untyped-def]
    """A name that resolved to a public address at registration and to a private one at
    delivery is refused at delivery; the sender never looks the name up itself."""
    answers = iter([["93.184.216.34"], ["10.0.0.1"]])
    platform.webhooks.resolver = lambda host, port: next(answers)
    view, _ = platform.webhooks.register("acme", "https://rebind.example.com/h", ["ruleset.activated"])
    platform.webhooks.rule_set_activated("acme", "rs1", 1)
    report = platform.webhook_worker.run_once()
    assert report.failed == 1 and not receiver.received
    [attempt] = platform.webhooks.attempts("acme", view["id"])
    assert "SSRF" in attempt["error"]


def test_registration_refuses_private_targets_via_api(client, tenant) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import auth

    response = client.post("/v1/webhooks/endpoints", headers=auth(tenant.admin),
                           json={"url": "https://169.254.169.254/", "eventTypes": ["transaction.committed"]})
    assert response.status_code == 422
