"""SSRF guard of outbound URLs: a URL may only reach the public internet.

One guard for every feature that calls a URL someone registered: webhook
endpoints (``shared.webhooks``) and partner base URLs (``shared.spend.partners``).
A new URL-taking feature uses ``check_url`` and connects to its ``Target.address``,
and joins the table in ``tests/unit/test_outbound_url_guard.py``.

``check_url`` parses the URL strictly, resolves its host once (through an
injectable resolver) and refuses it if *any* resolved address is not public
(``is_public``). It returns a ``Target`` holding the checked address; the
sender (``shared.webhooks.http``) connects to that very address and sends the
name only as the Host header and TLS SNI/certificate name, so there is no
second lookup for DNS rebinding to poison. The check runs at registration and
again at every delivery.

Refused outright: schemes other than ``https``; credentials in the URL;
fragments; URLs over 2048 characters; hosts that are IP literals in any legacy
notation (decimal ``2130706433``, octal ``0177.0.0.1``, hex ``0x7f.1``, short
forms ``127.1``): only canonical dotted quads and bracketed IPv6 are read as
addresses, and then they must be public like any resolved one; names such as
``localhost``, ``*.localhost``, ``*.internal``, ``*.local``; ports outside
1..65535.

Not public (``is_public``): anything Python's ``ipaddress`` does not call
global, plus multicast, unspecified, reserved, 0/8, CGNAT 100.64/10, the
benchmarking 198.18/15, documentation ranges, Azure's wire server
168.63.129.16 and IMDS 169.254.169.254, unique-local fc00::/7, link-local
fe80::/10, site-local fec0::/10; for IPv6 forms that embed an IPv4 address
(IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, NAT64
64:ff9b::/96 and 64:ff9b:1::/48, 6to4 2002::/16, Teredo 2001::/32) the embedded
address is checked too.

The only way past the check is a ``TestAllowance`` handed to the webhook service
or the partner directory by test code: no setting, environment variable or API
field builds one.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field
from typing import Callable, Iterable
from urllib.parse import urlsplit

from shared.errors import ValidationFailed

MAX_URL_LENGTH = 2048

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses the name resolves to (as strings)
Resolver = Callable[[str, int], list[str]]


class UnsafeUrl(ValidationFailed):
    """The endpoint URL may not be used: it is malformed or does not reach the public internet."""

    code = "webhook-url-refused"
    status = 422


_EXTRA_BLOCKED = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32", "168.63.129.16/32",
    "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23",
    "2001:db8::/32", "2002::/16", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
))
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_BLOCKED_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", "metadata.google.internal")
_BLOCKED_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa", ".in-addr.arpa", ".ip6.arpa")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_DOTTED_QUAD = re.compile(r"^(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}$")
_NUMERIC_ISH = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]*))*$")


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 transition form carries, if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if int(address) >> 32 == 0 and int(address) > 1:  # IPv4-compatible ::a.b.c.d (deprecated)
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return False
        inner = embedded_ipv4(address)
        if inner is not None:
            return False  # transition forms are refused whatever they embed (and the embedded one is checked)
    if any(address in net for net in _EXTRA_BLOCKED if net.version == address.version):
        return False
    if (address.is_private or address.is_loopback or address.is_link_local or address.is_multicast
            or address.is_reserved or address.is_unspecified or not address.is_global):
        return False
    return True


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise UnsafeUrl(f"the endpoint's host {host!r} does not resolve: {exc}") from None
    return [info[4][0] for info in infos]


@dataclass(frozen=True)
class TestAllowance:
    """Test-only: lets deliveries reach the listed addresses (e.g. a receiver on
    127.0.0.1) and, if ``allow_http``, plain http. Built only by test code and
    handed to ``WebhookService``; nothing in configuration can produce one."""

    __test__ = False  # not a pytest test class
    addresses: frozenset[str] = field(default_factory=frozenset)
    allow_http: bool = True

    def allows(self, address: Address) -> bool:
        return str(address) in self.addresses


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str  # the name as sent in Host/SNI (IPv6 literals without brackets)
    port: int
    address: str  # the checked address to connect to
    target: str  # path and query, as sent on the request line

    @property
    def host_header(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return shown if self.port == default else f"{shown}:{self.port}"


@dataclass(frozen=True)
class ParsedUrl:
    url: str
    scheme: str
    host: str
    port: int
    literal: Address | None
    target: str


def parse_url(url: str, allowance: TestAllowance | None = None) -> ParsedUrl:
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"the endpoint URL must be 1 to {MAX_URL_LENGTH} characters")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F or c == "\\" for c in url):
        raise UnsafeUrl("the endpoint URL contains whitespace, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"the endpoint URL is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and allowance is not None and allowance.allow_http):
        raise UnsafeUrl("the endpoint URL must use https")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise UnsafeUrl("the endpoint URL may not carry credentials")
    if parts.fragment or "#" in url:
        raise UnsafeUrl("the endpoint URL may not carry a fragment")
    raw_host = parts.hostname
    if not raw_host:
        raise UnsafeUrl("the endpoint URL has no host")
    if port is None:
        port = 443 if scheme == "https" else 80
    if not 1 <= port <= 65535:
        raise UnsafeUrl("the endpoint URL's port must be 1..65535")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    netloc_host = parts.netloc.rsplit("@", 1)[-1]
    if netloc_host.startswith("["):
        try:
            literal: Address | None = ipaddress.IPv6Address(raw_host)
        except ValueError:
            raise UnsafeUrl("the endpoint URL's IPv6 address is malformed") from None
        return ParsedUrl(url, scheme, raw_host, port, literal, target)
    host = raw_host.lower()
    if host.endswith("."):
        host = host[:-1]  # "localhost." is "localhost"
    if _DOTTED_QUAD.match(host):
        return ParsedUrl(url, scheme, host, port, ipaddress.IPv4Address(host), target)
    if _NUMERIC_ISH.match(host) or re.match(r"^[0-9.]+$", host):
        raise UnsafeUrl("the endpoint URL's host is a non-canonical IP address (decimal, octal, hex or short form)")
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise UnsafeUrl("the endpoint URL's host is not a valid domain name") from None
    labels = ascii_host.split(".")
    if len(ascii_host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise UnsafeUrl("the endpoint URL's host is not a valid domain name")
    if len(labels) < 2 or ascii_host in _BLOCKED_NAMES or ascii_host.endswith(_BLOCKED_SUFFIXES):
        raise UnsafeUrl(f"the endpoint URL's host {ascii_host!r} is not a public name")
    return ParsedUrl(url, scheme, ascii_host, port, None, target)


def check_url(url: str, resolver: Resolver | None = None, allowance: TestAllowance | None = None) -> Target:
    """Parse, resolve and check ``url``; the returned target pins the checked address."""
    parsed = parse_url(url, allowance)
    if parsed.literal is not None:
        addresses: Iterable[str] = [str(parsed.literal)]
    else:
        addresses = (resolver or system_resolver)(parsed.host, parsed.port)
    checked: list[Address] = []
    for text in addresses:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0] if "%" in text else text)
            if "%" in text:
                raise UnsafeUrl(f"the endpoint's host resolves to a scoped address {text}")
        except ValueError:
            raise UnsafeUrl(f"the endpoint's host resolved to something that is not an address: {text!r}") from None
        if not (is_public(address) or (allowance is not None and allowance.allows(address))):
            raise UnsafeUrl(f"the endpoint's host {parsed.host!r} resolves to {address}, "
                            "which is not a public internet address")
        checked.append(address)
    if not checked:
        raise UnsafeUrl(f"the endpoint's host {parsed.host!r} does not resolve")
    return Target(url=url, scheme=parsed.scheme, host=parsed.host, port=parsed.port, address=str(checked[0]),
                  target=parsed.target)
