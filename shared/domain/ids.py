"""Identifier rules shared by every edge: tenant, customer, order and key ids.

Ids become parts of partition keys (``tenantId:customerId``), so they may not
contain ``:``; they are also used in blob paths and URLs, so they are limited
to a conservative alphabet.
"""

from __future__ import annotations

import re

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$"
ID_MAX_LENGTH = 64  # what ID_PATTERN allows, stated for the OpenAPI document's maxLength
ID_RE = re.compile(ID_PATTERN)


def is_valid_id(value: str) -> bool:
    return bool(ID_RE.match(value))
