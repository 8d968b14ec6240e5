"""Conversions: points into a partner's currency (e.g. airline miles).

A tenant-admin defines conversion programmes: the partner, the rate (partner
units per point, a decimal), the rounding rule applied to ``points * rate``
(down, up, half-up, half-even, to a whole partner unit), and the minimum
points per conversion. A merchant converts an integer number of points for a
customer with an idempotency key: a CONVERT PENDING reservation, the partner
call through the port, then CONVERT COMMITTED 0 settling it, or a RELEASE and a
502/503 naming the state (``shared.spend.redemptions`` does the flow).

The customer's partner account (e.g. a frequent-flyer number) is passed to the
partner only: it is not written to the append-only ledger, which could never
erase it. The amount is computed once, at conversion time, and recorded on the
redemption record, so a later change of the rate never changes a conversion.

Programmes live as ``conversion:<programmeId>`` in the tenant's partition of the
``tenants`` container.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from shared.clock import Clock, iso
from shared.domain.inputs import DecimalText
from shared.domain.orders import EntityId
from shared.domain.wallets import WalletName
from shared.errors import FieldProblem, NotFound, ValidationFailed
from shared.ledger.entries import EntryType
from shared.ledger.service import fingerprint_of
from shared.spend.redemptions import Key, Redemptions, SpendResult
from shared.store.layout import TENANTS
from shared.store.pages import read_all
from shared.store.port import DocumentStore, Filter
from shared.store.replace import Replaced, replace

ROUNDING = {"down": ROUND_FLOOR, "up": ROUND_CEILING, "half-up": ROUND_HALF_UP, "half-even": ROUND_HALF_EVEN}
Rounding = Literal["down", "up", "half-up", "half-even"]
# Partner units per point: up to 10^6, at most six decimals.
Rate = DecimalText(7, 6, "partner units per point, e.g. \"0.5\" miles per point")
Account = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")]


class Programme(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    partner_id: EntityId = Field(alias="partnerId")
    name: str = Field(min_length=1, max_length=200)
    rate: Rate = Field(gt=0, le=10**6)
    rounding: Rounding = "down"
    minimum_points: StrictInt = Field(default=1, alias="minimumPoints", ge=1, le=10**12)
    active: bool = True


class ConvertRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    idempotency_key: Key = Field(alias="idempotencyKey")
    programme_id: EntityId = Field(alias="programmeId")
    points: StrictInt = Field(ge=1, le=10**12)
    partner_account: Account = Field(alias="partnerAccount",
                                     description="the customer's account at the partner; sent to it, never stored")
    wallet: WalletName | None = Field(
        default=None, description="draw from this wallet only (docs/wallets.md); default: the spending order")


def partner_amount(programme: Programme, points: int) -> int:
    return int((Decimal(points) * programme.rate).to_integral_value(rounding=ROUNDING[programme.rounding]))


def programme_doc_id(programme_id: str) -> str:
    return f"conversion:{programme_id}"


class Conversions:
    def __init__(self, store: DocumentStore, clock: Clock, redemptions: Redemptions, partner_exists: Any) -> None:
        self._store = store
        self._clock = clock
        self._redemptions = redemptions
        self._partner_exists = partner_exists

    def save_programme(self, tenant_id: str, programme_id: str, programme: Programme) -> Replaced:
        """Create or change a programme; exactly once per change (``shared.store.replace``):
        concurrent saves are serialised, each a version of its own; a repeat of the stored
        programme writes nothing. ``before``/``after`` are views."""
        if not self._partner_exists(programme.partner_id):
            raise ValidationFailed("unknown partner", [FieldProblem("partnerId",
                                                                    f"no partner {programme.partner_id!r} is registered")])
        fields = programme.model_dump(mode="json", by_alias=True)

        def build(before: dict[str, Any] | None) -> dict[str, Any]:
            return {"id": programme_doc_id(programme_id), "pk": tenant_id, "docType": "conversionProgramme",
                    "tenantId": tenant_id, "programmeId": programme_id, **fields,
                    "version": (before or {}).get("version", 0) + 1, "updatedAt": iso(self._clock.now())}

        result = replace(self._store, TENANTS, tenant_id, programme_doc_id(programme_id), build,
                         content=lambda d: {k: d.get(k) for k in fields})
        return Replaced(_view(result.before) if result.before else None, _view(result.after), result.changed)

    def programme(self, tenant_id: str, programme_id: str) -> dict[str, Any]:
        doc = self._store.read(TENANTS, tenant_id, programme_doc_id(programme_id))
        if doc is None:
            raise NotFound(f"conversion programme {programme_id!r} does not exist")
        return _view(doc)

    def programmes(self, tenant_id: str) -> list[dict[str, Any]]:
        docs = read_all(self._store, TENANTS, tenant_id, (Filter("docType", "=", "conversionProgramme"),))
        return [_view(d) for d in docs]  # every one, in id order (keyset pages, no cap)

    def convert(self, tenant_id: str, customer_id: str, request: ConvertRequest, actor: str) -> SpendResult:
        view = self.programme(tenant_id, request.programme_id)
        programme = Programme.model_validate({k: view[k] for k in ("partnerId", "name", "rate", "rounding",
                                                                    "minimumPoints", "active")})
        if not programme.active:
            raise ValidationFailed("the programme is not active",
                                   [FieldProblem("programmeId", f"{request.programme_id!r} is switched off")])
        if request.points < programme.minimum_points:
            raise ValidationFailed("below the programme's minimum", [FieldProblem(
                "points", f"at least {programme.minimum_points} points per conversion")])
        amount = partner_amount(programme, request.points)
        if amount < 1:
            raise ValidationFailed("converts to nothing", [FieldProblem(
                "points", f"{request.points} points give {amount} partner units at rate {programme.rate}")])
        key = f"convert:{request.idempotency_key}"
        return self._redemptions.reserve_for_partner(
            tenant_id, customer_id, key, fingerprint_of(request.model_dump(mode="json", by_alias=True)),
            points=request.points, entry_type=EntryType.CONVERT, kind="conversion", partner_id=programme.partner_id,
            actor=actor, partner_account=request.partner_account, wallet=request.wallet,
            extra={"programmeId": request.programme_id, "partnerAmount": amount, "rate": str(programme.rate),
                   "rounding": programme.rounding})


def _view(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc.get(k) for k in ("programmeId", "partnerId", "name", "rate", "rounding", "minimumPoints", "active",
                                    "version", "updatedAt")}
