"""The referral velocity screen counts the referrer's own referrals of the last day, however
many the tenant has: it read every qualified referral of the tenant, at most 10,000 of them in
no order, so a large programme's screen counted a sample and let a fast referrer through."""

from __future__ import annotations

from datetime import timedelta

from shared.clock import iso
from shared.store.layout import CODES
from shared.store.port import Create, PartitionBatch


def _referral(tenant_id: str, referee: str, referrer: str, qualified_at: str) -> PartitionBatch:
    pk = f"{tenant_id}:referee:{referee}"
    return PartitionBatch(pk, [Create({"id": "referral", "pk": pk, "docType": "referral", "tenantId": tenant_id,
                                       "referralId": f"r-{referee}", "refereeId": referee, "referrerId": referrer,
                                       "status": "qualified", "qualifiedAt": qualified_at})])


def test_the_velocity_screen_counts_the_referrers_own_referrals_past_ten_thousand(platform, clock) -> None:
    now = clock.now()
    today, last_week = iso(now), iso(now - timedelta(days=7))
    others = [_referral("acme", f"a{n:05d}", f"busy{n % 50}", today) for n in range(10_050)]
    for start in range(0, len(others), 500):
        platform.store.batches(CODES, others[start:start + 500])
    # The fast referrer's referrals sort after the others (referee ids "z..."): a sample of
    # the tenant's first 10,000 never reached them.
    mine = [_referral("acme", f"z{n}", "fast", today) for n in range(3)] + [_referral("acme", "zz", "fast", last_week)]
    platform.store.batches(CODES, mine)
    assert platform.referrals._recent("acme", "fast", now) == 3  # noqa: SLF001 - the screen's count itself
