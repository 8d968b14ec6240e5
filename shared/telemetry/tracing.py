"""Telemetry: traces. One tracer provider per process, and the few helpers the
platform's code uses to make spans and to carry W3C trace context across the bus
and the ledger.

Setup (``configure``), chosen by settings:

* OTLP over HTTP when the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set;
* a JSON-lines file when ``ACCRUE_TRACE_FILE`` is set: one span a line, appended
  under an advisory lock, so the local platform's three processes can share one
  file (the end-to-end trace test reads it);
* sampling by the standard ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``
  (the SDK reads them; default parent-based always-on);
* on Azure the azure-monitor distro sets the global provider first
  (``shared.telemetry.azure_monitor``): ``configure`` then adds nothing of its own
  beyond exporters to that SDK provider, never a second provider.

With no exporter configured no provider is installed: the API's tracer is a
no-op, spans cost a few hundred nanoseconds and carry no context, so nothing is
written on messages or ledger entries. Unit tests use ``memory_exporter()``.

What it guarantees: telemetry never changes what the platform does. A malformed
``traceparent`` on a message or an entry is ignored (a new root, no error); the
context helpers return ``None`` rather than raise.

Trace shape (docs/telemetry.md, "Traces"): the HTTP request span (SERVER) is the
parent of ``intake``; the bus adapter's ``publish`` span (PRODUCER) is its child
and its context is the ``traceparent`` written on every message. The consumer's
``ingest batch`` span (CONSUMER) *links* to the messages' producer spans (capped at
``MAX_LINKS``), and each order's ``ledger append`` span is a *child* of its
message's context, so one order is one connected trace. The ledger append's
context is stored on the entries (``traceContext``); the projector's
``projection`` span continues from there.
"""

from __future__ import annotations

import fcntl
import functools
import inspect
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import orjson
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.telemetry.logs import fields

log = logging.getLogger("accrue.telemetry")
F = TypeVar("F", bound=Callable[..., Any])

TRACER_NAME = "accrue"
TRACE_FILE_VARIABLE = "ACCRUE_TRACE_FILE"
# The consumer span links to at most this many producer spans: a batch of 500
# messages from one request carries one context anyway, and a backend stores
# only so many links per span.
MAX_LINKS = 128
# A file or OTLP batch goes out at least this often (ms): short, so a test or an
# operator watching the file sees a request's spans within a second.
EXPORT_DELAY_MS = 500

_PROPAGATOR = TraceContextTextMapPropagator()
_state_lock = threading.Lock()
_enabled = False  # a recording SDK provider is installed (by us or by the distro)
_switched_off = False  # set_enabled(False): stay off even with a provider installed (tests)
_memory: Any = None  # the in-memory exporter of memory_exporter(), once made
_tracer: trace.Tracer | None = None

SERVER, CLIENT, PRODUCER, CONSUMER, INTERNAL = (SpanKind.SERVER, SpanKind.CLIENT, SpanKind.PRODUCER,
                                                 SpanKind.CONSUMER, SpanKind.INTERNAL)


# --- setup -------------------------------------------------------------------------


def _sdk_provider() -> Any | None:
    """The global provider if it is an SDK one (ours, the distro's, a test's), else None."""
    from opentelemetry.sdk.trace import TracerProvider

    provider = trace.get_tracer_provider()
    return provider if isinstance(provider, TracerProvider) else None


def _exporters() -> list[Any]:
    exporters: list[Any] = []
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporters.append(OTLPSpanExporter())  # endpoint, headers, timeout: the standard OTEL_* variables
    path = os.environ.get(TRACE_FILE_VARIABLE)
    if path:
        exporters.append(JsonLinesFileExporter(path))
    return exporters


def configure(process: str) -> None:
    """Set up tracing for the process named ``process`` (``api``, ``ingest``,
    ``project``, ``functions``). Reuses a provider already installed (the Azure
    Monitor distro's), adding our exporters to it; otherwise installs one only if
    some exporter is configured."""
    global _enabled
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporters = _exporters()
    with _state_lock:
        provider = _sdk_provider()
        if provider is None:
            if not exporters:
                return  # nothing would see the spans: stay a no-op
            resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "accrue"),
                                        "service.namespace": "accrue", "accrue.process": process})
            provider = TracerProvider(resource=resource)  # sampler: OTEL_TRACES_SAMPLER (SDK default otherwise)
            trace.set_tracer_provider(provider)
        for exporter in exporters:
            provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=EXPORT_DELAY_MS))
        _enabled = True


