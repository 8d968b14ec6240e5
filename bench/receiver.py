"""A loopback webhook receiver for the benchmarks: one HTTP/1.1 server (keep-alive) on
127.0.0.1 that verifies every POST with the caller's ``verify`` and answers 204 (verified)
or 400, telling ``on_answer`` which. Shared by bench_webhooks.py and bench_dataout.py."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from collections.abc import Callable, Mapping

# verify(path, body, headers): raises when the delivery does not verify.
Verify = Callable[[str, bytes, Mapping[str, str]], None]
# on_answer(path, headers, verified): called before the answer is sent.
OnAnswer = Callable[[str, Mapping[str, str], bool], None]


def serve_verifying(verify: Verify, on_answer: OnAnswer,
                    on_connect: Callable[[], None] | None = None) -> tuple[ThreadingHTTPServer, str]:
    """Start the receiver on a thread of its own; the server (``shutdown`` stops it) and its URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive when the sender keeps the connection

        def setup(self) -> None:
            super().setup()
            if on_connect is not None:
                on_connect()

        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            headers = dict(self.headers.items())
            try:
                verify(self.path, body, headers)
                ok = True
            except Exception:  # noqa: BLE001 - any failure to verify is a refusal
                ok = False
            on_answer(self.path, headers, ok)
            self.send_response(204 if ok else 400)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
