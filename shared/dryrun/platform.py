"""A platform for one dry run: the same services, code and checks as the real one,
over a copy-on-write view of the store (``OverlayStore``) and a bus that hands
orders straight to the dry run's own ingestion (``InlineBus``).

Why a whole platform rather than a "dry" flag threaded through every service: a
flag must be remembered at every write (ledger, read models, markers, audit,
reviews, stock, velocity counters...) and one forgotten branch writes for real;
here the real code runs unchanged (validation, rules, fraud screens, balance
checks, idempotency replays) and the only store it can reach keeps its writes in
memory, dropped with the dry platform. Nothing can reach the real store, the
bus, the webhooks (they are fed by the change feed, which never sees these
writes) or another process (tenant-change announcements go nowhere).

Orders go through the real intake: its claims (shared/app/claims.py: the
conditional create that makes one send of an order id the publisher) are made in
the overlay too, so the inline ingestion finds the claim its message must match
and credits as the real one would, while the real store never holds the claim: a
real send of the same order afterwards is new, not a replay of the dry run.

What a dry run cannot do for real it does not do: a partner (``shared.spend.partners``)
is never called; the dry run assumes it would accept (its reference says so)."""

from __future__ import annotations

import asyncio
from typing import Any, Sequence

from shared.app.orders import Accepted
from shared.domain.orders import Order
from shared.dryrun.bus import InlineBus
from shared.dryrun.overlay import OverlayStore
from shared.platform import Platform
from shared.spend.partners import PartnerReceipt, PartnerRequest

DRY_PARTNER_REFERENCE = "dry-run:not-sent"


class _UncalledPartner:
    """Stands in for a partner during a dry run: never sends anything."""

    def fulfil(self, request: PartnerRequest) -> PartnerReceipt:
        return PartnerReceipt(partner_reference=DRY_PARTNER_REFERENCE, attempts=0)


def dry_platform(real: Platform) -> Platform:
    store = OverlayStore(real.store, lambda: real.clock.now().timestamp())
    bus = InlineBus()
    # Injected earning rules (tests, tools) are kept; else the dry platform's own provider
    # reads the same active rule sets through the overlay.
    rules = None if real.rules is real.rule_provider else real.rules
    dry = Platform(settings=real.settings, store=store, bus=bus, clock=real.clock, rules=rules,
                   key_provider=real.key_provider)
    bus.consumer = dry.ingest.handle
    dry.tenant_changes.peer = None
    _never_call_partners(dry)
    _answer_orders_when_decided(dry)
    dry.extras["dryRun"] = True
    return dry


def is_dry(platform: Platform) -> bool:
    return platform.extras.get("dryRun") is True


def _never_call_partners(dry: Platform) -> None:
    partners = dry.spend.partners
    find = partners.port

    def port(partner_id: Any) -> Any:
        find(partner_id)  # an unknown partner is refused as in the real call
        return _UncalledPartner()

    partners.port = port  # type: ignore[method-assign]


def _answer_orders_when_decided(dry: Platform) -> None:
    """The real intake answers "queued" and ingestion decides later; in a dry run
    ingestion ran inside ``publish``, so answer with what it decided."""
    intake = dry.intake
    accept = intake.accept

    def decided(tenant_id: str, orders: Sequence[Order]) -> list[Accepted]:
        accepted = accept(tenant_id, orders)
        views = intake.statuses(tenant_id, [a.order_id for a in accepted])  # one read for a batch
        return [Accepted(a.order_id, a.customer_id, view, a.newly_queued) for a, view in zip(accepted, views)]

    async def decided_async(tenant_id: str, orders: Sequence[Order]) -> list[Accepted]:
        return await asyncio.to_thread(decided, tenant_id, orders)

    intake.accept = decided  # type: ignore[method-assign]
    intake.accept_async = decided_async  # type: ignore[method-assign]
