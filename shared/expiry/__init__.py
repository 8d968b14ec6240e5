"""Points expiry (issue 6): the tenant's expiry policy, the expiry calendar, the
daily expiry job and customers' upcoming expiries. The lot arithmetic itself is
pure and lives in ``shared.ledger.lots``. This package file stays import-light:
``shared.domain.tenants`` imports ``shared.expiry.policy``."""
