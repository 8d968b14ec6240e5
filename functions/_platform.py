"""The platform of this worker process, built once, on first use.

The Functions host imports ``function_app.py`` to index the functions; that
import must not connect anywhere (no Cosmos client, no Event Hubs producer, no
token request), or a missing role assignment would stop the whole app from
indexing instead of failing one invocation with a clear error. It must not be
slow either: a cold start pays for every module imported before the first
invocation. So this module imports nothing of ``shared`` at module level (only
the standard library), and nothing is built at import: ``get_platform()``
builds the ``Platform`` from the app settings the first time a trigger or a
request needs it, under a lock (the worker runs sync functions on a thread
pool), and every function of the process shares it.

A failed build is never cached. It raises ``PlatformUnavailable`` (the cause
chained), and the next attempt is allowed after an exponential backoff
(``FIRST_BACKOFF_SECONDS`` doubling up to ``MAX_BACKOFF_SECONDS``): invocations
that arrive meanwhile fail at once with the same error instead of hammering a
dependency that is down, and the first invocation after the backoff builds
again. One success resets the backoff. The triggers let the error propagate
(the host's retry policy covers them).

``LazyAsgiApp`` does the same for the HTTP function: ``AsgiFunctionApp`` needs
an ASGI app at import, and gets this stand-in, which builds
``create_app(get_platform())`` on the first HTTP request. While the platform
cannot be built, a request is answered ``503`` with an RFC 9457 problem
document (``platform-unavailable``) and a ``Retry-After`` header, never a bare
500. The ASGI lifespan is answered by the stand-in itself and never builds
anything: ``AsgiFunctionApp`` remembers a failed lifespan startup and would
fail every following request with "ASGI middleware startup failed", so a
build failure must never surface through the lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from shared.telemetry.logs import fields

if TYPE_CHECKING:  # imported for the type checker only: shared.platform costs half a second to import
    from shared.platform import Platform

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]
T = TypeVar("T")

log = logging.getLogger("accrue.functions.platform")

FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0

# The API's problem type base (shared.api.problems.PROBLEM_BASE; a test keeps them equal:
# importing that module here would import FastAPI at indexing time).
PROBLEM_BASE = "https://accrue.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"
UNAVAILABLE_CODE = "platform-unavailable"


class PlatformUnavailable(RuntimeError):
    """The platform (or the API over it) could not be built; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        assert retry_after >= 0, retry_after
        self.retry_after = retry_after


