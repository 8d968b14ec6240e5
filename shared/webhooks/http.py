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
closed after ``keepalive_expiry`` seconds (``sweep``), and not reused when the
receiver closed it or sent anything unasked, after its answer or while it was
idle; at most ``max_destinations`` pools are kept (the least recently used one
that no attempt is using is closed: a pool in use stays, or a second pool of its
destination would open connections beside it).

An answer is final or it is a failure: an informational one (102, 103, a 101
switch) is a failed attempt and its connection is closed (``http.client`` passes
over 100 only, and the final answer that may follow would be read as the next
request's); an answer that ends before its ``Content-Length`` is a failure too.
A receiver that sends bytes after an answer a moment *after* the sender checked
the idle connection can still have them read as the next answer: HTTP/1.1 has
no way to tell (httpcore had the same window).

``post`` never raises (an ``Exception``): whatever goes wrong, including a
target or header that cannot be encoded, comes back as an ``HttpResult`` with
``status=None`` and an ``error``, which the worker records as a failed attempt.
"""

from __future__ import annotations

import http.client
import io
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


class _Wire:
    """A connection's socket (plain or TLS) as ``http.client`` sees it: every blocking call waits
    at most what is left of the attempt's deadline (``deadline``, a ``time.monotonic`` instant set
    for each attempt), and the reader of each answer notes whether bytes came after its end.

    ``http.client`` uses only ``sendall``, ``makefile`` and ``close``. It closes the connection
    while the answer may still be read (``Connection: close``): the socket then closes when that
    reader does, as a socket's own ``makefile`` would."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline = 0.0
        self.reader: _Reader | None = None
        self._closing = False

    def sendall(self, data: bytes) -> None:
        view = memoryview(data).cast("B")
        while view:
            self.sock.settimeout(_left(self.deadline))
            view = view[self.sock.send(view):]

    def recv_into(self, buffer: memoryview, wait: bool = True) -> int | None:
        """Bytes read into ``buffer`` (0: end of file); ``wait`` False: None when none are there yet."""
        self.sock.settimeout(_left(self.deadline) if wait else 0.0)
        try:
            return self.sock.recv_into(buffer)
        except (BlockingIOError, ssl.SSLWantReadError):
            if wait:
                raise
            return None

    def makefile(self, mode: str, *args: object, **kwargs: object) -> "_Reader":
        assert mode == "rb", mode
        self.reader = _Reader(_Raw(self))
        return self.reader

    def close(self) -> None:
        self._closing = True
        if self.reader is None or self.reader.closed:
            self.sock.close()

    def reader_closed(self) -> None:
        if self._closing:
            self.sock.close()

    def fileno(self) -> int:
        return self.sock.fileno()


class _Raw(io.RawIOBase):
    def __init__(self, wire: _Wire) -> None:
        self.wire = wire
        self.wait = True

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int | None:  # type: ignore[no-untyped-def,override]
        return self.wire.recv_into(memoryview(buffer).cast("B"), self.wait)


