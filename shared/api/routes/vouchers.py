"""Vouchers at the point of sale (merchants: capability ``ingest``), a customer's
vouchers, and partners' code pools (tenant-admin). See docs/vouchers.md.

A voucher is bought through ``POST /v1/customers/{customerId}/redemptions`` with
a reward of type voucher (shared/api/routes/redemptions.py): the answer carries
the voucher and its code. The code travels in the path of the point-of-sale
routes; logs and spans name the route template only, never the path."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from shared.api.contract import op
from shared.api.contract.vouchers import Pool, PoolUpload, Voucher, VoucherList, VoucherUse
from shared.api.deps import platform
from shared.api.pagination import Cursor, Order, in_memory
from shared.api.security import requires
from shared.app.auth import Principal
from shared.domain.ids import ID_MAX_LENGTH, ID_PATTERN
from shared.errors import FieldProblem, ValidationFailed
from shared.platform import Platform
from shared.vouchers.pools import parse_lines
from shared.vouchers.service import VoucherRedeemRequest

router = APIRouter(tags=["vouchers"])

Code = Annotated[str, Path(min_length=1, max_length=64, description="the voucher code as printed (hyphens optional)")]
CustomerId = Annotated[str, Path(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH, description="the tenant's own customer id")]
VoucherId = Annotated[str, Path(pattern=r"^vc-[0-9a-f]{24}$", max_length=27)]
PoolId = Annotated[str, Path(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)]
IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=128,
                                       pattern=r"^[\x21-\x7e]+$",
                                       description="the point of sale's key for this use: a retry with the same "
                                                   "key is answered as the first call was")]
UPLOAD_TYPES = {"text/csv": "csv", "application/x-ndjson": "ndjson"}


@router.get("/v1/vouchers/{code}", summary="Check a voucher before redeeming it (point of sale)",
            **op("vouchers.check", Voucher, errors=(404,)))
def check(code: Code, p: Annotated[Platform, Depends(platform)],
          who: Annotated[Principal, Depends(requires("ingest"))]) -> dict:
    """A voucher's state, uses left, value or product, channel and expiry (capability ``ingest``). A code whose
    check symbol does not match is a 422 ``voucher-code-invalid`` (a typing error)."""
    return p.vouchers.check(who.tenant_id, code)


@router.post("/v1/vouchers/{code}/redeem", status_code=201, summary="Redeem a voucher (point of sale)",
             **op("vouchers.redeem", {201: VoucherUse, 200: VoucherUse}, errors=(404, 409)))
def redeem(code: Code, body: VoucherRedeemRequest, idempotency_key: IdempotencyKey, response: Response,
           p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("ingest"))]) -> dict:
    """Uses the voucher once (capability ``ingest``, ``Idempotency-Key`` required). A single-use code is redeemed
    exactly once whatever the number of concurrent attempts: the others get 409 ``voucher-not-redeemable``
    (``state``); a retry with the same key gets 200 and the first answer."""
    outcome = p.vouchers.redeem(who.tenant_id, code, idempotency_key, body, who.key_id)
    if not outcome.created:
        response.status_code = 200
    return outcome.body


@router.get("/v1/customers/{customerId}/vouchers", summary="A customer's vouchers, newest first",
            **op("vouchers.list", VoucherList, errors=(404,)))
def list_vouchers(request: Request, customerId: CustomerId, p: Annotated[Platform, Depends(platform)],
                  who: Annotated[Principal, Depends(requires("read"))], cursor: Cursor = None,
                  limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict:
    """A customer's vouchers, newest first, without their codes (capability ``read``)."""
    p.customers.get(who.tenant_id, customerId)
    return in_memory(request, who.tenant_id, p.vouchers.list(who.tenant_id, customerId, None), limit, cursor,
                     Order(("createdAt", "voucherId"), descending=True))


@router.post("/v1/customers/{customerId}/vouchers/{voucherId}/cancel", status_code=201,
             summary="Cancel an unused voucher: its points come back by the tenant's policy",
             **op("vouchers.cancel", {201: Voucher, 200: Voucher}, errors=(404, 409)))
def cancel(customerId: CustomerId, voucherId: VoucherId, response: Response,
           p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("ingest"))]) -> dict:
    """Cancels an unused voucher (capability ``ingest``); with the spend policy's ``voucherCancel: refund`` its
    points come back as an ADJUST entry. 200 when it was already cancelled."""
    outcome = p.vouchers.cancel(who.tenant_id, customerId, voucherId, who.key_id)
    if not outcome.created:
        response.status_code = 200
    return outcome.body


_UPLOAD = op("vouchers.uploadPool", {201: PoolUpload}, errors=())
# The body is read raw (a file, not JSON): documented here so clients see both formats.
_UPLOAD["openapi_extra"] = {**_UPLOAD["openapi_extra"], "requestBody": {"required": True, "content": {
    "text/csv": {"schema": {"type": "string", "maxLength": 1_048_576}, "example": "code\nCINE-4F7K-22QX\nCINE-9ZPL-81MD\n"},
    "application/x-ndjson": {"schema": {"type": "string", "maxLength": 1_048_576}, "example": '{"code": "CINE-4F7K-22QX"}\n'}}}}


@router.post("/v1/voucher-pools/{poolId}/codes", status_code=201,
             summary="Upload a partner's voucher codes into a pool (tenant-admin)", **_UPLOAD)
async def upload_pool(poolId: PoolId, request: Request, p: Annotated[Platform, Depends(platform)],
                      who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Adds a partner's codes to a pool (capability ``admin``): a ``text/csv`` body with a ``code`` column, or
    ``application/x-ndjson`` lines ``{"code": "..."}``. All or nothing: one bad line and nothing is added (422
    names each line). A code already in the pool is skipped, so re-sending a file changes nothing."""
    content_type = request.headers.get("content-type", "")
    fmt: Literal["csv", "ndjson"] | None = UPLOAD_TYPES.get(content_type.split(";")[0].strip().lower())  # type: ignore[assignment]
    if fmt is None:
        raise ValidationFailed("upload codes as text/csv or application/x-ndjson",
                               [FieldProblem("Content-Type", f"expected one of {', '.join(UPLOAD_TYPES)}")])
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationFailed("the upload is not UTF-8", [FieldProblem("body", "not UTF-8 text")]) from None
    rows = parse_lines(text, fmt)
    report = await run_in_threadpool(p.vouchers.pools.add_codes, who.tenant_id, poolId, rows)
    pool = await run_in_threadpool(p.vouchers.pools.get, who.tenant_id, poolId)
    await run_in_threadpool(p.audit.record, who.tenant_id, "voucherpool.uploaded", who,
                            target=f"voucherpool:{poolId}",
                            after={"accepted": report.accepted, "duplicates": report.duplicates})
    return {"poolId": poolId, "accepted": report.accepted, "duplicates": report.duplicates,
            "uploaded": pool["uploaded"], "handedOut": pool["handedOut"], "remaining": pool["remaining"]}


@router.get("/v1/voucher-pools/{poolId}", summary="A partner's code pool: uploaded, handed out (tenant-admin)",
            **op("vouchers.getPool", Pool, errors=(404,)))
def get_pool(poolId: PoolId, p: Annotated[Platform, Depends(platform)],
             who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """A partner's code pool: how many codes were uploaded and handed out (capability ``admin``)."""
    return p.vouchers.pools.get(who.tenant_id, poolId)
