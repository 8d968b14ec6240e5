"""Vouchers (issue 20): points exchanged for a code, redeemed at a point of sale;
partners' code pools. One module per job: ``codes`` (the code format, its check
symbol, its hash), ``service`` (issue, redeem, cancel, expiry and refunds),
``pools`` (partner code pools: upload, hand out). User documentation:
docs/vouchers.md."""

from __future__ import annotations

from shared.clock import Clock
from shared.ledger.service import Ledger
from shared.spend import Spend
from shared.store.port import DocumentStore
from shared.vouchers.pools import CodePools, Digest
from shared.vouchers.service import Vouchers


def build_vouchers(store: DocumentStore, ledger: Ledger, clock: Clock, spend: Spend, digest: Digest) -> Vouchers:
    pools = CodePools(store, clock, digest)
    return Vouchers(store, ledger, clock, spend.catalogue, spend.policies, spend.redemptions, digest, pools)


__all__ = ["Vouchers", "CodePools", "build_vouchers"]
