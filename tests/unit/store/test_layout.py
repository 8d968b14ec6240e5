"""The partition-key and TTL rules of shared/store/layout.py."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import ConfigurationError
from shared.store.layout import (
    APPROVALS,
    BY_NAME,
    DAY_SECONDS,
    LEDGER,
    MESSAGE_BUCKETS,
    NEVER_EXPIRE,
    POISON,
    REVIEWS,
    SYSTEM,
    TTL_RULES,
    WEBHOOK_ATTEMPTS,
    WEBHOOK_MESSAGES,
    TtlPolicy,
    attempt_pk,
    attempt_pks,
    container_default_ttl,
    message_bucket,
    message_pk,
)
from shared.webhooks.service import message_id

ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=40)


@given(ids, ids)
def test_a_message_partition_is_a_function_of_tenant_and_message_id(tenant: str, source: str) -> None:
    msg = message_id(tenant, source)
    pk = message_pk(tenant, msg)
    assert pk == message_pk(tenant, msg)
    assert pk.startswith(f"{tenant}:m") and 0 <= message_bucket(msg) < MESSAGE_BUCKETS


def test_messages_spread_over_every_bucket_evenly() -> None:
    counts = [0] * MESSAGE_BUCKETS
    for n in range(64_000):
        counts[message_bucket(message_id("acme", f"order-{n}"))] += 1
    assert min(counts) > 800 and max(counts) < 1200  # 1000 each expected


def test_message_buckets_are_stable_across_processes() -> None:
    # blake2b, not the salted built-in hash: a message written by one process is found by another.
    assert message_pk("acme", "msg_abc") == "acme:m34"


def test_attempt_partitions_are_per_tenant_and_utc_day() -> None:
    assert attempt_pk("acme", "2027-01-15T23:59:59.999Z") == "acme:2027-01-15"
    assert attempt_pks("acme", date(2027, 1, 30), date(2027, 2, 1)) == [
        "acme:2027-02-01", "acme:2027-01-31", "acme:2027-01-30"]
    with pytest.raises(AssertionError):
        attempt_pk("acme", "yesterday")


def test_no_ttl_rule_touches_the_ledger_the_audit_log_or_rule_versions() -> None:
    assert {"ledger", "audit", "ruleversions"} <= NEVER_EXPIRE
    assert all(rule.container not in NEVER_EXPIRE for rule in TTL_RULES)
    assert set(BY_NAME) == NEVER_EXPIRE | {rule.container for rule in TTL_RULES}, \
        "every container is either under a TTL rule or listed as never expiring"
    for name in NEVER_EXPIRE:
        assert container_default_ttl(name) is None
        assert TtlPolicy().seconds(name, {"docType": "entry"}) is None


def test_container_defaults_follow_the_rules() -> None:
    assert container_default_ttl(WEBHOOK_MESSAGES) == 30 * DAY_SECONDS
    assert container_default_ttl(POISON) == 90 * DAY_SECONDS
    # Only some kinds of these expire: the container's default is "never", each kind its own.
    assert container_default_ttl(SYSTEM) == -1
    assert container_default_ttl(REVIEWS) == -1
    policy = TtlPolicy()
    assert policy.seconds(SYSTEM, {"docType": "workItem"}) == -1
    assert policy.seconds(SYSTEM, {"docType": "ratelimit"}) == 2 * DAY_SECONDS
    assert policy.seconds(REVIEWS, {"docType": "review", "status": "open"}) == -1
    assert policy.seconds(REVIEWS, {"docType": "review", "status": "approved"}) == 365 * DAY_SECONDS
    assert policy.seconds(APPROVALS, {"status": "pending"}) == 90 * DAY_SECONDS


def test_every_rule_keeps_documents_at_least_a_day() -> None:
    # Records a caller may still act on (tenant provisioning, a claim being retried) outlive 24 h.
    assert all(rule.days >= 1 for rule in TTL_RULES)


def test_overrides_come_from_the_setting() -> None:
    policy = TtlPolicy.from_setting(" webhookattempts=60, system/ratelimit=7 ")
    assert policy.seconds(WEBHOOK_ATTEMPTS, {}) == 60 * DAY_SECONDS
    assert policy.seconds(SYSTEM, {"docType": "ratelimit"}) == 7 * DAY_SECONDS
    assert TtlPolicy.from_setting("").days == TtlPolicy().days


@pytest.mark.parametrize("text", ["ledger=30", "audit=1", "webhookattempts=0", "webhookattempts=abc",
                                  "webhookattempts", "nosuch=5", "webhookattempts=99999"])
def test_a_bad_override_is_refused_naming_the_setting(text: str) -> None:
    with pytest.raises(ConfigurationError, match="ACCRUE_TTL_DAYS"):
        TtlPolicy.from_setting(text)


def test_the_ledger_is_never_given_a_ttl_even_by_an_override() -> None:
    with pytest.raises(ConfigurationError):
        TtlPolicy({LEDGER: 30})


def _queried_fields() -> set[str]:
    """Every field path the product's code filters or orders by (literal field names)."""
    import re
    from pathlib import Path

    found: set[str] = set()
    for source in Path(__file__).resolve().parents[3].joinpath("shared").rglob("*.py"):
        text = source.read_text()
        found |= set(re.findall(r'Filter\(\s*"([A-Za-z_.]+)"', text))
        found |= set(re.findall(r'order_by="([A-Za-z_.]+)"', text))
    return found


def test_no_field_a_query_uses_is_left_unindexed() -> None:
    """Cosmos DB needs an index for an ORDER BY and scans (RU) for a filter on an
    unindexed path: every field the code queries stays indexed in every container."""
    from shared.store.layout import REINDEXED_PATHS, UNINDEXED_PATHS, indexing_policy

    fields = _queried_fields()
    assert {"docType", "seq", "createdAt", "attributes.rewardId"} <= fields  # the scan finds them
    for container, excluded in UNINDEXED_PATHS.items():
        included = {p["path"] for p in indexing_policy(container)["includedPaths"]}
        assert set(REINDEXED_PATHS.get(container, ())) <= included
        for field_path in fields:
            path = "/" + field_path.replace(".", "/")
            for pattern in excluded:
                prefix = pattern.removesuffix("/*").removesuffix("/?")
                hidden = path == prefix or path.startswith(prefix + "/")
                assert not hidden or f"{path}/?" in included, f"{container}: {pattern} hides {field_path}"