class Backoff:
    """When the next build attempt may run, after consecutive failures."""

    def __init__(self, first: float = FIRST_BACKOFF_SECONDS, maximum: float = MAX_BACKOFF_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        assert 0 < first <= maximum, (first, maximum)
        self.first, self.maximum, self.clock = first, maximum, clock
        self.failures = 0
        self.next_attempt = 0.0
        self.last_error: BaseException | None = None

    def wait_left(self) -> float:
        return max(0.0, self.next_attempt - self.clock()) if self.failures else 0.0

    def failed(self, error: BaseException) -> float:
        """Record a failure; the delay before the next attempt."""
        self.failures += 1
        self.last_error = error
        delay = min(self.first * 2 ** min(self.failures - 1, 32), self.maximum)
        self.next_attempt = self.clock() + delay
        return delay

    def succeeded(self) -> None:
        self.failures, self.next_attempt, self.last_error = 0, 0.0, None


class Lazy(Generic[T]):
    """A value built once, on first ``get()``, under a lock; failures are not kept, only delayed."""

    def __init__(self, what: str, factory: Callable[[], T], backoff: Backoff | None = None) -> None:
        self.what = what
        self._factory = factory
        self.backoff = backoff or Backoff()
        self._value: T | None = None
        self._lock = threading.Lock()

    @property
    def built(self) -> bool:
        return self._value is not None

    def peek(self) -> T | None:
        return self._value

    def get(self) -> T:
        value = self._value
        if value is not None:
            return value
        with self._lock:
            if self._value is None:
                self._value = self._build()
            return self._value

    def _build(self) -> T:
        wait = self.backoff.wait_left()
        if wait > 0:
            raise PlatformUnavailable(
                f"the {self.what} is unavailable (the last build failed: {self.backoff.last_error}); "
                f"next attempt in {wait:.1f} s", retry_after=wait) from self.backoff.last_error
        try:
            value = self._factory()
        except PlatformUnavailable:
            raise  # a dependency's own backoff, already recorded there
        except Exception as exc:  # any failure to build is "unavailable", its cause chained
            delay = self.backoff.failed(exc)
            log.exception("building the %s failed (attempt %d); next attempt in %.1f s",
                          self.what, self.backoff.failures, delay, extra=fields())
            raise PlatformUnavailable(f"building the {self.what} failed: {exc}", retry_after=delay) from exc
        assert value is not None, self.what
        self.backoff.succeeded()
        return value

    def take(self) -> T | None:
        """Forget the value (and the failures); the caller closes what it returns."""
        with self._lock:
            value, self._value = self._value, None
            self.backoff.succeeded()
        return value


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a build imports (hundreds of modules, pydantic models, routes).

    A build allocates container objects by the hundred thousand and frees almost none: every young
    collection on the way walks them for nothing (about a tenth of the build's CPU, bench/bench_coldstart.py).
    Reference counting still frees what is dropped; ``gc_tuning.settle()`` collects once at the end."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _build_platform() -> Platform:
    from shared import gc_tuning, telemetry

    # Telemetry first (Azure Monitor on Azure), so the build's own calls are seen.
    telemetry.configure("functions")
    with _collector_paused():
        from shared.platform import build_platform
        from shared.settings import Settings

        platform = build_platform(Settings.from_env())
        from shared.telemetry import metrics

        metrics.watch(platform)  # the state gauges (poison, webhook endpoints), to Azure Monitor
    gc_tuning.settle()
    return platform


_platform: Lazy[Platform] = Lazy("platform", _build_platform)


def get_platform() -> Platform:
    """The process's platform; raises ``PlatformUnavailable`` while it cannot be built."""
    return _platform.get()


def is_built() -> bool:
    return _platform.built


def reset_platform() -> None:
    """Close and forget the platform and the API over it (tests; a worker process never needs it)."""
    _api.reset()
    built = _platform.take()
    if built is not None:
        built.close()


def problem_internal() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The 500 answer when the API raised before answering: status, headers, body."""
    body = json.dumps({"type": PROBLEM_BASE + "internal-error", "title": "Internal error", "status": 500,
                       "detail": "an unexpected error occurred; nothing was changed by this request"}).encode()
    headers = [(b"content-type", PROBLEM_MEDIA_TYPE.encode("ascii")),
               (b"content-length", str(len(body)).encode("ascii"))]
    return 500, headers, body


def problem_unavailable(retry_after: float) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The 503 answer while the platform cannot be built: status, headers, body."""
    seconds = max(1, math.ceil(retry_after))
    body = json.dumps({
        "type": PROBLEM_BASE + UNAVAILABLE_CODE,
        "title": "Platform unavailable",
        "status": 503,
        # The cause (a missing setting, a refused token) is logged, never sent to a client.
        "detail": f"The service cannot reach its dependencies yet. Retry after {seconds} s.",
    }).encode("utf-8")
    headers = [(b"content-type", PROBLEM_MEDIA_TYPE.encode("ascii")),
               (b"content-length", str(len(body)).encode("ascii")),
               (b"retry-after", str(seconds).encode("ascii"))]
    return 503, headers, body


class LazyAsgiApp:
    """An ASGI app that builds the real one on the first HTTP request (module docstring)."""

    def __init__(self, factory: Callable[[], AsgiApp]) -> None:
        self._app: Lazy[AsgiApp] = Lazy("API", factory)

    @property
    def built(self) -> bool:
        return self._app.built

    def reset(self) -> None:
        self._app.take()

    def warm(self) -> None:
        """Build now (the warmup trigger), on the caller's thread; raises ``PlatformUnavailable``."""
        self._app.get()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        app = self._app.peek()
        if app is None:
            try:
                # Building may block on I/O (store clients, credentials): keep it off the event loop.
                app = await asyncio.to_thread(self._app.get)
            except PlatformUnavailable as exc:
                await self._unavailable(scope, receive, send, exc)
                return
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        answered = False

        async def noting_send(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
            await send(message)

        try:
            await app(scope, receive, noting_send)
        except Exception:  # noqa: BLE001 - see below
            # Starlette's error middleware sends the API's 500 problem and then raises again
            # (for servers to log). uvicorn logs it; the Functions worker lets it out of the
            # function, so the host threw the problem away and answered its own 500 (an outside
            # review). The problem is answered; the error was logged by the API's handler.
            if answered:
                return
            log.exception("the API raised before answering", extra=fields(status=500))
            status, headers, body = problem_internal()
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    async def _unavailable(self, scope: Scope, receive: Receive, send: Send, exc: PlatformUnavailable) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1013})  # 1013: try again later
            return
        status, headers, body = problem_unavailable(exc.retry_after)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Startup completes at once (nothing is built); at shutdown, a built app gets its own lifespan
        (startup then shutdown: its setup happens in ``create_app``, its handlers close what it opened)."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._shut_down_built_app(scope, send)
                return

    async def _shut_down_built_app(self, scope: Scope, send: Send) -> None:
        app = self._app.peek()
        if app is None:
            await send({"type": "lifespan.shutdown.complete"})
            return
        inbox = iter(({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}))
        outcome: dict[str, Any] = {"type": "lifespan.shutdown.complete"}

        async def inner_receive() -> Message:
            return next(inbox)

        async def inner_send(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                outcome.clear()
                outcome.update(message)

        try:
            await app(dict(scope), inner_receive, inner_send)
        except Exception:  # a shutdown handler's failure is logged; the host stops anyway
            log.exception("the API's shutdown failed", extra=fields())
            outcome = {"type": "lifespan.shutdown.failed", "message": "the API's shutdown failed"}
        await send(outcome)


def _create_asgi_app() -> AsgiApp:
    platform = get_platform()
    from shared import gc_tuning

    with _collector_paused():
        from shared.api.app import create_app

        app = create_app(platform)
    gc_tuning.settle()  # again: the API's modules and routes join the frozen heap
    return app


_api = LazyAsgiApp(_create_asgi_app)


def lazy_api() -> LazyAsgiApp:
    """The process's one lazy API (``function_app`` serves it; ``reset_platform`` resets it)."""
    return _api
