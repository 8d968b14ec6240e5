"""Response models of vouchers and partner code pools (shared/api/routes/vouchers.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared.api.contract import next_link

_VOUCHER = {"voucherId": "vc-0f3a9c1d0b8e7a65c4d2e1f0", "customerId": "alice-42",
            "redemptionId": "rd-0f3a9c1d0b8e7a65c4d2e1f0", "rewardId": "ten-off", "status": "active", "uses": 1,
            "used": 0, "value": {"amount": "10.00", "currency": "EUR"}, "channel": "any",
            "expiresAt": "2027-02-21T16:11:33.802659Z", "createdAt": "2026-11-23T16:11:33.802659Z", "points": 500}


class Voucher(BaseModel):
    """A voucher: its state, uses, value or product, channel and expiry (never its code)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_VOUCHER]})

    voucherId: str
    customerId: str
    redemptionId: str = Field(description="the redemption that bought it")
    rewardId: str | None = None
    status: str = Field(description="active, used, cancelled or expired")
    uses: int = Field(description="how many times it can be used (1: single-use)")
    used: int
    value: dict | None = Field(default=None, description="amount and currency it takes off a purchase")
    productSku: str | None = None
    channel: str = Field(description="any, online or in-store")
    expiresAt: str
    createdAt: str
    points: int = Field(description="the points it cost")
    refund: str | None = Field(default=None, description="after a cancel or expiry: due, refunded or forfeited")
    duplicate: bool | None = None


class VoucherList(BaseModel):
    """A customer's vouchers, newest first."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_VOUCHER], "next": None}]})

    items: list[Voucher]
    next: str | None = next_link()


class VoucherUse(BaseModel):
    """One use of a voucher at a point of sale (``duplicate: true`` on a replay of the same Idempotency-Key)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "voucherId": "vc-0f3a9c1d0b8e7a65c4d2e1f0", "status": "redeemed", "use": 1, "usesLeft": 0,
        "value": {"amount": "10.00", "currency": "EUR"}, "channel": "in-store", "orderId": "o-981",
        "redeemedAt": "2026-11-24T10:02:11.120000Z"}]})

    voucherId: str
    status: str = Field(description="redeemed")
    use: int = Field(description="which use this was (1 for the first)")
    usesLeft: int
    value: dict | None = None
    productSku: str | None = None
    channel: str
    orderId: str | None = None
    redeemedAt: str
    duplicate: bool | None = None


class PoolUpload(BaseModel):
    """What an upload added to a partner's code pool."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"poolId": "cinema", "accepted": 998,
                                                               "duplicates": 2, "uploaded": 998, "handedOut": 0,
                                                               "remaining": 998}]})

    poolId: str
    accepted: int = Field(description="codes added by this upload")
    duplicates: int = Field(description="codes already in the pool (or repeated in the upload): skipped")
    uploaded: int
    handedOut: int
    remaining: int


class Pool(BaseModel):
    """A partner's code pool: codes uploaded and handed out."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"poolId": "cinema", "uploaded": 998, "handedOut": 3,
                                                               "remaining": 995,
                                                               "updatedAt": "2026-11-23T16:11:33.802659Z"}]})

    poolId: str
    uploaded: int
    handedOut: int
    remaining: int
    updatedAt: str
