"""The webhook sender: one POST to a checked address, with hard limits.

Built on ``httpcore`` (what ``httpx`` runs on) with a network backend that
ignores the name it is asked to connect to and connects to the address the
SSRF guard checked (``Target.address``); TLS still verifies the certificate for
the name and sends it as SNI, and the Host header is the name. So the request
goes exactly where the check said it may, whatever DNS answers a second later.

Limits of one attempt:

* ``deadline``: a wall-clock budget for the whole exchange (connect, TLS,
  request, response headers and body), enforced on every socket read and
  write, so a server that drips a byte every few seconds is cut off too;
* redirects are never followed (httpcore does not), a 3xx is a failure;
* at most ``max_response_bytes`` of the response body are read; the rest is
  dropped with the connection (httpcore closes a connection whose response was
  not read to its end: it is never reused).

Connections are kept alive and reused (HTTP/1.1), one pool per **checked
destination**: (scheme, host name, port, checked address). Whom a pooled
connection may reach is fixed when it is opened, so the pool is chosen by the
address the SSRF guard checked for *this* attempt: the guard runs before every
attempt, a refused URL sends nothing (a live connection to a place now refused
is never used), and a name that now resolves elsewhere gets the pool of its new
address, never a connection opened to the old one. Each pool's backend connects
only to its own address (asserted). Idle connections close after
``keepalive_expiry`` seconds; at most ``max_destinations`` pools are kept (the
least recently used one is closed).

``post`` never raises (an ``Exception``): whatever goes wrong, including a
target or header that cannot be encoded, comes back as an ``HttpResult`` with
``status=None`` and an ``error``, which the worker records as a failed attempt.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable

import httpcore
from httpcore._backends.sync import SyncBackend

from shared.webhooks.ssrf import Target

DEFAULT_DEADLINE = 10.0
MAX_DEADLINE = 15.0
MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "Accrue-Webhooks/1"
# Connections kept per destination: the worker sends at most per-endpoint-concurrency
# deliveries to one endpoint at once, and endpoints of one host share its pool.
CONNECTIONS_PER_DESTINATION = 8
KEEPALIVE_EXPIRY = 30.0
MAX_DESTINATIONS = 256

# The deadline of the attempt the current thread is making: a pooled connection outlives
# attempts, so its streams read each attempt's own deadline (httpcore's sync pool runs a
# request entirely on the calling thread).
_attempt = threading.local()


def _deadline() -> float:
    deadline = getattr(_attempt, "deadline", None)
    assert deadline is not None, "a webhook connection is used outside an attempt"
    return deadline


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def _left(self, timeout: float | None, exc: type[Exception]) -> float:
        left = _deadline() - time.monotonic()
        if left <= 0:
            raise exc("the attempt's deadline passed")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, self._left(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class PinnedBackend(httpcore.NetworkBackend):
    """Connects to the checked address whatever host name httpcore asks for."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._sync = SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        left = _deadline() - time.monotonic()
        if left <= 0:
            raise httpcore.ConnectTimeout("the attempt's deadline passed")
        timeout = left if timeout is None else min(timeout, left)
        stream = self._sync.connect_tcp(self.address, port, timeout, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are never a webhook target")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True)
class HttpResult:
    status: int | None  # None: no HTTP answer (connect error, timeout, reset)
    latency_ms: int
    headers: dict[str, str]
    body: bytes  # at most max_response_bytes
    error: str | None = None
    truncated: bool = False


Destination = tuple[str, str, int, str]  # scheme, host name, port, checked address


class PinnedSender:
    def __init__(self, deadline: float = DEFAULT_DEADLINE, max_response_bytes: int = MAX_RESPONSE_BYTES,
                 ssl_context: ssl.SSLContext | None = None, *,
                 connections_per_destination: int = CONNECTIONS_PER_DESTINATION,
                 keepalive_expiry: float = KEEPALIVE_EXPIRY, max_destinations: int = MAX_DESTINATIONS) -> None:
        if not 0 < deadline <= MAX_DEADLINE:
            raise ValueError(f"the delivery deadline must be in (0, {MAX_DEADLINE}] seconds")
        self.deadline = deadline
        self.max_response_bytes = max_response_bytes
        self.connections_per_destination = connections_per_destination
        self.keepalive_expiry = keepalive_expiry
        self.max_destinations = max_destinations
        # Made on first use: loading the system's CA store costs ~100 ms, and many
        # platforms never deliver (a dry run's, shared.dryrun; the API process's).
        self._given_ssl = ssl_context
        self._default_ssl: ssl.SSLContext | None = None
        self._pools: OrderedDict[Destination, httpcore.ConnectionPool] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def _ssl(self) -> ssl.SSLContext:
        if self._given_ssl is not None:
            return self._given_ssl
        with self._lock:
            if self._default_ssl is None:
                self._default_ssl = ssl.create_default_context()
            return self._default_ssl

    def _pool(self, target: Target) -> httpcore.ConnectionPool:
        """The pool of the destination this attempt's check allowed (made if new)."""
        key: Destination = (target.scheme, target.host, target.port, target.address)
        context = self._ssl
        evicted: httpcore.ConnectionPool | None = None
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = httpcore.ConnectionPool(
                    ssl_context=context, max_connections=self.connections_per_destination,
                    max_keepalive_connections=self.connections_per_destination,
                    keepalive_expiry=self.keepalive_expiry, retries=0, network_backend=PinnedBackend(target.address),
                    # httpcore writes the headers and the body separately: without TCP_NODELAY the
                    # body of a reused connection waits for the peer's (delayed) ACK of the headers.
                    socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
                if len(self._pools) > self.max_destinations:
                    _, evicted = self._pools.popitem(last=False)
            else:
                self._pools.move_to_end(key)
        if evicted is not None:
            evicted.close()
        # TIGER_STYLE: a pool's connections reach its own checked address, nothing else.
        assert pool._network_backend.address == target.address  # noqa: SLF001
        return pool

    def destinations(self) -> list[Destination]:
        """The destinations with a pool (tests: what connections may be alive)."""
        with self._lock:
            return list(self._pools)

    def close(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            pools, self._pools = list(self._pools.values()), OrderedDict()
        for pool in pools:
            pool.close()

    def post(self, target: Target, body: bytes, headers: dict[str, str]) -> HttpResult:
        start = time.monotonic()
        _attempt.deadline = start + self.deadline
        timeout = {"connect": self.deadline, "read": self.deadline, "write": self.deadline, "pool": self.deadline}
        try:
            pool = self._pool(target)
            # Inside the try: a target or header that cannot be written (a non-ASCII path
            # stored before URLs were normalised, say) is a failed attempt like any other.
            sent = [(b"Host", target.host_header.encode("ascii")), (b"User-Agent", USER_AGENT.encode()),
                    (b"Content-Type", b"application/json"), (b"Content-Length", str(len(body)).encode())]
            sent += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
            url = httpcore.URL(scheme=target.scheme.encode(), host=target.host.encode("ascii"), port=target.port,
                               target=target.target.encode("ascii", errors="strict"))
            with pool.stream("POST", url, headers=sent, content=body, extensions={"timeout": timeout}) as response:
                received = bytearray()
                truncated = False
                for chunk in response.iter_stream():
                    room = self.max_response_bytes - len(received)
                    received += chunk[:room]
                    if len(chunk) > room:
                        truncated = True  # left unread: httpcore closes this connection, never reuses it
                        break
                answer = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers}
                return HttpResult(response.status, _ms(start), answer, bytes(received), truncated=truncated)
        except httpcore.TimeoutException as exc:
            return HttpResult(None, _ms(start), {}, b"", error=f"timeout: {exc or 'no answer in time'}")
        except (httpcore.NetworkError, httpcore.ProtocolError, ssl.SSLError, OSError) as exc:
            return HttpResult(None, _ms(start), {}, b"", error=f"{type(exc).__name__}: {exc}"[:300])
        except Exception as exc:  # noqa: BLE001 - the contract: post never raises, trouble is a result
            return HttpResult(None, _ms(start), {}, b"", error=f"cannot send: {type(exc).__name__}: {exc}"[:300])
        finally:
            _attempt.deadline = None


def _ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)
