"""Fraud controls (issue 6): velocity limits, the anomaly check, and held earns.

One module per job: ``policy`` (a tenant's limits, validated, stored),
``velocity`` (windows from the customer's ledger; tenant counters), ``anomaly``
(the baseline arithmetic), ``controls`` (the checks ingestion and redemptions
call), ``holds`` (turning a plan into a hold, the review handlers for kind
``earn``). The review queue itself is ``shared.reviews``. User documentation:
docs/fraud.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.clock import Clock
from shared.fraud.controls import EarnScreen, FraudControls
from shared.fraud.holds import EarnHolds
from shared.fraud.policy import FraudPolicies, FraudPolicy
from shared.ledger.service import Ledger
from shared.reviews.queue import ReviewQueue
from shared.store.port import DocumentStore


@dataclass
class Fraud:
    policies: FraudPolicies
    controls: FraudControls
    holds: EarnHolds


def build_fraud(store: DocumentStore, ledger: Ledger, clock: Clock, reviews: ReviewQueue) -> Fraud:
    policies = FraudPolicies(store, clock)
    holds = EarnHolds(ledger, reviews)
    holds.register()
    return Fraud(policies, FraudControls(store, ledger, clock, policies), holds)


__all__ = ["EarnScreen", "Fraud", "FraudControls", "FraudPolicies", "FraudPolicy", "build_fraud"]
