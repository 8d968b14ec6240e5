"""Deterministic A/B assignment of customers to rule set versions.

A customer's arm is a pure function of the experiment's secret and the
customer id: ``HMAC-SHA256(secret, customer_id)``, first 8 bytes as an
unsigned integer, modulo 10,000, compared with the treatment share in basis
points. So a customer stays in one arm for the whole experiment, on every
process, and nobody without the secret can predict or steer the split.
"""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal

BUCKETS = 10_000
SECRET_BYTES = 32


def bucket(secret: bytes, customer_id: str) -> int:
    assert len(secret) >= 16, "experiment secrets are at least 128 bits"
    digest = hmac.new(secret, customer_id.encode("utf-8"), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def share_in_buckets(share: Decimal) -> int:
    assert Decimal(0) <= share <= Decimal(1)
    return int(share * BUCKETS)


def assign(secret: bytes, customer_id: str, treatment_share: Decimal) -> str:
    """``"B"`` (treatment) for a ``treatment_share`` of customers, else ``"A"`` (control)."""
    return "B" if bucket(secret, customer_id) < share_in_buckets(treatment_share) else "A"
