"""The operators' web page: register a security key, see pending approval requests with
exactly what each will do, approve or reject with the key. Plain HTML and one small
script (navigator.credentials; no build step) served from shared/api/operator_page;
outside the OpenAPI document. The page holds no authority itself: every call it makes
is an API call with the operator's platform-admin key (kept in the tab's
sessionStorage) and a WebAuthn ceremony. WebAuthn needs a secure context: https, or
http on localhost."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

router = APIRouter(include_in_schema=False)
PAGE = Path(__file__).resolve().parent.parent / "operator_page"
# The page runs only its own script; nothing framed, nothing inline.
HEADERS = {"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                      "frame-ancestors 'none'",
           "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


@router.get("/operator")
def page() -> Response:
    return Response((PAGE / "index.html").read_bytes(), media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/operator/app.js")
def script() -> Response:
    return Response((PAGE / "app.js").read_bytes(), media_type="text/javascript; charset=utf-8", headers=HEADERS)