class _Reader(io.BufferedReader):
    """One answer's reader. When ``http.client`` closes it (the answer read to its end), it looks,
    without waiting, for anything after the answer, in its buffer or on the socket: such bytes
    would be read as the next request's answer, so the connection is then not reused."""

    surplus = False

    def close(self) -> None:
        if not self.closed:
            raw: _Raw = self.raw  # type: ignore[assignment]
            raw.wait = False
            try:
                self.surplus = bool(self.peek(1))
            except (OSError, ValueError):
                self.surplus = True
            finally:
                raw.wait = True
        super().close()
        self.raw.wire.reader_closed()  # type: ignore[attr-defined]


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
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            # Without TCP_NODELAY a small request on a reused connection can wait for the
            # peer's delayed ACK of the previous one.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(_left(self.deadline))
            sock.connect((self.address, self.port))
            if self.scheme == "https":
                assert self.context is not None
                # The handshake gets what is left after the connect, not what was left before it.
                sock.settimeout(_left(self.deadline))
                sock = self.context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        wire = _Wire(sock)
        wire.deadline = self.deadline
        self.sock = wire  # type: ignore[assignment]

    def arm(self, deadline: float) -> None:
        self.deadline = deadline
        if self.sock is not None:
            self.sock.deadline = deadline  # type: ignore[attr-defined]

    def reusable_now(self) -> bool:
        """An idle kept-alive connection may carry the next request: still open, and nothing
        (an end of file from a receiver that closed it, or bytes nobody asked for) waiting."""
        wire: _Wire | None = self.sock  # type: ignore[assignment]
        if wire is None:
            return False
        sock = wire.sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return False
        try:
            # poll, not select: select refuses descriptors past 1024 (keep-alive silently stopped).
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)
            return not poller.poll(0)
        except (OSError, ValueError):
            return False


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
        # Attempts holding this pool (counted under the sender's lock): a pool in use is never
        # evicted, or a new pool for the same destination would open connections beside its own.
        self.users = 0

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

    def sweep(self, now: float) -> None:
        """Close the idle connections past their keep-alive time."""
        with self._lock:
            stale = [c for c in self._idle if now - c.idle_since > self._keepalive_expiry]
            self._idle = [c for c in self._idle if now - c.idle_since <= self._keepalive_expiry]
        for connection in stale:
            connection.close()

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
        """``ssl_context``: the TLS settings (tests give one trusting their own authority)."""
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
        self._pools: OrderedDict[Destination, _Pool] = OrderedDict()
        self._lock = threading.Lock()
        self._swept = time.monotonic()

    def _ssl(self, scheme: str) -> ssl.SSLContext | None:
        if scheme != "https":
            return None
        if self._given_ssl is not None:
            return self._given_ssl
        with self._lock:
            if self._default_ssl is None:
                self._default_ssl = ssl.create_default_context()
            return self._default_ssl

    def _pool(self, target: Target) -> _Pool:
        """The pool of the destination this attempt's check allowed (made if new), held for the
        attempt (``users``) until ``_release``."""
        key: Destination = (target.scheme, target.host, target.port, target.address)
        context = self._ssl(target.scheme)
        evicted: list[_Pool] = []
        now = time.monotonic()
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = _Pool(key, context, self.connections_per_destination,
                                                self.keepalive_expiry)
                # The least recently used pools nobody is using go; pools in use stay, even past
                # the bound, until their attempts end.
                for other_key in list(self._pools):
                    if len(self._pools) <= self.max_destinations:
                        break
                    if self._pools[other_key].users == 0 and other_key != key:
                        evicted.append(self._pools.pop(other_key))
            else:
                self._pools.move_to_end(key)
            pool.users += 1
            due = now - self._swept >= min(self.keepalive_expiry, 5.0)
        for old in evicted:
            old.close()
        if due:
            self.sweep()
        assert pool.address == target.address
        return pool

    def sweep(self) -> None:
        """Close the idle connections past ``keepalive_expiry`` (receivers close theirs: ours
        would wait in CLOSE_WAIT, holding descriptors). Run by attempts now and then, and by
        the delivery worker at each round, so a destination no longer used lets go too."""
        now = time.monotonic()
        with self._lock:
            self._swept = now
            pools = list(self._pools.values())
        for pool in pools:
            pool.sweep(now)

    def _release(self, pool: _Pool) -> None:
        with self._lock:
            pool.users -= 1
            assert pool.users >= 0

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
            if response.status < 200:
                # http.client passes over 100 only: a 102 or 103 (or a 101) is not the answer,
                # and the real one may follow on this connection, to be taken for the next
                # request's. A failed attempt, the connection closed.
                return HttpResult(None, _ms(start), {}, b"",
                                  error=f"an informational answer ({response.status}) instead of a final one")
            received = response.read(self.max_response_bytes + 1)
            truncated = len(received) > self.max_response_bytes
            if not truncated and response.length:
                return HttpResult(None, _ms(start), {}, b"", error=f"incomplete answer: the connection closed "
                                                                  f"{response.length} bytes before its end")
            wire: _Wire = connection.sock  # type: ignore[assignment]
            # Reused only if this answer was read to its end, nothing came after it, and the
            # receiver keeps the connection.
            reusable = (not truncated and response.isclosed() and not response.will_close
                        and wire is not None and wire.reader is not None and not wire.reader.surplus)
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
            if pool is not None:
                if connection is not None:
                    pool.give_back(connection, reusable)
                self._release(pool)


def _ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)
