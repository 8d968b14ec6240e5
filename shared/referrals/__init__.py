"""Referrals (issue 20): referral codes, referees, rewards on the first qualifying
order, abuse controls, reversal. User documentation: docs/referrals.md."""

from shared.referrals.service import ReferralProgramme, Referrals

__all__ = ["ReferralProgramme", "Referrals"]
