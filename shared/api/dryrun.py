"""``?dryRun=true`` on the routes that move or spend points: ``@dry_runnable`` adds
the declared ``dryRun`` query parameter to the route and, when it is true, runs
the very same route function on a dry platform (``shared.dryrun``): every check
the real call makes, none of its writes. The answer is 200 with the body the real
call would give plus ``"dryRun": true`` and the header ``Accrue-Dry-Run: true``;
a refusal is the same problem the real call would get. A ``Location`` the route
sets is dropped: nothing was created there."""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Annotated, Any, Callable, TypeVar

from fastapi import Query, Response

from shared.dryrun.platform import dry_platform

F = TypeVar("F", bound=Callable[..., Any])

HEADER = "Accrue-Dry-Run"
DryRun = Annotated[bool, Query(alias="dryRun", description="evaluate everything, write nothing, answer the "
                                                           "outcome the call would produce")]


def _marked(result: Any, response: Response) -> Any:
    assert isinstance(result, dict), "a dry-runnable route answers a JSON object"
    response.status_code = 200
    response.headers[HEADER] = "true"
    if "location" in response.headers:
        del response.headers["location"]
    return {**result, "dryRun": True}


def dry_runnable(fn: F) -> F:
    """The route must take the platform as ``p`` and the ``response``."""
    signature = inspect.signature(fn, eval_str=True)
    assert "p" in signature.parameters and "response" in signature.parameters, \
        f"{fn.__name__}: a dry-runnable route takes 'p' and 'response'"
    dry_param = inspect.Parameter("dryRun", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=DryRun)
    params = list(signature.parameters.values())
    # keyword-only parameters come last; keep them together
    params = [q for q in params if q.kind != inspect.Parameter.KEYWORD_ONLY] + \
             [q for q in params if q.kind == inspect.Parameter.KEYWORD_ONLY] + [dry_param]
    params = [q.replace(kind=inspect.Parameter.KEYWORD_ONLY) for q in params]

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def run_async(*args: Any, dryRun: bool = False, **kwargs: Any) -> Any:  # noqa: N803
            if not dryRun:
                return await fn(*args, **kwargs)
            kwargs["p"] = await asyncio.to_thread(dry_platform, kwargs["p"])
            return _marked(await fn(*args, **kwargs), kwargs["response"])

        wrapper: Any = run_async
    else:
        @functools.wraps(fn)
        def run(*args: Any, dryRun: bool = False, **kwargs: Any) -> Any:  # noqa: N803
            if not dryRun:
                return fn(*args, **kwargs)
            kwargs["p"] = dry_platform(kwargs["p"])
            return _marked(fn(*args, **kwargs), kwargs["response"])

        wrapper = run
    wrapper.__signature__ = signature.replace(parameters=params)
    return wrapper  # type: ignore[return-value]
