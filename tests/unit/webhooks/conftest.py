"""Fixtures of the webhook tests: a real HTTP receiver on loopback (reached through
the test-only ``TestAllowance``, never by weakening the guard), a loopback server
that accepts and never answers (a hung endpoint), and a clock that starts at real
time (receivers compare ``webhook-timestamp`` with their clock)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest

from shared.clock import ManualClock
from shared.webhooks.ssrf import TestAllowance


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(timezone.utc).replace(microsecond=0))


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    port: int
    received: list[Received] = field(default_factory=list)
    # path -> (handler) returning status, headers, body; default 204
    behaviour: dict[str, Callable[["BaseHTTPRequestHandler"], tuple[int, dict[str, str], bytes] | None]] = \
        field(default_factory=dict)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # noqa: D401 - quiet
            pass

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            rec = box["r"]
            rec.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            action = rec.behaviour.get(self.path)
            answer = action(self) if action else (204, {}, b"")
            if answer is None:
                return  # the action wrote (or withheld) the answer itself
            status, headers, payload = answer
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.handle_error = lambda request, address: None  # resets and broken pipes are the point
    port = server.server_address[1]
    box["r"] = Receiver(f"http://127.0.0.1:{port}", port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield box["r"]
    server.shutdown()
    server.server_close()


@pytest.fixture
def allow_loopback(platform):  # type: ignore[no-untyped-def]
    """The explicit, test-only allowance: deliveries may reach 127.0.0.1 over http."""
    platform.webhooks.allowance = TestAllowance(frozenset({"127.0.0.1"}))
    platform.webhook_worker._sender.deadline = 2.0
    return platform.webhooks.allowance


def wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def serve_connections(listener: socket.socket, stopping: threading.Event, state: Any,
                      handle: Callable[[socket.socket, int], None]) -> None:
    """Accept until ``stopping``; count on ``state`` (``accepted``, ``open_now``, ``most_open``
    under ``lock``; the handler lowers ``open_now`` when it is done) and hand each connection and
    its number (from 1) to ``handle`` on a thread of its own."""
    while not stopping.is_set():
        try:
            conn, _ = listener.accept()
        except OSError:
            continue
        with state.lock:
            state.accepted += 1
            state.open_now += 1
            state.most_open = max(state.most_open, state.open_now)
            number = state.accepted
        threading.Thread(target=handle, args=(conn, number), daemon=True).start()


@dataclass
class HungServer:
    """A loopback HTTP server that accepts every connection, reads the request and never answers."""

    url: str
    open_now: int = 0
    most_open: int = 0
    accepted: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def hung_server() -> Iterator[HungServer]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    listener.settimeout(0.2)
    state = HungServer(f"http://127.0.0.1:{listener.getsockname()[1]}")
    stopping = threading.Event()

    def hold(conn: socket.socket, number: int) -> None:
        conn.settimeout(0.2)
        try:
            while not stopping.is_set():  # read whatever comes, answer nothing, until the client gives up
                try:
                    if not conn.recv(65536):
                        break
                except TimeoutError:
                    continue
                except OSError:
                    break
        finally:
            with state.lock:
                state.open_now -= 1
            conn.close()

    thread = threading.Thread(target=serve_connections, args=(listener, stopping, state, hold), daemon=True)
    thread.start()
    yield state
    stopping.set()
    thread.join(timeout=2)
    listener.close()
