"""The imports and occasions routes over HTTP: create, upload, start, progress, the
error report; tenant-admin only; RFC 9457 problems for client mistakes."""

from __future__ import annotations

import json

from shared.jobs import work_items
from tests.conftest import auth


def _run(platform) -> None:
    for _ in range(50):
        if not work_items(platform).run().claimed:
            return


def test_an_import_over_http(client, platform, tenant) -> None:
    admin = auth(tenant.admin)
    created = client.post("/v1/imports", json={"kind": "orders"}, headers=admin)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "awaiting-upload" and body["upload"] is None  # local: PUT the file to the API
    import_id = body["importId"]
    rows = [{"orderId": f"h{n}", "customerId": "c1", "amount": "10.00", "currency": "EUR",
             "timestamp": "2024-01-01T00:00:00Z", "points": 3} for n in range(5)] + [{"orderId": "bad"}]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    uploaded = client.put(f"/v1/imports/{import_id}/file", content=data,
                          headers={**admin, "content-type": "application/octet-stream"})
    assert uploaded.status_code == 200 and uploaded.json()["bytesTotal"] == len(data)
    again = client.put(f"/v1/imports/{import_id}/file", content=data,
                       headers={**admin, "content-type": "application/octet-stream"})
    assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"
    started = client.post(f"/v1/imports/{import_id}/start", headers=admin)
    assert started.status_code == 202 and started.json()["status"] == "queued"
    _run(platform)
    status = client.get(f"/v1/imports/{import_id}", headers=admin).json()
    assert (status["status"], status["rowsDone"], status["rowsFailed"]) == ("done", 5, 1)
    report = client.get(f"/v1/imports/{import_id}/errors", headers=admin).json()
    assert [row["line"] for row in report["items"]] == [6] and report["next"] is None
    listed = client.get("/v1/imports", headers=admin).json()
    assert [i["importId"] for i in listed["items"]] == [import_id]
    assert platform.ledger.head("acme", "c1").balance == 15


def test_client_mistakes_are_problems_and_change_nothing(client, platform, tenant) -> None:
    admin = auth(tenant.admin)
    assert client.post("/v1/imports", json={"kind": "orders"}, headers=auth(tenant.merchant)).status_code == 403
    bad = client.post("/v1/imports", json={"kind": "nope"}, headers=admin)
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    assert client.post("/v1/imports", json={"kind": "orders", "mode": "sometimes"}, headers=admin).status_code == 422
    assert client.get("/v1/imports/imp-0000000000000000", headers=admin).status_code == 404
    created = client.post("/v1/imports", json={"kind": "orders"}, headers=admin).json()
    assert client.post(f"/v1/imports/{created['importId']}/start", headers=admin).status_code == 409
    assert client.get("/v1/imports", headers=admin).json()["items"][0]["status"] == "awaiting-upload"


def test_occasion_settings(client, platform, tenant) -> None:
    admin = auth(tenant.admin)
    assert client.get("/v1/occasions/settings", headers=admin).json() == {"birthdayPoints": 0,
                                                                          "anniversaryPoints": 0}
    saved = client.put("/v1/occasions/settings", json={"birthdayPoints": 100, "anniversaryPoints": 25},
                       headers=admin)
    assert saved.status_code == 200 and saved.json()["birthdayPoints"] == 100
    assert client.put("/v1/occasions/settings", json={"birthdayPoints": -1}, headers=admin).status_code == 422
    assert client.get("/v1/occasions/settings", headers=auth(tenant.analyst)).status_code == 403
    assert platform.occasions.settings("acme").anniversary_points == 25
