"""The JSON line format of shared.telemetry.logs: required keys, fields, span ids, exceptions."""

from __future__ import annotations

import io
import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider

from shared.telemetry.logs import ALLOWED_FIELDS, REQUIRED_KEYS, fields, handler, log_admin_act


@pytest.fixture
def captured():
    stream = io.StringIO()
    logger = logging.getLogger("accrue.test.logs")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    made = handler("api", stream)
    logger.addHandler(made)
    lines = lambda: [json.loads(line) for line in stream.getvalue().splitlines()]  # noqa: E731
    yield logger, lines
    logger.removeHandler(made)


def test_a_line_has_every_required_key_and_its_fields(captured) -> None:
    logger, lines = captured
    logger.warning("order refused: %s", "duplicate", extra=fields(tenant="t1", order_id="o-9", error="conflict"))
    [line] = lines()
    assert list(line)[:len(REQUIRED_KEYS)] == list(REQUIRED_KEYS)
    assert line["level"] == "WARNING" and line["logger"] == "accrue.test.logs" and line["process"] == "api"
    assert line["message"] == "order refused: duplicate"
    assert (line["tenant"], line["order_id"], line["error"]) == ("t1", "o-9", "conflict")
    assert line["trace_id"] is None and line["span_id"] is None
    assert line["timestamp"].endswith("+00:00")


def test_a_line_without_fields_still_has_the_required_keys(captured) -> None:
    logger, lines = captured
    logger.info("plain")
    [line] = lines()
    assert set(REQUIRED_KEYS) <= set(line) and line["tenant"] is None


def test_inside_a_span_the_line_carries_its_trace_and_span_ids(captured) -> None:
    logger, lines = captured
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("accept") as span:
        logger.info("inside", extra=fields(tenant="t1"))
    context = span.get_span_context()
    [line] = lines()
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")


def test_an_exception_is_one_line_with_its_type_and_traceback(captured) -> None:
    logger, lines = captured
    try:
        raise KeyError("lot")
    except KeyError:
        logger.exception("failed", extra=fields(job="expiry"))
    [line] = lines()
    assert line["error"] == "KeyError" and "Traceback" in line["exception"] and line["job"] == "expiry"


def test_fields_refuses_names_off_the_list_and_non_scalars() -> None:
    with pytest.raises(ValueError, match="email"):
        fields(tenant="t1", email="a@example.org")
    with pytest.raises(ValueError, match="scalar"):
        fields(tenant={"id": "t1"})


def test_an_admin_act_names_its_actor_and_action(captured) -> None:
    logger, lines = captured
    log_admin_act(logger, "apikey.revoke", actor="key_123", tenant="t1", target="key_456")
    [line] = lines()
    assert (line["action"], line["actor"], line["tenant"], line["target"]) == ("apikey.revoke", "key_123", "t1",
                                                                              "key_456")


@settings(deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(ALLOWED_FIELDS)),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=40))))
def test_any_allowed_fields_give_one_parseable_line(values) -> None:
    stream = io.StringIO()
    record = logging.LogRecord("accrue.x", logging.INFO, __file__, 1, "m\n%s", ("x\"y",), None)
    record.__dict__.update(fields(**values))
    made = handler("ingest", stream)
    made.emit(record)
    text = stream.getvalue()
    assert text.count("\n") == 1
    line = json.loads(text)
    assert line["message"] == 'm\nx"y' and line["process"] == "ingest"
    for name, value in values.items():
        if value is None:
            assert name not in line or (name == "tenant" and line[name] is None)
        else:
            assert line[name] == value


def test_the_opentelemetry_handler_carries_the_fields_as_attributes() -> None:
    # What the Azure Monitor distro installs on the root logger: its records become
    # Application Insights traces whose customDimensions are these attributes.
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logging.getLogger("accrue.test.otel")
    logger.propagate = False
    otel = LoggingHandler(logger_provider=provider)
    logger.addHandler(otel)
    try:
        logger.warning("order refused", extra=fields(tenant="t1", order_id="o-9", count=2, target=None))
    finally:
        logger.removeHandler(otel)
    [exported] = exporter.get_finished_logs()
    attributes = dict(exported.log_record.attributes)
    assert attributes["accrue.tenant"] == "t1" and attributes["accrue.order_id"] == "o-9"
    assert attributes["accrue.count"] == 2 and "accrue.target" not in attributes
