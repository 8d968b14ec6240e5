"""Customers, their balances, their ledger history and manual adjustments."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import Field

from shared.api.contract import op
from shared.api.contract.customers import (AdjustmentOutcome, Balance, Customer, CustomerPage, LedgerPage,
                                           TransferOutcome, TransferView)
from shared.api.deps import platform
from shared.api.pagination import BadCursor, Cursor, keyset, position
from shared.api.reads import json_answer, run_read
from shared.api.dryrun import dry_runnable
from shared.api.security import requires
from shared.app.auth import Principal
from shared.app.corrections import AdjustmentRequest, entry_view
from shared.app.customers import CustomerProfile, public_view
from shared.app.projections import BALANCE_ID
from shared.clock import iso
from shared.domain.ids import ID_MAX_LENGTH, ID_PATTERN
from shared.domain.inputs import Instant
from shared.domain.wallets import WalletName
from shared.errors import Conflict, FieldProblem, ValidationFailed
from shared.ledger.entries import EntryType, settlement_id
from shared.ledger.wallets import balances as wallet_balances
from shared.platform import Platform
from shared.store.layout import BALANCES, LEDGER, customer_pk
from shared.store.port import read_many
from shared.transfers.saga import TransferRequest

router = APIRouter(prefix="/v1/customers", tags=["customers"])

CustomerId = Annotated[str, Path(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH,
                                  description="the tenant's own customer id")]


class NewCustomer(CustomerProfile):
    """A new profile; personal fields (email, name, phone, birthDate, postalAddress) are
    accepted and stored only encrypted (``shared.privacy``), never echoed back here."""

    referral_code: str | None = Field(default=None, alias="referralCode", min_length=1, max_length=32,
                                      description="another customer's referral code: this customer is their referee "
                                                  "(docs/referrals.md)")


@router.post("", status_code=201, summary="Register a customer",
             **op("customers.register", {201: Customer}, errors=(409,)))
def register(body: NewCustomer, response: Response, p: Annotated[Platform, Depends(platform)],
             who: Annotated[Principal, Depends(requires("ingest"))]) -> dict:
    """Registers a customer under the tenant's own id (capability ``ingest``); personal fields are
    stored encrypted and not echoed. 409 when the id is already registered."""
    owner = None
    if body.referral_code is not None:
        # Checked before anything is written: a bad or self-referring code registers nobody.
        owner = p.referrals.check_enrolment(who.tenant_id, body.customer_id, body.referral_code,
                                            body.personal().fields() if body.personal() else {})
    try:
        doc = p.customers.register(who.tenant_id, body, referrer_id=owner["customerId"] if owner else None)
    except Conflict:
        existing = p.customers.find(who.tenant_id, body.customer_id) if owner is not None else None
        if owner is not None and existing is not None and existing.get("referrerId") == owner["customerId"]:
            # A retry of a registration with this code that died before its enrolment: the
            # enrolment is finished (idempotent), the retry still learns the customer exists.
            p.referrals.enrol(who.tenant_id, body.customer_id, owner)
        raise
    if owner is not None:
        p.referrals.enrol(who.tenant_id, body.customer_id, owner)
    response.headers["Location"] = f"/v1/customers/{body.customer_id}"
    return public_view(doc)


@router.get("", summary="List customers by id", **op("customers.list", CustomerPage))
def list_customers(request: Request, p: Annotated[Platform, Depends(platform)],
                   who: Annotated[Principal, Depends(requires("read"))], cursor: Cursor = None,
                   limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    """Customers in id order (capability ``read``), ``limit`` per page; follow ``next``."""
    after = position(request, who.tenant_id, cursor, str)
    docs = p.customers.list(who.tenant_id, str(after[0]) if after else None, limit + 1)
    return keyset(request, who.tenant_id, docs, limit, lambda doc: [doc["customerId"]], public_view)


@router.get("/{customerId}", summary="Read a customer", **op("customers.get", Customer, errors=(404,)))
def read(customerId: CustomerId, p: Annotated[Platform, Depends(platform)],
         who: Annotated[Principal, Depends(requires("read"))]) -> dict:
    """A customer (capability ``read``); ``personalData`` only for keys with ``personal-data``."""
    doc = p.customers.get(who.tenant_id, customerId)
    view = public_view(doc)
    if who.can("personal-data") and doc.get("personal"):
        view["personalData"] = p.vault.open(doc)  # analysts never see personal fields
    return view


@router.get("/{customerId}/balance", summary="Balance now (read model) or as of a past instant (ledger)",
            **op("customers.balance", Balance, errors=(404,)))
async def balance(customerId: CustomerId, p: Annotated[Platform, Depends(platform)],
                  who: Annotated[Principal, Depends(requires("read"))],
                  asOf: Annotated[Instant | None, Query()] = None) -> Response:
    """Available, pending and reserved points (capability ``read``). Without ``asOf`` from the read model
    (``dataAsOf`` says how fresh); with ``asOf`` from the ledger itself (``source: ledger``)."""
    return await balance_answer(p, who, customerId, asOf)


async def balance_answer(p: Platform, who: Principal, customerId: str, asOf=None) -> Response:
    """The balance route's answer once its caller is authenticated and its parameters valid
    (shared by the route and ``shared.api.hot_reads``)."""
    # The read-model answer is three point reads, served on the event loop; an as-of read walks
    # the customer's ledger back to the instant, which may take long: on the read threads.
    return json_answer(await run_read(p.store, _balance, p, who.tenant_id, customerId, asOf, inline=asOf is None))


def _balance(p: Platform, tenant_id: str, customerId: str, asOf) -> dict:
    if asOf is not None:
        p.customers.get(tenant_id, customerId)
        head = p.ledger.head_as_of(tenant_id, customerId, asOf)
        return {"customerId": customerId, "available": head.balance, "pending": head.pending,
                "reserved": head.reserved, "lifetimeEarned": head.lifetime_earned, "asOf": iso(asOf),
                "source": "ledger", "dataAsOf": iso(asOf), **_wallets(p, tenant_id, dict(head.wallets), head.balance)}
    doc = p.store.read(BALANCES, customer_pk(tenant_id, customerId), BALANCE_ID)
    if doc is None:
        p.customers.get(tenant_id, customerId)  # 404 for an unknown customer
        doc = {"available": 0, "pending": 0, "reserved": 0, "lifetimeEarned": 0, "ordersCredited": 0,
               "lastEntryAt": None}
    checkpoint = p.checkpoint.load().get("caughtUpAt")
    freshest = max(filter(None, (doc.get("lastEntryAt"), checkpoint)), default=None)
    return {"customerId": customerId, "available": doc["available"], "pending": doc["pending"],
            "reserved": doc.get("reserved", 0), "lifetimeEarned": doc["lifetimeEarned"],
            "ordersCredited": doc.get("ordersCredited", 0), "source": "read-model", "dataAsOf": freshest,
            **_wallets(p, tenant_id, doc.get("wallets") or {}, doc["available"])}


def _wallets(p: Platform, tenant_id: str, running: dict[str, int], balance: int) -> dict:
    """``wallets`` for a tenant with wallets (every wallet, 0 where it has none); nothing otherwise."""
    settings = p.tenants.get(tenant_id).wallets
    if settings is None:
        return {}
    return {"wallets": wallet_balances(running, balance, settings)}


@router.get("/{customerId}/ledger", summary="Ledger history, newest first, paginated",
            **op("customers.ledger", LedgerPage, errors=(404,)))
async def history(request: Request, customerId: CustomerId, p: Annotated[Platform, Depends(platform)],
                  who: Annotated[Principal, Depends(requires("read"))],
                  cursor: Cursor = None,
                  limit: Annotated[int, Query(ge=1, le=200)] = 50,
                  entryType: Annotated[list[EntryType] | None, Query()] = None,
                  createdFrom: Annotated[Instant | None, Query(alias="from")] = None,
                  createdTo: Annotated[Instant | None, Query(alias="to")] = None,
                  wallet: Annotated[WalletName | None, Query(description="only entries that moved this wallet")] = None
                  ) -> Response:
    """The customer's ledger entries, newest first (capability ``read``), filtered by ``entryType``
    (repeatable), ``from``, ``to`` and ``wallet``; follow ``next`` for the following page."""
    return await history_answer(request, p, who, customerId, cursor, limit, entryType, createdFrom, createdTo, wallet)


async def history_answer(request: Request, p: Platform, who: Principal, customerId: str, cursor: str | None,
                         limit: int, entryType: list[EntryType] | None = None, createdFrom=None, createdTo=None,
                         wallet: str | None = None) -> Response:
    """The history route's answer once its caller is authenticated and its parameters valid
    (shared by the route and ``shared.api.hot_reads``)."""
    before = position(request, who.tenant_id, cursor, int)
    if before is not None and not (isinstance(before[0], int) and before[0] >= 1):
        raise BadCursor("malformed position")
    types = [t.value for t in entryType or ()]
    # An unfiltered page is one range of the (pk, seq) index, at most 201 rows: on the event
    # loop. A filter may scan far into a long history (a wallet up to WALLET_SCAN entries):
    # on the read threads, so it never holds up the loop.
    plain = not types and createdFrom is None and createdTo is None and wallet is None
    return json_answer(await run_read(p.store, _history_page, request, p, who.tenant_id, customerId,
                                      before[0] if before else None, limit, types, createdFrom, createdTo, wallet,
                                      inline=plain))


def _history_page(request: Request, p: Platform, tenant_id: str, customerId: str, before: int | None, limit: int,
                  types: list[str], createdFrom, createdTo, wallet: str | None) -> dict:
    p.customers.get(tenant_id, customerId)
    if wallet is not None:
        settings = p.tenants.get(tenant_id).wallets
        if settings is None or wallet not in settings.names:
            raise ValidationFailed(f"unknown wallet {wallet!r}", [FieldProblem(
                "wallet", f"this tenant's wallets: {', '.join(settings.names) if settings else 'none'}")])
    entries, scanned_to = _history(p, tenant_id, customerId, before, limit + 1, types, createdFrom, createdTo, wallet)
    states = pending_states(p, tenant_id, customerId, entries[:limit])
    return keyset(request, tenant_id, entries, limit, lambda entry: [entry["seq"]],
                  lambda entry: {**entry_view(entry), **({"pendingState": states[entry["id"]]}
                                                         if entry["id"] in states else {})},
                  resume=[scanned_to] if scanned_to is not None else None)


# Entries one wallet-filtered history page reads at most (a wallet's entries are
# picked from the customer's, as wallet names are not field names a query can use).
# A page whose scan stops there, short of the end, answers what it found (maybe
# nothing) and a ``next`` that continues after the last entry scanned.
WALLET_SCAN = 5_000


def _history(p: Platform, tenant_id: str, customer_id: str, before: int | None, want: int, types: list[str],
             created_from, created_to, wallet: str | None) -> tuple[list[dict], int | None]:
    """Up to ``want`` entries before ``before``, and the seq of the last entry scanned when a
    wallet's scan stopped at ``WALLET_SCAN`` short of the end with fewer than ``want`` found
    (None otherwise): the page then continues from there."""
    if wallet is None:
        return p.ledger.entries(tenant_id, customer_id, before_seq=before, limit=want, entry_types=types,
                                created_from=created_from, created_to=created_to), None
    found: list[dict] = []
    scanned = 0
    while len(found) < want and scanned < WALLET_SCAN:
        page = p.ledger.entries(tenant_id, customer_id, before_seq=before, limit=200, entry_types=types,
                                created_from=created_from, created_to=created_to)
        scanned += len(page)
        found += [e for e in page if wallet in (e.get("walletSplit") or {}) or e.get("wallet") == wallet]
        if len(page) < 200:
            break
        before = page[-1]["seq"]
    else:  # the scan stopped at WALLET_SCAN, not at the end of the history
        if len(found) < want:
            return found, before
    return found[:want], None


def pending_states(p: Platform, tenant_id: str, customer_id: str, entries: list[dict]) -> dict[str, str]:
    """Each PENDING credit's state now: ``pending``, or how it was settled (``matured``, ``cancelled``
    by a refund inside the return window, ``approved`` or ``rejected`` in review). One read of the
    settlement records (``settled-<entryId>``) for the page."""
    held = [e["id"] for e in entries if e.get("status") == "PENDING" and e.get("signedAmount", 0) > 0]
    if not held:
        return {}
    pk = customer_pk(tenant_id, customer_id)
    found = read_many(p.store, LEDGER, [(pk, settlement_id(entry_id)) for entry_id in held])
    return {entry_id: (record or {}).get("resolution") or "pending" for entry_id, record in zip(held, found)}


@router.post("/{customerId}/adjustments", status_code=201, summary="Manual adjustment (tenant-admin)",
             **op("customers.adjust", {201: AdjustmentOutcome, 200: AdjustmentOutcome}, errors=(404, 409)))
@dry_runnable
def adjust(customerId: CustomerId, body: AdjustmentRequest, p: Annotated[Platform, Depends(platform)],
           who: Annotated[Principal, Depends(requires("admin"))], response: Response) -> dict:
    """Adds or takes points with a reason code (capability ``admin``), audited. The same
    ``idempotencyKey`` again returns the first outcome with ``duplicate: true`` and 200; taking more
    than the balance is a 422."""
    p.customers.get(who.tenant_id, customerId)
    outcome = p.corrections.adjust(who.tenant_id, customerId, body, who.key_id)
    if outcome.duplicate:
        response.status_code = 200
    else:
        p.audit.record(who.tenant_id, "adjustment.created", who, target=f"customer:{customerId}",
                       after={"points": body.points, "reasonCode": body.reason_code,
                              "transactionId": outcome.transaction_id}, reason=body.reason)
    return {**outcome.outcome, "transactionId": outcome.transaction_id, "duplicate": outcome.duplicate}



@router.post("/{customerId}/transfers", status_code=201, summary="Transfer available points to another customer",
             **op("customers.transfer", {201: TransferOutcome, 200: TransferOutcome}, errors=(404, 409)))
@dry_runnable
def transfer(customerId: CustomerId, body: TransferRequest, p: Annotated[Platform, Depends(platform)],
             who: Annotated[Principal, Depends(requires("ingest"))], response: Response) -> dict:
    """Moves available points to ``toCustomerId``, another customer of the tenant (capability ``ingest``),
    with their expiry dates (first expiring first). 201 new; 200 a replay of the same ``idempotencyKey``
    (``duplicate: true``); 409 when the key was used with another body; 422 when the available balance
    is too low, a tenant limit (``transferLimits``) or the fraud policy's ``transfersPerHour`` refuses it,
    or the receiver is unknown or erased. Both customers' histories show the transfer."""
    p.customers.get(who.tenant_id, customerId)  # 404 for an unknown sender
    result = p.transfers.transfer(who.tenant_id, customerId, body)
    if not result.created:
        response.status_code = 200
    return {"duplicate": False, **result.body}


@router.get("/{customerId}/transfers/{transferId}", summary="Read a transfer",
            **op("customers.getTransfer", TransferView, errors=(404,)))
def read_transfer(customerId: CustomerId, p: Annotated[Platform, Depends(platform)],
                  who: Annotated[Principal, Depends(requires("read"))],
                  transferId: Annotated[str, Path(pattern=r"^tr-[0-9a-f]{24}$", max_length=27)]) -> dict:
    """A transfer this customer sent or received (capability ``read``): its status, the lots moved
    once debited. 404 for an unknown customer, a transfer they are not a party to (the receiver is
    one once credited), or one refused (refusals are not recorded)."""
    p.customers.get(who.tenant_id, customerId)
    return p.transfers.get(who.tenant_id, customerId, transferId)
