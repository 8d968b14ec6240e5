"""A platform that cannot be built: the HTTP function answers a problem document
(503, ``platform-unavailable``, ``Retry-After``) through the real
``AsgiFunctionApp``, the failure is not cached, rebuild attempts back off, and
the first request after the cause is fixed is served.

Then the building blocks: ``Lazy`` builds once under concurrency, ``Backoff``
doubles up to its cap and resets on success.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func
import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions import bindings
from functions._platform import Backoff, Lazy, PlatformUnavailable, problem_unavailable
from shared.api.problems import MEDIA_TYPE, PROBLEM_BASE
from tests.unit.functions.conftest import EMBEDDED_ENV_NAMES


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def platform_module(app_module: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """``functions._platform`` as the indexed app uses it, reset, on the embedded default in ``tmp_path``."""
    module = sys.modules["functions._platform"]
    module.reset_platform()
    for name in EMBEDDED_ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ACCRUE_DATA_DIR", str(tmp_path / "data"))
    yield module
    module.reset_platform()


def get(app_functions: dict[str, Any], path: str = "/health") -> func.HttpResponse:
    http = app_functions[bindings.HTTP_FUNCTION].get_user_function()
    request = func.HttpRequest(method="GET", url=f"http://accrue.test{path}", headers={}, body=b"")
    return asyncio.run(http(request, None))


def test_a_failed_build_is_a_503_problem_not_cached_and_retried_after_the_backoff(
        app_functions: dict[str, Any], platform_module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(platform_module._platform.backoff, "clock", clock)
    builds: list[str] = []
    real_build = platform_module._platform._factory

    def counted_build() -> Any:
        builds.append("build")
        return real_build()

    monkeypatch.setattr(platform_module._platform, "_factory", counted_build)
    monkeypatch.setenv("ACCRUE_STORE", "postgres")  # not a store Accrue has: the build fails

    first = get(app_functions)
    assert first.status_code == 503
    assert first.mimetype == MEDIA_TYPE or first.headers["content-type"] == MEDIA_TYPE
    problem = json.loads(first.get_body())
    assert problem["type"] == PROBLEM_BASE + "platform-unavailable" and problem["status"] == 503
    assert "postgres" not in problem["detail"]  # the cause is logged, not sent
    assert first.headers["retry-after"] == "1"
    assert builds == ["build"] and not platform_module.is_built()

    # Within the backoff: answered at once, no new attempt.
    clock.now += 0.5
    assert get(app_functions).status_code == 503
    assert builds == ["build"]

    # After it: a new attempt (still failing), and the next backoff is twice as long.
    clock.now += 1.0
    second = get(app_functions)
    assert second.status_code == 503 and second.headers["retry-after"] == "2"
    assert builds == ["build", "build"]

    # The cause is fixed: the first request after the backoff is served, nothing was cached.
    monkeypatch.delenv("ACCRUE_STORE")
    clock.now += 2.0
    served = get(app_functions)
    assert served.status_code == 200, served.get_body()
    assert json.loads(served.get_body())["store"] == "sqlite"
    assert builds == ["build", "build", "build"] and platform_module.is_built()
    assert get(app_functions).status_code == 200 and len(builds) == 3


def test_triggers_get_the_typed_error_with_its_cause(platform_module: ModuleType,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCRUE_STORE", "postgres")
    # The indexed app's own module (the fixture imported function_app afresh, so its class).
    unavailable = platform_module.PlatformUnavailable
    with pytest.raises(unavailable) as raised:
        platform_module.get_platform()
    assert "postgres" in str(raised.value.__cause__) and raised.value.retry_after > 0
    # Again at once: the backoff answers, the cause is still named.
    with pytest.raises(unavailable, match="next attempt in"):
        platform_module.get_platform()


def test_the_lifespan_builds_nothing_and_shuts_a_built_api_down(platform_module: ModuleType) -> None:
    api = platform_module.lazy_api()

    async def lifespan() -> list[dict[str, Any]]:
        inbox = asyncio.Queue()
        for message in ({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}):
            inbox.put_nowait(message)
        sent: list[dict[str, Any]] = []

        async def send(message: Any) -> None:
            sent.append(dict(message))

        await api({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)
        return sent

    assert asyncio.run(lifespan()) == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]
    assert not platform_module.is_built() and not api.built

    platform_module._api._app.get()  # the API built (as by a first request)
    fastapi_app = platform_module._api._app.peek()
    closed: list[bool] = []
    fastapi_app.router.on_shutdown.append(lambda: closed.append(True))
    assert asyncio.run(lifespan())[-1] == {"type": "lifespan.shutdown.complete"}
    assert closed == [True]


def test_the_problem_base_is_the_apis() -> None:
    status, headers, body = problem_unavailable(0.2)
    assert status == 503 and dict(headers)[b"retry-after"] == b"1"
    assert json.loads(body)["type"].startswith(PROBLEM_BASE)
    assert dict(headers)[b"content-length"] == str(len(body)).encode()


# --- building blocks ---------------------------------------------------------------------


def test_lazy_builds_once_under_concurrent_first_use() -> None:
    builds: list[int] = []
    gate = threading.Event()

    def slow_build() -> object:
        gate.wait(5)
        builds.append(1)
        return object()

    lazy: Lazy[object] = Lazy("thing", slow_build)
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(lazy.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join(5)
    assert builds == [1] and len(results) == 8 and len({id(r) for r in results}) == 1


def test_lazy_does_not_record_a_dependencys_backoff_as_its_own_failure() -> None:
    def depends_on_unavailable() -> object:
        raise PlatformUnavailable("platform down", retry_after=3.0)

    lazy: Lazy[object] = Lazy("API", depends_on_unavailable)
    with pytest.raises(PlatformUnavailable):
        lazy.get()
    assert lazy.backoff.failures == 0 and lazy.backoff.wait_left() == 0


@given(st.integers(min_value=1, max_value=80))
def test_backoff_doubles_up_to_its_cap_and_resets_on_success(failures: int) -> None:
    clock = FakeClock()
    backoff = Backoff(first=1.0, maximum=30.0, clock=clock)
    delays = [backoff.failed(RuntimeError("down")) for _ in range(failures)]
    assert delays[0] == 1.0
    assert all(b == min(2 * a, 30.0) for a, b in zip(delays, delays[1:]))
    assert backoff.wait_left() == delays[-1]
    clock.now += delays[-1]
    assert backoff.wait_left() == 0
    backoff.failed(RuntimeError("down"))
    backoff.succeeded()
    assert backoff.wait_left() == 0 and backoff.failures == 0


# --- the warmup trigger ------------------------------------------------------------------


def test_the_warmup_function_builds_the_api_before_the_first_request(
        app_functions: dict[str, Any], platform_module: ModuleType) -> None:
    from azure.functions.warmup import WarmUpContext

    warmup = app_functions["warmup"]
    assert warmup.get_trigger().get_dict_repr()["type"] == "warmupTrigger"
    assert not platform_module.lazy_api().built
    warmup.get_user_function()(warmup=WarmUpContext())
    assert platform_module.lazy_api().built and platform_module.is_built()
    assert get(app_functions).status_code == 200


def test_a_failed_warmup_does_not_fail_and_leaves_the_first_request_to_retry(
        app_functions: dict[str, Any], platform_module: ModuleType, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from azure.functions.warmup import WarmUpContext

    monkeypatch.setenv("ACCRUE_STORE", "postgres")
    with caplog.at_level("WARNING", logger="accrue.functions.warmup"):
        app_functions["warmup"].get_user_function()(warmup=WarmUpContext())
    assert not platform_module.lazy_api().built
    assert any("first request will try again" in r.getMessage() for r in caplog.records)
    assert get(app_functions).status_code == 503
