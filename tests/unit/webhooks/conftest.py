"""Fixtures of the webhook tests: a real HTTP receiver on loopback (reached through
the test-only ``TestAllowance``, never by weakening the guard) and a clock that
starts at real time (receivers compare ``webhook-timestamp`` with their clock)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator

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