def memory_exporter() -> Any:
    """An in-memory exporter that receives every span of this process from now on
    (tests): installs a provider if none is, else adds to the existing one."""
    global _enabled, _memory
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    with _state_lock:
        if _memory is not None:
            return _memory
        provider = _sdk_provider()
        if provider is None:
            provider = TracerProvider()
            trace.set_tracer_provider(provider)
        _memory = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(_memory))
        _enabled = True
        return _memory


def set_enabled(on: bool) -> None:
    """Turn span recording on or off (tests: a test that used ``memory_exporter``
    turns it off again, so the rest of the session runs as with telemetry off)."""
    global _enabled, _switched_off
    _switched_off = not on
    _enabled = on and _sdk_provider() is not None


def _provider_installed_since() -> bool:
    """A provider installed after ``configure`` (the Azure Monitor distro is set up
    after tracing, in ``shared.telemetry.configure``): noticed at the first span."""
    global _enabled
    if _switched_off or not isinstance(trace.get_tracer_provider(), SdkTracerProvider):
        return False
    _enabled = True
    return True


def enabled() -> bool:
    """Whether spans are recorded here: hot paths skip per-item spans when not."""
    return _enabled or _provider_installed_since()


class JsonLinesFileExporter:
    """Spans as JSON lines appended to one file, shared by several processes: each
    export is one ``write`` under ``flock``, so lines never interleave."""

    def __init__(self, path: str) -> None:
        self._path = path

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        # orjson: a tenth of json's cost per span (bench/RESULTS-telemetry.md).
        text = b"".join(orjson.dumps(span_record(span), default=str, option=orjson.OPT_APPEND_NEWLINE)
                        for span in spans)
        try:
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(fd, text)
            finally:
                os.close(fd)  # closing releases the lock
        except OSError as exc:
            log.warning("could not write spans to %s: %s", self._path, exc, extra=fields())
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def span_record(span: Any) -> dict[str, Any]:
    """A finished SDK span as a flat dict (ids in W3C hex)."""
    ctx = span.context
    return {
        "name": span.name,
        "traceId": format(ctx.trace_id, "032x"),
        "spanId": format(ctx.span_id, "016x"),
        "parentSpanId": format(span.parent.span_id, "016x") if span.parent is not None else None,
        "kind": span.kind.name,
        "start": span.start_time,
        "end": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "links": [{"traceId": format(link.context.trace_id, "032x"), "spanId": format(link.context.span_id, "016x")}
                  for link in span.links],
        "process": (span.resource.attributes or {}).get("accrue.process"),
        "pid": os.getpid(),
    }


# --- spans -------------------------------------------------------------------------


def tracer() -> trace.Tracer:
    """The platform's tracer, made once: ``get_tracer`` builds a new tracer and scope
    on every call (tens of microseconds, on every span)."""
    global _tracer
    if _tracer is None:
        _tracer = trace.get_tracer(TRACER_NAME)
    return _tracer


@contextmanager
def span(name: str, kind: SpanKind = SpanKind.INTERNAL, links: Sequence[Link] = (),
         parent: str | None = None, **attributes: Any) -> Iterator[Span]:
    """A span around a block, current inside it; ``parent`` a traceparent to
    continue (else the current span). An exception marks it as an error and goes on."""
    if not (_enabled or _provider_installed_since()):
        yield trace.INVALID_SPAN
        return
    ctx = context_from(parent) if parent else None
    with tracer().start_as_current_span(name, context=ctx, kind=kind, links=links,
                                        attributes=_clean(attributes)) as current:
        yield current


def start(name: str, parent: str | None = None, kind: SpanKind = SpanKind.INTERNAL,
          links: Sequence[Link] = (), **attributes: Any) -> Span:
    """A span that is not made current, under ``parent`` (a traceparent) or the
    current span; the caller ends it. For per-item spans in a batch."""
    if not (_enabled or _provider_installed_since()):
        return trace.INVALID_SPAN
    ctx = context_from(parent) if parent else None
    return tracer().start_span(name, context=ctx, kind=kind, links=links, attributes=_clean(attributes))


