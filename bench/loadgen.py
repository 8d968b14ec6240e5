"""A lean HTTP/1.1 load generator for the benchmarks: keep-alive connections on
asyncio streams, one request in flight per connection, nothing else.

Why not httpx: the load generator shares the machine's two cores with the
server it measures. httpx's async client spends about 0.5 ms of CPU per request
(its connection pool, header models, event hooks), so at 1,000 req/s it would
take half a core from the server. This client builds each request from bytes
and parses only the status line and ``Content-Length``: tens of µs per request.
It speaks only what the benchmarks need: JSON bodies over loopback, responses
with a ``Content-Length`` (uvicorn sends one for every JSON response).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson


IDLE_RECONNECT_SECONDS = 4.0


class ProtocolError(Exception):
    pass


@dataclass
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class Connection:
    """One keep-alive connection; callers take turns (``async with connection.lock``)."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self._host, self._port = host, port
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in {"Host": f"{host}:{port}", **headers}.items()).encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._last_used = 0.0

    async def request(self, method: str, path: str, json: Any = None) -> Response:
        # uvicorn closes a keep-alive connection idle for 5 s: reconnect before that.
        if self._writer is not None and time.monotonic() - self._last_used > IDLE_RECONNECT_SECONDS:
            await self.close()
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        try:
            return await self._exchange(method, path, json)
        finally:
            self._last_used = time.monotonic()

    async def _exchange(self, method: str, path: str, json: Any) -> Response:
        assert self._reader is not None and self._writer is not None
        body = b"" if json is None else orjson.dumps(json)
        head = f"{method} {path} HTTP/1.1\r\n".encode() + self._fixed
        if json is not None:
            head += b"content-type: application/json\r\n"
        head += b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
        self._writer.write(head + body)
        status_line = await self._reader.readline()
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ProtocolError(f"not an HTTP response: {status_line[:80]!r}")
        length = None
        close = False
        while True:
            line = await self._reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if length is None:
            raise ProtocolError("a response without Content-Length")
        payload = await self._reader.readexactly(length)
        if close:
            await self.close()
        return Response(int(parts[1]), payload)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except (ConnectionError, OSError):
                pass
        self._reader = self._writer = None


class Pool:
    """``size`` connections; ``request`` borrows a free one."""

    def __init__(self, url: str, headers: dict[str, str], size: int) -> None:
        rest = url.split("://", 1)[1].rstrip("/")
        host, _, port = rest.partition(":")
        self._free: asyncio.Queue[Connection] = asyncio.Queue()
        for _ in range(size):
            self._free.put_nowait(Connection(host, int(port or 80), headers))
        self._all_size = size

    async def request(self, method: str, path: str, json: Any = None) -> Response:
        connection = await self._free.get()
        try:
            return await connection.request(method, path, json)
        except BaseException:
            await connection.close()  # a broken exchange leaves the stream unusable
            raise
        finally:
            self._free.put_nowait(connection)

    async def get(self, path: str) -> Response:
        return await self.request("GET", path)

    async def post(self, path: str, json: Any) -> Response:
        return await self.request("POST", path, json)

    async def aclose(self) -> None:
        for _ in range(self._all_size):
            await (await self._free.get()).close()
