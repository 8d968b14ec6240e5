"""Structured logs: every log line of the platform is one JSON object on stderr.

What it guarantees:

- Each line carries ``timestamp`` (UTC, ISO 8601, milliseconds), ``level``,
  ``logger``, ``message``, ``process`` (``api``, ``ingest``, ``project``,
  ``functions``), ``trace_id`` and ``span_id`` (of the OpenTelemetry span
  current when the line was logged, ``null`` outside a span) and ``tenant``
  (``null`` where no single tenant applies), whatever logged it, our code or a
  library.
- Our code adds facts only as named fields, from a closed list
  (``ALLOWED_FIELDS``), through ``fields(...)``: ``log.info("...",
  extra=fields(tenant=..., order_id=...))``. An unknown name is a programming
  error and raises; ``tests/unit/telemetry/test_log_calls.py`` reads every log
  call in ``shared/`` and ``functions/`` and fails on one without
  ``extra=fields(...)`` or with a name off the list. The list holds
  identifiers, codes and counts, never a personal value (name, email, phone,
  address, birth date): personal data reaches no log, and a scenario test scans
  the whole output of a live platform for the values it used.
- An administrative act (a key issued or revoked, a rule set published or
  activated, tenant settings changed, an erasure...) logs one line with
  ``actor`` (the API key id, never the key) and ``action``: ``log_admin_act``.
  The audit trail (``shared.audit``) remains the record; this line is for
  operators' searches and alerts.

Configured once per process by ``configure`` (from ``shared.telemetry``); the
level comes from ``ACCRUE_LOG_LEVEL`` (default ``INFO``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import traceback
from datetime import datetime, timezone
from typing import Any

# Our fields travel as LogRecord attributes named "accrue.<field>": the prefix
# cannot collide with LogRecord's own attributes ("process", "message"...), and
# the OpenTelemetry logging handler (Azure Monitor) turns them into log
# attributes of the same names, so they reach Application Insights as
# customDimensions without a formatter.
FIELD_PREFIX = "accrue."
FUNCTIONS_PROCESS = "functions"

# Keys present on every line, in this order.
REQUIRED_KEYS = ("timestamp", "level", "logger", "message", "process", "trace_id", "span_id", "tenant")

# The closed list of fields a log call may add (besides the tenant, which every
# line carries). Identifiers the platform mints or the merchant's order ids,
# codes and counts; nothing a person could be recognised by.
ALLOWED_FIELDS: frozenset[str] = frozenset({
    "tenant",           # tenant id
    "order_id",         # the merchant's order id
    "rule_set_id",      # rule set id
    "rule_set_version", # rule set version (int)
    "actor",            # API key id of who acted (never the key); "system" for the platform itself
    "action",           # what an administrative act did, dotted: "apikey.create"
    "target",           # what the act was about: a key id, an endpoint id, a job name
    "endpoint_id",      # webhook endpoint id
    "delivery_id",      # webhook delivery id
    "run_id",           # export run id
    "job",              # timer job name
    "poison_id",        # id of a poisoned item
    "partner_id",       # redemption partner id
    "redemption_id",    # redemption id
    "claim",            # an order claim's partition key
    "source",           # which trigger or worker: "ingest", "projection", a thread name
    "route",            # HTTP route template (never the concrete path, which can hold ids)
    "error",            # an error code or exception type name
    "outcome",          # a short result word: "sent", "failed", "disabled"
    "count",            # a number of items
    "attempt",          # an attempt number
    "status",           # an HTTP or process status code
    "audit_seq",        # sequence number of the audit record an administrative act wrote
    "voucher_id",       # voucher id (vc-...; never its code, which is a secret)
    "pool_id",          # a partner's voucher code pool id
    "referral_id",      # referral id (never the referral code)
    "points",           # a number of points
})

_SCALARS = (str, int, float, bool, type(None))
_configured_process: str | None = None
_lock = threading.Lock()


def fields(**values: Any) -> dict[str, Any]:
    """The ``extra=`` of a log call: named facts from ``ALLOWED_FIELDS``, scalar values only.

    A ``None`` value is left out (the field does not apply). Raises ``ValueError``
    on a name off the list or a non-scalar value (a programming error the
    log-call scan test catches before it ships)."""
    unknown = sorted(set(values) - ALLOWED_FIELDS)
    if unknown:
        raise ValueError(f"log fields not in ALLOWED_FIELDS: {', '.join(unknown)}")
    for name, value in values.items():
        if not isinstance(value, _SCALARS):
            raise ValueError(f"log field {name} must be a scalar, got {type(value).__name__}")
    return {FIELD_PREFIX + name: value for name, value in values.items() if value is not None}


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a log call passed, by name."""
    return {key[len(FIELD_PREFIX):]: value for key, value in record.__dict__.items()
            if key.startswith(FIELD_PREFIX)}


def log_admin_act(logger: logging.Logger, action: str, *, actor: str | None, tenant: str | None,
                  target: str | None = None, **more: Any) -> None:
    """One INFO line for an administrative act: who (API key id) did what, to which tenant and object."""
    logger.info("admin act %s", action,
                extra=fields(action=action, actor=actor or "system", tenant=tenant, target=target, **more))


def _span_ids() -> tuple[str | None, str | None]:
    try:
        from opentelemetry import trace
    except ImportError:  # telemetry is optional for a line to be written
        return None, None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None, None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: the required keys, then the record's fields, then any exception."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        extra = fields_of(record)
        trace_id, span_id = _span_ids()
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": self.process,
            "trace_id": trace_id,
            "span_id": span_id,
            "tenant": extra.get("tenant"),
        }
        for name, value in extra.items():
            if name != "tenant":
                line[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
            line.setdefault("error", record.exc_info[0].__name__)
        return json.dumps(line, ensure_ascii=False, default=str)


def handler(process: str, stream: Any = None) -> logging.Handler:
    """A stream handler writing JSON lines for ``process`` (stderr by default)."""
    made = logging.StreamHandler(stream if stream is not None else sys.stderr)
    made.setFormatter(JsonFormatter(process))
    made.set_name("accrue-json")
    return made


def configure(process: str) -> None:
    """Make every log line of this process a JSON line on stderr, at ``ACCRUE_LOG_LEVEL``.

    Replaces the root logger's stream handlers (a plain-text one from
    ``basicConfig`` would duplicate each line) and keeps any other handler, such
    as the OpenTelemetry one the Azure Monitor distro adds. In the Functions
    worker it adds nothing: the worker already forwards every record to the
    host, and the host would log our stderr a second time; there the fields
    reach Application Insights as the records' ``accrue.*`` attributes (with the
    trace context) through the distro's handler. Idempotent: a second call
    changes nothing."""
    global _configured_process
    with _lock:
        if _configured_process is not None:
            return
        _configured_process = process
        if process == FUNCTIONS_PROCESS:
            return
        root = logging.getLogger()
        for existing in list(root.handlers):
            if type(existing) is logging.StreamHandler:
                root.removeHandler(existing)
        root.addHandler(handler(process))
        level = os.environ.get("ACCRUE_LOG_LEVEL", "INFO").strip().upper() or "INFO"
        root.setLevel(level if level in logging.getLevelNamesMapping() else "INFO")
