"""The platform of this worker process, built once, on first use.

The Functions host imports ``function_app.py`` to index the functions; that
import must not connect anywhere (no Cosmos client, no Event Hubs producer, no
token request), or a missing role assignment would stop the whole app from
indexing instead of failing one invocation with a clear error. So nothing is
built at import: ``get_platform()`` builds the ``Platform`` from the app
settings the first time a trigger or a request needs it, under a lock (the
worker runs sync functions on a thread pool), and every function of the process
shares it. A failed build is not cached: the next invocation tries again and
the host's retry policy covers the triggers meanwhile.

``LazyAsgiApp`` does the same for the HTTP function: ``AsgiFunctionApp`` needs
an ASGI app at import, and gets this stand-in, which builds
``create_app(get_platform())`` on the first request (or lifespan event).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Awaitable, Callable, MutableMapping

from shared import gc_tuning
from shared.platform import Platform, build_platform
from shared.settings import Settings
from shared.telemetry import metrics

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_lock = threading.Lock()
_platform: Platform | None = None


def get_platform() -> Platform:
    global _platform
    built = _platform
    if built is None:
        with _lock:
            if _platform is None:
                _platform = build_platform(Settings.from_env())
                metrics.watch(_platform)  # the state gauges (poison, webhook endpoints), to Azure Monitor
                gc_tuning.settle()
            built = _platform
    return built


def is_built() -> bool:
    return _platform is not None


def reset_platform() -> None:
    """Close and forget the platform (tests; a worker process never needs it)."""
    global _platform
    with _lock:
        built, _platform = _platform, None
    if built is not None:
        built.close()


class LazyAsgiApp:
    """An ASGI app that builds the real one on first use."""

    def __init__(self, factory: Callable[[], AsgiApp]) -> None:
        self._factory = factory
        self._app: AsgiApp | None = None
        self._lock = threading.Lock()

    def _build(self) -> AsgiApp:
        with self._lock:
            if self._app is None:
                self._app = self._factory()
            return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app
        if app is None:
            # Building may block on I/O (store clients, credentials): keep it off the event loop.
            app = await asyncio.to_thread(self._build)
        await app(scope, receive, send)


def _create_asgi_app() -> AsgiApp:
    from shared.api.app import create_app

    return create_app(get_platform())


def lazy_api() -> LazyAsgiApp:
    return LazyAsgiApp(_create_asgi_app)
