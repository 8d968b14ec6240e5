"""Dual control of platform-admin destructive acts."""

from shared.governance.dual_control import (
    ACTIONS,
    ApprovalExpired,
    DualControl,
    DualControlRequired,
    RequestNotPending,
    SelfApproval,
)

__all__ = ["ACTIONS", "ApprovalExpired", "DualControl", "DualControlRequired", "RequestNotPending", "SelfApproval"]
