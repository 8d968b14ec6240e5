"""The webhook sender: one POST to a checked address, with hard limits.

Built on the standard library's ``http.client`` (HTTP/1.1) over a socket this
module opens itself to the address the SSRF guard checked (``Target.address``):
the host name is never looked up here; it goes only as the Host header and, for
``https``, as TLS SNI and the name the certificate must be valid for. So the
request goes exactly where the check said it may, whatever DNS answers a second
later. (It replaced ``httpcore``, whose pure-Python HTTP/1.1 exchange cost
~2.8x the CPU per delivery: docs/performance.md, webhooks.)

Limits of one attempt:

* ``deadline``: one wall-clock budget for the whole exchange (waiting for a
  pooled connection, connect, TLS handshake, request, response head and body):
  every blocking socket call gets only what is left of it, so a server that
  drips a byte every few seconds is cut off too;
* redirects are never followed (``http.client`` does not), a 3xx is a failure;
* at most ``max_response_bytes`` of the response body are read; a connection
  whose answer was not read to its end is closed, never reused.

Connections are kept alive and reused, one pool per **checked destination**:
(scheme, host name, port, checked address). Whom a pooled connection may reach
is fixed when it is opened, so the pool is chosen by the address the SSRF guard
checked for *this* attempt: the guard runs before every attempt, a refused URL
sends nothing (a live connection to a place now refused is never used), and a
name that now resolves elsewhere gets the pool of its new address, never a
connection opened to the old one. A pool opens at most
``connections_per_destination`` connections at once; an idle connection is
dropped after ``keepalive_expiry`` seconds, or when the receiver closed it (or
sent anything unasked) while it was idle; at most ``max_destinations`` pools
are kept (the least recently used one is closed).

``post`` never raises (an ``Exception``): whatever goes wrong, including a
target or header that cannot be encoded, comes back as an ``HttpResult`` with
``status=None`` and an ``error``, which the worker records as a failed attempt.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

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


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the attempt's deadline passed")
    return left


class _DeadlineBound:
    """Every blocking call of the socket waits at most what is left of the attempt's deadline
    (``deadline``, a ``time.monotonic`` instant set for each attempt). ``http.client`` reads
    through ``makefile``, whose reads come here as ``recv_into``."""

    deadline = 0.0

    def recv_into(self, buffer, nbytes=0, flags=0):  # type: ignore[no-untyped-def]
        self.settimeout(_left(self.deadline))  # type: ignore[attr-defined]
        return super().recv_into(buffer, nbytes, flags)  # type: ignore[misc]

    def send(self, data, flags=0):  # type: ignore[no-untyped-def]
        self.settimeout(_left(self.deadline))  # type: ignore[attr-defined]
        return super().send(data, flags)  # type: ignore[misc]

    def sendall(self, data, flags=0):  # type: ignore[no-untyped-def]
        # A plain socket's sendall bounds the whole call by the timeout; a TLS socket's
        # calls ``send`` per piece, each bounded above.
        self.settimeout(_left(self.deadline))  # type: ignore[attr-defined]
        return super().sendall(data, flags)  # type: ignore[misc]


class _PlainSocket(_DeadlineBound, socket.socket):
    pass


class _TlsSocket(_DeadlineBound, ssl.SSLSocket):
    pass


class _Connection(http.client.HTTPConnection):
    """One HTTP/1.1 connection to a checked address (opened on its first request)."""

    def __init__(self, scheme: str, host: str, port: int, address: str, context: ssl.SSLContext | None) -> None:
        super().__init__(host, port)
        self.scheme = scheme
        self.address = address
        self.context = context
        self.deadline = 0.0
        self.idle_since = 0.0

    def connect(self) -> None:
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        sock: _DeadlineBound = _PlainSocket(family, socket.SOCK_STREAM)
        sock.deadline = self.deadline
        try:
            # Without TCP_NODELAY a small request on a reused connection can wait for the
            # peer's delayed ACK of the previous one.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[attr-defined]
            sock.settimeout(_left(self.deadline))  # type: ignore[attr-defined]
            sock.connect((self.address, self.port))  # type: ignore[attr-defined]
            if self.scheme == "https":
                assert self.context is not None and self.context.sslsocket_class is _TlsSocket
                # The handshake runs under the timeout just set (what is left of the deadline).
                sock = self.context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[assignment,arg-type]
                sock.deadline = self.deadline
        except BaseException:
            sock.close()  # type: ignore[attr-defined]
            raise
        self.sock = sock

    def arm(self, deadline: float) -> None:
        self.deadline = deadline
        if self.sock is not None:
            self.sock.deadline = deadline

    def reusable_now(self) -> bool:
        """An idle kept-alive connection may carry the next request: still open, and nothing
        (an end of file from a receiver that closed it, or bytes nobody asked for) waiting."""
        sock = self.sock
        if sock is None:
            return False
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable


class _Pool:
    """The connections of one checked destination: at most ``size`` open at once."""

    def __init__(self, destination: "Destination", context: ssl.SSLContext | None, size: int,
                 keepalive_expiry: float) -> None:
        self.destination = destination
        self.address = destination[3]
        self._context = context
        self._keepalive_expiry = keepalive_expiry
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def take(self, deadline: float) -> _Connection:
        if not self._slots.acquire(timeout=_left(deadline)):
            raise TimeoutError("no free connection to this destination in time")
        try:
            now = time.monotonic()
            while True:
                with self._lock:
                    connection = self._idle.pop() if self._idle else None
                if connection is None:
                    scheme, host, port, address = self.destination
                    connection = _Connection(scheme, host, port, address, self._context)
                    break
                if now - connection.idle_since <= self._keepalive_expiry and connection.reusable_now():
                    break
                connection.close()
            # TIGER_STYLE: a pool's connections reach its own checked address, nothing else.
            assert connection.address == self.address and connection.host == self.destination[1]
            connection.arm(deadline)
            return connection
        except BaseException:
            self._slots.release()
            raise

    def give_back(self, connection: _Connection, reusable: bool) -> None:
        try:
            if reusable and connection.sock is not None:
                connection.idle_since = time.monotonic()
                with self._lock:
                    if not self._closed:
                        self._idle.append(connection)
                        return
            connection.close()
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


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
        """``ssl_context``: the TLS settings (tests give one trusting their own authority); its
        ``sslsocket_class`` is set to this module's deadline-bound socket."""
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
        if ssl_context is not None:
            ssl_context.sslsocket_class = _TlsSocket
        self._default_ssl: ssl.SSLContext | None = None
        self._pools: OrderedDict[Destination, _Pool] = OrderedDict()
        self._lock = threading.Lock()

    def _ssl(self, scheme: str) -> ssl.SSLContext | None:
        if scheme != "https":
            return None
        if self._given_ssl is not None:
            return self._given_ssl
        with self._lock:
            if self._default_ssl is None:
                context = ssl.create_default_context()
                context.sslsocket_class = _TlsSocket
                self._default_ssl = context
            return self._default_ssl

    def _pool(self, target: Target) -> _Pool:
        """The pool of the destination this attempt's check allowed (made if new)."""
        key: Destination = (target.scheme, target.host, target.port, target.address)
        context = self._ssl(target.scheme)
        evicted: _Pool | None = None
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = _Pool(key, context, self.connections_per_destination,
                                                self.keepalive_expiry)
                if len(self._pools) > self.max_destinations:
                    _, evicted = self._pools.popitem(last=False)
            else:
                self._pools.move_to_end(key)
        if evicted is not None:
            evicted.close()
        assert pool.address == target.address
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
        deadline = start + self.deadline
        pool: _Pool | None = None
        connection: _Connection | None = None
        reusable = False
        try:
            pool = self._pool(target)
            connection = pool.take(deadline)
            # Inside the try: a target or header that cannot be written (a non-ASCII path
            # stored before URLs were normalised, say) is a failed attempt like any other.
            connection.putrequest("POST", target.target, skip_host=True, skip_accept_encoding=True)
            for name, value in (("Host", target.host_header), ("User-Agent", USER_AGENT),
                                ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                                *headers.items()):
                connection.putheader(name, value)
            connection.endheaders(body)  # head and body in one send
            response = connection.getresponse()
            received = response.read(self.max_response_bytes + 1)
            truncated = len(received) > self.max_response_bytes
            # Reused only if this answer was read to its end and the receiver keeps the connection.
            reusable = not truncated and response.isclosed() and not response.will_close
            answer = {k.lower(): v for k, v in response.getheaders()}
            return HttpResult(response.status, _ms(start), answer, received[:self.max_response_bytes],
                              truncated=truncated)
        except TimeoutError as exc:
            return HttpResult(None, _ms(start), {}, b"", error=f"timeout: {exc or 'no answer in time'}")
        except (http.client.HTTPException, ssl.SSLError, OSError) as exc:
            return HttpResult(None, _ms(start), {}, b"", error=f"{type(exc).__name__}: {exc}"[:300])
        except Exception as exc:  # noqa: BLE001 - the contract: post never raises, trouble is a result
            return HttpResult(None, _ms(start), {}, b"", error=f"cannot send: {type(exc).__name__}: {exc}"[:300])
        finally:
            if connection is not None and pool is not None:
                pool.give_back(connection, reusable)


def _ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)