def traced(name: str, kind: SpanKind = SpanKind.INTERNAL, from_args: dict[str, str] | None = None,
           **attributes: Any) -> Callable[[F], F]:
    """A decorator: the call runs in a span ``name`` (an error raised marks it and goes
    on). ``from_args`` maps attribute names to the function's parameter names whose
    values become attributes (``{"accrue.tenant": "tenant_id"}``). One line on an
    adapter's method, so the adapter's own code stays as it was; with tracing off
    the call costs one flag test."""
    static = _clean(attributes)

    def decorate(function: F) -> F:
        parameters = list(inspect.signature(function).parameters)
        picks = [(attribute, parameter, parameters.index(parameter))
                 for attribute, parameter in (from_args or {}).items()]
        assert all(parameter in parameters for _, parameter, _ in picks), (function, from_args)

        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            if not (_enabled or _provider_installed_since()):
                return function(*args, **kwargs)
            found = dict(static)
            for attribute, parameter, index in picks:
                value = kwargs[parameter] if parameter in kwargs else args[index] if index < len(args) else None
                if isinstance(value, (str, int, float, bool)):
                    found[attribute] = value
            with tracer().start_as_current_span(name, kind=kind, attributes=found):
                return function(*args, **kwargs)

        return call  # type: ignore[return-value]

    return decorate


def set_attributes(**attributes: Any) -> None:
    """Set attributes on the current span (e.g. the tenant, once authenticated)."""
    if _enabled or _provider_installed_since():
        current = trace.get_current_span()
        if current.is_recording():
            current.set_attributes(_clean(attributes))


def fail(span_: Span, error: BaseException | str) -> None:
    if span_.is_recording():
        span_.set_status(Status(StatusCode.ERROR, str(error)[:200]))


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    # OpenTelemetry refuses None values (with a warning per call): leave them out.
    return {f"accrue.{k}" if "." not in k else k: v for k, v in attributes.items() if v is not None}


# --- context propagation -----------------------------------------------------------


def traceparent(span_: Span | None = None) -> str | None:
    """The W3C ``traceparent`` of ``span_`` (default: the current span), or None when
    there is no valid context to carry (telemetry off, nothing sampled upstream)."""
    target = span_ if span_ is not None else trace.get_current_span()
    ctx = target.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


@functools.lru_cache(maxsize=4096)
def _span_context(value: str) -> SpanContext | None:
    """The remote span context a ``traceparent`` names. Version 00 (what we write) is
    parsed here, cached (a batch names each context twice: link and parent); any
    other version goes to the SDK's propagator, which knows the rules for them."""
    match = _TRACEPARENT.fullmatch(value)
    if match is not None:
        trace_id, span_id, flags = int(match[1], 16), int(match[2], 16), int(match[3], 16)
        context = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))
    else:
        context = trace.get_current_span(_PROPAGATOR.extract({"traceparent": value})).get_span_context()
    return context if context.is_valid else None


def context_from(value: str | None) -> otel_context.Context | None:
    """The OpenTelemetry context a ``traceparent`` names, or None (absent or malformed)."""
    if not value or not isinstance(value, str):
        return None
    span_context = _span_context(value)
    return trace.set_span_in_context(NonRecordingSpan(span_context)) if span_context is not None else None


def sampled(value: str | None) -> bool:
    """Whether a ``traceparent`` names a valid context whose trace was sampled upstream.
    Consumers make no span, link or ``traceContext`` for an unsampled one: with
    parent-based sampling its children would not be recorded anyway, so the request's
    decision holds downstream at the cost of one cached parse."""
    if not value or not isinstance(value, str):
        return False
    span_context = _span_context(value)
    return span_context is not None and span_context.trace_flags.sampled


def link_from(value: str | None) -> Link | None:
    span_context = _span_context(value) if value and isinstance(value, str) else None
    return Link(span_context) if span_context is not None else None


def links_from(values: Iterable[str | None], cap: int = MAX_LINKS) -> list[Link]:
    """Links to the distinct valid, sampled contexts among ``values``, at most ``cap``."""
    seen: set[str] = set()
    links: list[Link] = []
    for value in values:
        if not value or value in seen:
            continue
        seen.add(value)
        link = link_from(value)
        if link is not None and link.context.trace_flags.sampled:
            links.append(link)
            if len(links) >= cap:
                break
    return links
