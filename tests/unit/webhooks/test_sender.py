"""The webhook sender's contract (shared/webhooks/http.py), held against a scripted loopback
server that misbehaves on purpose: TLS verified for the endpoint's name while the socket goes
to the checked address, one wall-clock deadline for the whole exchange (a server that drips
its answer a byte at a time is cut off), no redirect followed, a bounded answer whose
connection is never reused, kept-alive connections reused, replaced when the receiver closed
them while idle, and bounded per destination."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.webhooks.http import PinnedSender
from shared.webhooks.ssrf import Target
from tests.unit.webhooks.conftest import serve_connections

NAME = "hooks.sender.example"
HEADERS = {"webhook-id": "msg_1", "webhook-timestamp": "1700000000", "webhook-signature": "v1,c2lnbmF0dXJl"}
BODY = b'{"type":"ruleset.activated","data":{"version":1}}'


@dataclass
class Request:
    connection: int
    head: str
    body: bytes

    def header(self, name: str) -> str | None:
        for line in self.head.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


Script = Callable[[socket.socket, Request], None]  # answers (or misbehaves) on the connection


@dataclass
class ScriptedServer:
    port: int
    script: Script
    requests: list[Request] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)
    accepted: int = 0  # connections, numbered from 1
    open_now: int = 0
    most_open: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Script:
    def send(conn: socket.socket, request: Request) -> None:
        lines = [f"HTTP/1.1 {status} Whatever"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
        if not any(k.lower() == "transfer-encoding" for k in (headers or {})):
            lines.append(f"Content-Length: {len(body)}")
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    return send


def _read_request(conn: socket.socket, buffer: bytearray) -> tuple[str, bytes] | None:
    while b"\r\n\r\n" not in buffer:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    length = 0
    for line in head.decode("latin-1").split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-length":
            length = int(value)
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        rest += chunk
    buffer[:] = rest[length:]
    return head.decode("latin-1"), rest[:length]


def _serve(state: ScriptedServer, listener: socket.socket, tls: ssl.SSLContext | None,
           stopping: threading.Event) -> None:
    def handle(conn: socket.socket, number: int) -> None:
        try:
            if tls is not None:
                conn = tls.wrap_socket(conn, server_side=True)
            conn.settimeout(10)
            buffer = bytearray()
            while not stopping.is_set():
                read = _read_request(conn, buffer)
                if read is None:
                    return
                request = Request(number, *read)
                with state.lock:
                    state.requests.append(request)
                state.script(conn, request)
        except (OSError, ssl.SSLError):
            pass  # a client that gave up, a handshake refused: the point of several tests
        finally:
            with state.lock:
                state.open_now -= 1
            conn.close()

    serve_connections(listener, stopping, state, handle)


@pytest.fixture
def start_server() -> Iterator[Callable[..., ScriptedServer]]:
    stops: list[tuple[threading.Event, socket.socket]] = []

    def start(script: Script, tls: ssl.SSLContext | None = None) -> ScriptedServer:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.settimeout(0.1)
        state = ScriptedServer(listener.getsockname()[1], script)
        if tls is not None:
            tls.sni_callback = lambda sock, name, ctx: state.server_names.append(name)  # type: ignore[assignment]
        stopping = threading.Event()
        threading.Thread(target=_serve, args=(state, listener, tls, stopping), daemon=True).start()
        stops.append((stopping, listener))
        return state

    yield start
    for stopping, listener in stops:
        stopping.set()
        listener.close()


def target(server: ScriptedServer, scheme: str = "http", host: str = "127.0.0.1", path: str = "/hook") -> Target:
    return Target(url=f"{scheme}://{host}:{server.port}{path}", scheme=scheme, host=host, port=server.port,
                  address="127.0.0.1", target=path)


@dataclass
class Certificates:
    client: ssl.SSLContext  # trusts the test authority only
    server_for: Callable[[str], ssl.SSLContext]  # a server context with a certificate for that name


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    folder = tmp_path_factory.mktemp("tls")
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Accrue test authority")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())

    def server_for(name: str) -> ssl.SSLContext:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        chain = Path(folder, f"{name}.pem")
        chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain)
        return context

    return Certificates(client, server_for)


def test_a_delivery_sends_its_body_and_headers_and_returns_the_answer(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(answer(200, b'{"ok":true}', {"X-Answer": "yes"}))
    sender = PinnedSender(deadline=2.0)
    result = sender.post(target(server), BODY, HEADERS)
    assert (result.status, result.body, result.error, result.truncated) == (200, b'{"ok":true}', None, False)
    assert result.headers["x-answer"] == "yes"
    [request] = server.requests
    assert request.head.startswith("POST /hook HTTP/1.1\r\n") and request.body == BODY
    assert request.header("host") == f"127.0.0.1:{server.port}"
    assert request.header("content-type") == "application/json"
    assert request.header("user-agent") == "Accrue-Webhooks/1"
    assert {k: request.header(k) for k in HEADERS} == HEADERS


def test_tls_is_verified_for_the_endpoint_name_on_the_checked_address(start_server, certificates) -> None:  # type: ignore[no-untyped-def]
    """The socket goes to the checked address (127.0.0.1); the name goes as SNI and Host, and
    the certificate must be valid for the name."""
    server = start_server(answer(204), tls=certificates.server_for(NAME))
    sender = PinnedSender(deadline=2.0, ssl_context=certificates.client)
    result = sender.post(target(server, "https", NAME), BODY, HEADERS)
    assert (result.status, result.error) == (204, None)
    assert server.server_names == [NAME]
    assert server.requests[0].header("host") == f"{NAME}:{server.port}"


def test_a_certificate_for_another_name_is_a_failed_attempt_that_sends_nothing(start_server,
                                                                              certificates) -> None:  # type: ignore[no-untyped-def]
    server = start_server(answer(204), tls=certificates.server_for("someone.else.example"))
    sender = PinnedSender(deadline=2.0, ssl_context=certificates.client)
    result = sender.post(target(server, "https", NAME), BODY, HEADERS)
    assert result.status is None and "certificate" in (result.error or "").lower()
    assert server.requests == []


def _drip(data: bytes, every: float) -> Script:
    def send(conn: socket.socket, request: Request) -> None:
        for byte in data:
            conn.sendall(bytes([byte]))
            time.sleep(every)
    return send


@pytest.mark.parametrize("answer_bytes", [
    b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200 + b"\r\nContent-Length: 0\r\n\r\n",  # the head drips
    b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n" + b"b" * 200,  # the body drips
], ids=["head", "body"])
def test_an_answer_dripped_a_byte_at_a_time_is_cut_off_at_the_deadline(start_server, answer_bytes: bytes) -> None:  # type: ignore[no-untyped-def]
    """Every read makes progress, so a timeout per read would never fire: the deadline is one
    budget for the whole exchange."""
    server = start_server(_drip(answer_bytes, 0.05))
    sender = PinnedSender(deadline=1.0)
    started = time.monotonic()
    result = sender.post(target(server), BODY, HEADERS)
    took = time.monotonic() - started
    assert result.status is None and (result.error or "").startswith("timeout")
    assert took < 1.8, took  # the deadline and a little, not the drip's 10 s


def test_a_hung_answer_is_cut_off_at_the_deadline(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(lambda conn, request: time.sleep(5))
    sender = PinnedSender(deadline=0.5)
    started = time.monotonic()
    result = sender.post(target(server), BODY, HEADERS)
    assert result.status is None and (result.error or "").startswith("timeout")
    assert time.monotonic() - started < 1.3


def test_a_redirect_is_an_answer_never_followed(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(answer(307, b"", {"Location": "/elsewhere"}))
    result = PinnedSender(deadline=2.0).post(target(server), BODY, HEADERS)
    assert result.status == 307 and result.headers["location"] == "/elsewhere"
    time.sleep(0.1)
    assert [r.head.split(" ")[1] for r in server.requests] == ["/hook"]


def test_an_answer_past_the_size_limit_is_cut_and_its_connection_never_reused(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(answer(200, b"x" * 5000))
    sender = PinnedSender(deadline=2.0, max_response_bytes=1024)
    first = sender.post(target(server), BODY, HEADERS)
    assert (first.status, len(first.body), first.truncated) == (200, 1024, True)
    second = sender.post(target(server), BODY, HEADERS)
    assert second.status == 200 and second.truncated
    assert [r.connection for r in server.requests] == [1, 2]  # the unread rest never met the next request


def test_a_chunked_answer_is_read_whole_and_its_connection_kept(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(lambda conn, request: conn.sendall(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"))
    sender = PinnedSender(deadline=2.0)
    results = [sender.post(target(server), BODY, HEADERS) for _ in range(3)]
    assert [(r.status, r.body) for r in results] == [(200, b"hello world")] * 3
    assert [r.connection for r in server.requests] == [1, 1, 1]


def test_deliveries_to_one_destination_reuse_one_kept_alive_connection(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(answer(204))
    sender = PinnedSender(deadline=2.0)
    assert [sender.post(target(server), BODY, HEADERS).status for _ in range(5)] == [204] * 5
    assert [r.connection for r in server.requests] == [1] * 5


def test_an_answer_that_closes_its_connection_gets_a_new_one_next_time(start_server) -> None:  # type: ignore[no-untyped-def]
    def close_after(conn: socket.socket, request: Request) -> None:
        answer(200, b"bye", {"Connection": "close"})(conn, request)
        conn.shutdown(socket.SHUT_RDWR)

    server = start_server(close_after)
    sender = PinnedSender(deadline=2.0)
    assert [sender.post(target(server), BODY, HEADERS).status for _ in range(3)] == [200] * 3
    assert [r.connection for r in server.requests] == [1, 2, 3]


def test_a_kept_alive_connection_the_receiver_dropped_while_idle_is_replaced_not_failed(start_server) -> None:  # type: ignore[no-untyped-def]
    """Receivers close idle connections after their own timeout, without saying so in the
    answer: the next delivery opens a new connection instead of failing on the dead one."""
    def answer_then_drop(conn: socket.socket, request: Request) -> None:
        answer(204)(conn, request)
        time.sleep(0.05)
        conn.shutdown(socket.SHUT_RDWR)

    server = start_server(answer_then_drop)
    sender = PinnedSender(deadline=2.0)
    first = sender.post(target(server), BODY, HEADERS)
    time.sleep(0.3)
    second = sender.post(target(server), BODY, HEADERS)
    assert (first.status, second.status, second.error) == (204, 204, None)
    assert [r.connection for r in server.requests] == [1, 2]


def test_connections_to_one_destination_are_bounded(start_server) -> None:  # type: ignore[no-untyped-def]
    def slow(conn: socket.socket, request: Request) -> None:
        time.sleep(0.2)
        answer(204)(conn, request)

    server = start_server(slow)
    sender = PinnedSender(deadline=5.0, connections_per_destination=2)
    results: list[int | None] = []
    threads = [threading.Thread(target=lambda: results.append(sender.post(target(server), BODY, HEADERS).status))
               for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [204] * 6
    assert server.most_open <= 2 and server.accepted == 2


def test_a_refused_connection_is_a_failed_attempt(start_server) -> None:  # type: ignore[no-untyped-def]
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    nowhere = Target(url=f"http://127.0.0.1:{port}/", scheme="http", host="127.0.0.1", port=port,
                     address="127.0.0.1", target="/")
    result = PinnedSender(deadline=1.0).post(nowhere, BODY, HEADERS)
    assert result.status is None and "refused" in (result.error or "").lower()


# --- found by the outside review of the http.client sender (stop 36) -------------------------

@pytest.mark.parametrize("interim", [
    b"HTTP/1.1 102 Processing\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n"])
@pytest.mark.parametrize("later", [False, True], ids=["one-segment", "final-later"])
def test_an_informational_answer_fails_the_attempt_and_never_answers_the_next_request(start_server, interim: bytes,
                                                                                      later: bool) -> None:  # type: ignore[no-untyped-def]
    """http.client passes over 100 only: a 102/103 was returned as the answer, and the final 200
    that followed was read as the next delivery's answer (its own 500 lost: a failure recorded as
    a success). Now the attempt fails and its connection is closed."""
    def script(conn: socket.socket, request: Request) -> None:
        if request.connection == 1 and len([r for r in server.requests if r.connection == 1]) == 1:
            conn.sendall(interim)
            if later:
                time.sleep(0.1)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
        else:
            answer(500, b"second")(conn, request)

    server = start_server(script)
    sender = PinnedSender(deadline=2.0)
    first = sender.post(target(server), BODY, HEADERS)
    assert first.status is None and "informational" in (first.error or "")
    time.sleep(0.2)
    second = sender.post(target(server), BODY, HEADERS)
    assert (second.status, second.body) == (500, b"second")
    assert [r.connection for r in server.requests] == [1, 2]


def test_an_answer_cut_before_its_content_length_is_a_failed_attempt(start_server) -> None:  # type: ignore[no-untyped-def]
    def cut(conn: socket.socket, request: Request) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-part")
        conn.shutdown(socket.SHUT_RDWR)

    server = start_server(cut)
    result = PinnedSender(deadline=2.0).post(target(server), BODY, HEADERS)
    assert result.status is None and "incomplete" in (result.error or "")


def test_bytes_after_an_answer_keep_its_connection_from_being_reused(start_server) -> None:  # type: ignore[no-untyped-def]
    """Sent with the answer, they sat in the answer's read buffer and the connection was pooled
    as clean; the next request on it would be answered by them."""
    def with_surplus(conn: socket.socket, request: Request) -> None:
        if request.connection == 1:
            conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
                         b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged")
        else:
            answer(503, b"busy")(conn, request)

    server = start_server(with_surplus)
    sender = PinnedSender(deadline=2.0)
    assert sender.post(target(server), BODY, HEADERS).status == 204
    second = sender.post(target(server), BODY, HEADERS)
    assert (second.status, second.body) == (503, b"busy")
    assert [r.connection for r in server.requests] == [1, 2]


def test_the_tls_handshake_gets_what_the_connect_left_of_the_deadline(certificates) -> None:  # type: ignore[no-untyped-def]
    """A slow connect (a full accept queue drops the SYN; it is sent again about a second later),
    then a server that never answers the ClientHello: the handshake got the time left before the
    connect, and the attempt ran to about twice its deadline."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(filler)
    held: list[socket.socket] = []

    def accept_late() -> None:
        time.sleep(0.5)
        listener.settimeout(4)
        try:
            while True:
                held.append(listener.accept()[0])  # accepted, never answered
        except OSError:
            return

    threading.Thread(target=accept_late, daemon=True).start()
    sender = PinnedSender(deadline=1.5, ssl_context=certificates.client)
    nowhere = Target(url=f"https://{NAME}:{port}/h", scheme="https", host=NAME, port=port, address="127.0.0.1",
                     target="/h")
    started = time.monotonic()
    result = sender.post(nowhere, BODY, HEADERS)
    took = time.monotonic() - started
    assert result.status is None and took < 1.5 + 0.6, (took, result.error)
    for sock in [listener, *fillers, *held]:
        sock.close()


