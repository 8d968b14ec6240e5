"""Endpoint URLs in their RFC 3986 form: what is stored is what goes on the wire.

``normalise_url`` percent-encodes (as UTF-8) every character of the path and
query that RFC 3986 does not allow there: non-ASCII letters (``/café`` becomes
``/caf%C3%A9``), the printable ASCII characters outside the grammar
(``" < > ^ ` { | }``) and a ``%`` that does not start an escape. What is
already legal, escapes included, is left exactly as it was, so normalising
twice changes nothing and an ASCII URL registered before stays byte for byte.

An internationalised host name is written in its IDNA form (``bücher.example``
becomes ``xn--bcher-kva.example``), the form the guard resolves and sends.

It does not judge the URL: whitespace, control characters, backslashes,
credentials, fragments and the host itself are left for the SSRF guard
(``shared.webhooks.ssrf``) to refuse or accept. Normalising first means a URL the service
accepted can always be written on a request line; before, a non-ASCII path was
accepted at registration and could never be sent.
"""

from __future__ import annotations

import string
from urllib.parse import urlsplit, urlunsplit

# RFC 3986, section 3.3 and 3.4: pchar = unreserved / pct-encoded / sub-delims / ":" / "@";
# a path adds "/", a query adds "/" and "?".
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_SUB_DELIMS = frozenset("!$&'()*+,;=")
_PATH_OK = _UNRESERVED | _SUB_DELIMS | frozenset(":@/")
_QUERY_OK = _PATH_OK | frozenset("?")
_HEX = frozenset(string.hexdigits)
# Left alone for the guard to refuse (see the module docstring).
_LEFT_FOR_THE_GUARD = frozenset(chr(c) for c in range(0x21)) | frozenset("\x7f\\#")


def _encode(part: str, allowed: frozenset[str]) -> str:
    out: list[str] = []
    for index, char in enumerate(part):
        if char in allowed or char in _LEFT_FOR_THE_GUARD:
            out.append(char)
        elif char == "%" and len(part) >= index + 3 and part[index + 1] in _HEX and part[index + 2] in _HEX:
            out.append(char)  # an escape already
        else:
            out.append("".join(f"%{byte:02X}" for byte in char.encode("utf-8", errors="surrogatepass")))
    return "".join(out)


def normalise_url(url: str) -> str:
    """``url`` with its path and query percent-encoded per RFC 3986 (see the module docstring)."""
    if not isinstance(url, str):
        return url  # the guard refuses it with a clear message
    try:
        parts = urlsplit(url)
    except ValueError:
        return url  # malformed: the guard says why
    netloc = _ascii_netloc(parts.netloc)
    path, query = _encode(parts.path, _PATH_OK), _encode(parts.query, _QUERY_OK)
    if netloc == parts.netloc and path == parts.path and query == parts.query:
        return url  # already in form: never rewritten, not even cosmetically
    assert (path + query).isascii(), "an encoded path and query are ASCII"
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


def _ascii_netloc(netloc: str) -> str:
    """An internationalised host name in its IDNA (A-label) form, as the guard resolves it;
    anything else (ASCII already, credentials, not a valid name) is left for the guard."""
    if netloc.isascii() or "@" in netloc or "[" in netloc:
        return netloc
    host, colon, port = netloc.rpartition(":") if netloc.count(":") == 1 else (netloc, "", "")
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return netloc
    return ascii_host + colon + port
