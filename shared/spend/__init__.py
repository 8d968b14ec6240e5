"""Spending points (issue 6): the rewards catalogue, redemptions (direct,
two-phase, partner-fulfilled, reviewed), conversions to partner currencies, and
the partner-adapter port with its retries and circuit breaker.

One module per job: ``catalogue`` (rewards and stock), ``policy`` (a tenant's
reservation TTL and review threshold), ``redemptions`` (the ledger flows),
``conversions`` (programmes and rates), ``partners`` (the port, the HTTP
adapter, retries, the partner directory), ``circuit`` (the breaker).
User documentation: docs/spend.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.clock import Clock
from shared.ledger.service import Ledger
from shared.spend.catalogue import Catalogue
from shared.spend.conversions import Conversions
from shared.spend.partners import PartnerDirectory
from shared.spend.policy import SpendPolicies
from shared.spend.redemptions import Redemptions
from shared.store.port import DocumentStore


@dataclass
class Spend:
    catalogue: Catalogue
    policies: SpendPolicies
    partners: PartnerDirectory
    redemptions: Redemptions
    conversions: Conversions


def build_spend(store: DocumentStore, ledger: Ledger, clock: Clock) -> Spend:
    partners = PartnerDirectory(store, clock)
    catalogue = Catalogue(store, clock, partner_exists=partners.exists)
    policies = SpendPolicies(store, clock)
    redemptions = Redemptions(store, ledger, clock, catalogue, policies, partners)
    conversions = Conversions(store, clock, redemptions, partner_exists=partners.exists)
    return Spend(catalogue, policies, partners, redemptions, conversions)


__all__ = ["Spend", "build_spend"]
