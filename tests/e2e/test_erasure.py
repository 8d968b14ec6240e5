"""Erasure end to end on the local platform as a user runs it (API process plus worker
processes holding the SQLite files open): after the erasure and a clean stop, no byte
of the customer, nor its wrapped key, in any file of the data folder, the exports'
plaintext or the platform's output; every file owner only."""

from __future__ import annotations

import sqlite3
import stat
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from shared.keys.local import LocalKeyring
from tests.e2e.conftest import LocalPlatform
from tests.erasure_scan import ErasureScan, needles_of

pytestmark = pytest.mark.slow

ZELDA = {"customerId": "z1", "joinDate": "2026-03-01", "email": "Zelda.Quuxbright@Example.org",
         "name": "Zelda Quuxbright", "phone": "+33 6 98 76 54 32", "birthDate": "1987-06-05",
         "postalAddress": {"lines": ["7 Impasse Wxyzabc"], "city": "Qorvillette", "postalCode": "QZ7-9XJ",
                           "region": "Haute Zorbanie", "country": "FR"}}


def _stored(data_dir, container: str, pk: str, doc_id: str) -> dict:  # type: ignore[no-untyped-def]
    import json

    db = sqlite3.connect(f"file:{data_dir / 'accrue.db'}?mode=ro", uri=True)
    try:
        row = db.execute(f"SELECT body FROM c_{container} WHERE pk = ? AND id = ?", (pk, doc_id)).fetchone()
    finally:
        db.close()
    assert row is not None, (container, pk, doc_id)
    return json.loads(row[0])


def test_after_erasure_and_a_clean_stop_the_data_folder_holds_nothing_of_the_customer(
        local_platform: LocalPlatform) -> None:
    data_dir = local_platform.data_dir
    merchant = {"Authorization": f"Bearer {local_platform.keys['merchant']}"}
    admin = {"Authorization": f"Bearer {local_platform.keys['tenant-admin']}"}
    now = datetime.now(timezone.utc)
    with httpx.Client(base_url=local_platform.url, timeout=15) as http:
        assert http.post("/v1/customers", json=ZELDA, headers=merchant).status_code == 201
        assert http.put("/v1/exports/settings", json={"excludedPersonalFields": []}, headers=admin).status_code == 200
        order = {"customerId": "z1", "orderId": "z-1", "amount": "12.00", "currency": "EUR",
                 "timestamp": "2026-11-20T09:30:00+01:00", "channel": "store",
                 "items": [{"sku": "LATTE-M", "category": "coffee", "quantity": 1, "unitPrice": "12.00"}]}
        assert http.post("/v1/orders?wait=5", json=order, headers=merchant).status_code in (200, 202)
        exported = http.post("/v1/exports/backfills", headers=admin, json={
            "from": (now - timedelta(days=1)).isoformat(), "to": (now + timedelta(hours=1)).isoformat(),
            "subjects": ["customers"]})
        assert exported.status_code == 201, exported.text
        needles = needles_of(ZELDA, _stored(data_dir, "customers", "sandbox:z1", "z1"),
                             _stored(data_dir, "piikeys", "sandbox:z1", "dek"))
        scan = ErasureScan(data_dir, LocalKeyring.in_folder(data_dir))
        seen = scan.findings(needles)
        assert any(" (decrypted)" in f and f.startswith("name[0] as utf-8") for f in seen), seen
        assert any(f.startswith("wrapped DEK") and " in accrue.db" in f for f in seen), seen
        erased = http.post("/v1/customers/z1/erasure", json={"reason": "ticket 12"}, headers=admin)
        assert erased.status_code == 200 and erased.json()["erased"] is True
    local_platform.stop()  # the clean stop
    assert local_platform.process is not None and local_platform.process.stdout is not None
    output = "".join(local_platform.output) + local_platform.process.stdout.read()
    scan.assert_clean(needles, {"platform output": output})
    wide = [f"{p.relative_to(data_dir)} {stat.S_IMODE(p.stat().st_mode):o}" for p in [data_dir, *data_dir.rglob("*")]
            if stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert not wide, wide
