"""Transfers of points between members (issue 19): the saga (saga.py) and the tenant's limits (policy.py)."""
