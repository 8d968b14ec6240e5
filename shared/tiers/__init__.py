"""Tiers (issue 6): a tenant's tier programme, upgrades from the change feed,
downgrades at the periodic evaluation with a grace rule, and an append-only tier
history. See docs/tiers.md."""

from shared.tiers.model import TierProgram, check_program
from shared.tiers.service import TierService

__all__ = ["TierProgram", "TierService", "check_program"]
