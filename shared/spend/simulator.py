"""The partner simulator: what a sandbox tenant's partner rewards and conversions call
instead of a real partner.

It implements ``PartnerPort`` in process (no network): every request of a sandbox
tenant is fulfilled at once with a partner reference derived from the request's
``reference`` (our redemption id), so a repeat of a request is the same fulfilment,
exactly as the partner protocol demands of a real partner. A ``partnerAccount``
starting with ``FAIL`` is refused for good, so a sandbox can try the refusal path
too. Requests of a tenant that is not a sandbox are refused (permanent): a real
programme's points never leave for a partner that does not exist.

The platform wires it under the partner id ``SIMULATOR_ID`` (``PartnerDirectory.use``);
the sandbox's sample catalogue (``shared.app.sample_data``) refers to it.
"""

from __future__ import annotations

import hashlib
from typing import Callable

from shared.spend.partners import PartnerCallFailed, PartnerReceipt, PartnerRequest

SIMULATOR_ID = "sandbox-simulator"
REFUSED_PREFIX = "FAIL"


class PartnerSimulator:
    def __init__(self, is_sandbox: Callable[[str], bool]) -> None:
        self._is_sandbox = is_sandbox

    def fulfil(self, request: PartnerRequest) -> PartnerReceipt:
        if not self._is_sandbox(request.tenant_id):
            raise PartnerCallFailed(f"partner {request.partner_id!r} is the sandbox simulator: it fulfils only "
                                    "sandbox tenants' requests", permanent=True)
        if (request.partner_account or "").upper().startswith(REFUSED_PREFIX):
            raise PartnerCallFailed("the simulated partner refuses this account (it starts with FAIL)",
                                    permanent=True)
        digest = hashlib.sha256(f"{request.partner_id}|{request.reference}".encode()).hexdigest()
        return PartnerReceipt(f"sim-{digest[:20]}")
