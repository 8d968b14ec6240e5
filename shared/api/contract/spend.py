"""Response models of spending: rewards, spend policy, conversion programmes,
partners (shared/api/routes/rewards.py) and redemptions and conversions
(shared/api/routes/redemptions.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared.api.contract import DryRunnable, next_link

_REWARD = {"rewardId": "free-latte", "name": "A free latte", "pointsCost": 250, "stock": 100,
           "validFrom": None, "validUntil": None, "perCustomerLimit": 1, "partnerId": None, "partnerSku": None,
           "version": 1, "createdAt": "2026-11-23T16:11:33.802659Z", "updatedAt": "2026-11-23T16:11:33.802659Z",
           "claimed": 3, "remaining": 97}
_REDEMPTION = {"redemptionId": "rd-0f3a9c1d0b8e7a65c4d2e1f0", "customerId": "alice-42", "status": "reserved",
               "kind": "reward", "mode": "reserve", "points": 250, "rewardId": "free-latte",
               "entryId": "e-000000000006", "expiresAt": "2026-11-23T16:26:33.802659Z",
               "createdAt": "2026-11-23T16:11:33.802659Z", "review": False, "pointsReleased": False}


class Reward(BaseModel):
    """A reward of the catalogue, with its claimed and remaining stock."""

    model_config = ConfigDict(json_schema_extra={"examples": [_REWARD]})

    rewardId: str
    name: str
    pointsCost: int
    stock: int | None = Field(default=None, description="null: unlimited")
    validFrom: str | None = None
    validUntil: str | None = None
    perCustomerLimit: int | None = None
    partnerId: str | None = None
    partnerSku: str | None = None
    version: int | None = None
    createdAt: str | None = None
    updatedAt: str | None = None
    type: str | None = Field(default=None, description="voucher for a voucher reward; absent: standard")
    voucher: dict | None = Field(default=None, description="a voucher reward's terms: uses, value or productSku, "
                                                           "validDays, channel, poolId")
    claimed: int = Field(description="units redeemed so far")
    remaining: int | None = Field(default=None, description="null when the stock is unlimited")


class RewardPage(BaseModel):
    """Rewards by id; ``next`` links to the next page (null on the last)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_REWARD], "next": None}]})

    items: list[Reward]
    next: str | None = next_link()


class SpendPolicyView(BaseModel):
    """How long a reservation holds its points, and from how many points a redemption needs review."""

    reservationTtlSeconds: int = Field(examples=[900])
    reviewThresholdPoints: int | None = Field(default=None, description="null: never reviewed", examples=[5000])
    voucherCancel: str | None = Field(default=None, description="refund or forfeit: an unused voucher cancelled",
                                      examples=["refund"])
    voucherExpiry: str | None = Field(default=None, description="refund or forfeit: an unused voucher expired",
                                      examples=["forfeit"])


class ProgrammeView(BaseModel):
    """A conversion programme: points into a partner's currency at a rate."""

    programmeId: str = Field(examples=["miles"])
    partnerId: str = Field(examples=["skyair"])
    name: str = Field(examples=["Sky Air miles"])
    rate: str = Field(description="partner units per point (a decimal string)", examples=["0.5"])
    rounding: str = Field(examples=["down"])
    minimumPoints: int = Field(examples=[100])
    active: bool
    version: int | None = Field(default=None, examples=[1])
    updatedAt: str | None = Field(default=None, examples=["2026-11-23T16:11:33.802659Z"])


class ProgrammeList(BaseModel):
    """The tenant's conversion programmes."""

    items: list[ProgrammeView]
    next: str | None = next_link()


class Partner(BaseModel):
    """A partner's endpoint and its call budget."""

    partnerId: str = Field(examples=["skyair"])
    baseUrl: str = Field(examples=["https://partner.example.com/accrue"])
    timeoutSeconds: float = Field(examples=[5.0])
    maxAttempts: int = Field(examples=[3])
    failureThreshold: int = Field(examples=[5])
    cooldownSeconds: float = Field(examples=[30.0])
    updatedAt: str | None = Field(default=None, examples=["2026-11-23T16:11:33.802659Z"])
    updatedBy: str | None = Field(default=None, examples=["k2p7vq3mxa4d"])


class PartnerList(BaseModel):
    """Registered partners."""

    items: list[Partner]
    next: str | None = next_link()


class Redemption(BaseModel):
    """A redemption or conversion and its state (``duplicate`` on a replay of the same request)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_REDEMPTION]})

    redemptionId: str
    customerId: str
    status: str = Field(description="reserved, completed, confirmed, cancelled, expired, in-review, rejected...")
    kind: str = Field(description="reward, points or conversion")
    mode: str = Field(description="direct or reserve")
    points: int
    rewardId: str | None = None
    partnerId: str | None = None
    programmeId: str | None = None
    partnerAmount: str | None = None
    partnerReference: str | None = None
    entryId: str
    expiresAt: str | None = None
    createdAt: str
    settledAt: str | None = None
    review: bool
    pointsReleased: bool
    duplicate: bool | None = Field(default=None, description="true when this request was already applied")
    reviewId: str | None = Field(default=None, description="approve/reject: the review decided")
    reviewStatus: str | None = None


class SpendOutcome(DryRunnable):
    """What a redemption, conversion, confirmation or cancellation did, and the balance left
    (``duplicate: true`` when the same request was already applied: nothing new was written)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "redemptionId": "rd-0f3a9c1d0b8e7a65c4d2e1f0", "status": "reserved", "points": 250, "available": 133,
        "entryId": "e-000000000006", "expiresAt": "2026-11-23T16:26:33.802659Z", "kind": "reward",
        "mode": "reserve", "entryIds": ["e-000000000006"]}]})

    redemptionId: str
    status: str = Field(description="reserved, completed, confirmed, cancelled, in-review, ...")
    points: int
    available: int = Field(description="the customer's available balance after this")
    kind: str = Field(description="reward, points or conversion")
    mode: str = Field(description="direct, reserve or partner")
    entryId: str | None = None
    entryIds: list[str] = Field(description="the ledger entries written (or first written, on a replay)")
    expiresAt: str | None = Field(default=None, description="a reservation's end")
    rewardId: str | None = None
    programmeId: str | None = None
    partnerId: str | None = None
    partnerAmount: int | float | str | None = Field(default=None, description="units in the partner's currency")
    partnerReference: str | None = None
    partnerAttempts: int | None = None
    state: str | None = Field(default=None, description="on a replay: the redemption's state now")
    duplicate: bool | None = None
    voucher: dict | None = Field(default=None, description="a voucher reward: the voucher issued, with its code "
                                                           "(docs/vouchers.md)")


class RedemptionList(BaseModel):
    """A customer's redemptions, newest first."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_REDEMPTION], "next": None}]})

    items: list[Redemption]
    next: str | None = next_link()