def test_a_pool_in_use_is_not_evicted_so_its_destination_stays_bounded(start_server) -> None:  # type: ignore[no-untyped-def]
    def slow(conn: socket.socket, request: Request) -> None:
        time.sleep(0.2)
        answer(204)(conn, request)

    busy, other = start_server(slow), start_server(answer(204))
    sender = PinnedSender(deadline=5.0, connections_per_destination=2, max_destinations=1)
    results: list[int | None] = []

    def post(server: ScriptedServer) -> None:
        results.append(sender.post(target(server), BODY, HEADERS).status)

    threads = [threading.Thread(target=post, args=(busy if n % 2 == 0 else other,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [204] * 12
    assert busy.most_open <= 2 and other.most_open <= 2


def test_idle_connections_past_their_keep_alive_are_closed(start_server) -> None:  # type: ignore[no-untyped-def]
    first, second = start_server(answer(204)), start_server(answer(204))
    sender = PinnedSender(deadline=2.0, keepalive_expiry=0.2)
    assert sender.post(target(first), BODY, HEADERS).status == 204
    assert first.open_now == 1
    time.sleep(0.4)
    sender.sweep()  # what the delivery worker does at each round
    time.sleep(0.2)
    assert first.open_now == 0  # the receiver saw it closed
    assert sender.post(target(second), BODY, HEADERS).status == 204


def test_keep_alive_still_works_with_descriptors_past_1024(start_server) -> None:  # type: ignore[no-untyped-def]
    """select() refuses descriptors past 1024; the idle check read that as 'not reusable' and
    every delivery opened a new connection."""
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        if hard != resource.RLIM_INFINITY and hard < 1200:
            pytest.skip("the descriptor limit is below 1200")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    server = start_server(answer(204))
    padding = []
    try:
        while len(padding) < 1100 and (not padding or padding[-1] < 1030):
            padding.append(os.dup(0))
        sender = PinnedSender(deadline=2.0)
        assert [sender.post(target(server), BODY, HEADERS).status for _ in range(4)] == [204] * 4
        assert server.accepted == 1
    finally:
        for fd in padding:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_given_tls_context_is_left_as_it_was(certificates) -> None:  # type: ignore[no-untyped-def]
    before = certificates.client.sslsocket_class
    PinnedSender(deadline=1.0, ssl_context=certificates.client)
    assert certificates.client.sslsocket_class is before is ssl.SSLSocket
