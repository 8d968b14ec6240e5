"""The points ledger: append-only entries per customer partition."""
