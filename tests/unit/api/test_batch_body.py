"""A batch's body validated on a thread (shared/api/batch_body.py) answers as FastAPI's own
validation did: the same 202 for a valid batch, the same 400/422 problems for every bad one
(those are left to FastAPI), and the same rate-limit charge (one per order)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.api import batch_body
from shared.api.routes.orders import OrderBatch
from tests.conftest import auth, order_body


@pytest.fixture
def calls(monkeypatch) -> list[Any]:
    """What each prevalidation returned (None: left to FastAPI)."""
    seen: list[Any] = []
    real = batch_body.validated_batch

    def spy(body: bytes) -> Any:
        seen.append(real(body))
        return seen[-1]

    monkeypatch.setattr(batch_body, "validated_batch", spy)
    return seen


def test_a_valid_batch_validates_to_the_same_orders() -> None:
    body = {"orders": [order_body("c1", f"o{i}", amount=f"{i}.50") for i in range(1, 120)]}
    ours = batch_body.validated_batch(json.dumps(body).encode())
    assert ours is not None and ours == OrderBatch.model_validate(body)
    assert ours.model_fields_set == OrderBatch.model_validate(body).model_fields_set
    assert OrderBatch.model_validate(ours) is ours  # what FastAPI's validation of the body does with it


def test_a_valid_batch_is_validated_ahead_and_charged_by_its_orders(client, tenant, calls) -> None:
    body = {"orders": [order_body("c1", f"o{i}") for i in range(120)]}
    response = client.post("/v1/orders/batch", json=body, headers=auth(tenant.merchant))
    assert response.status_code == 202 and len(response.json()["orders"]) == 120
    assert calls and calls[-1] is not None
    assert response.headers["RateLimit"].startswith('"key";r=')
    remaining = int(response.headers["RateLimit"].split("r=")[1].split(";")[0])
    again = client.get("/v1/customers/c1", headers=auth(tenant.merchant))
    assert int(again.headers["RateLimit"].split("r=")[1].split(";")[0]) == remaining - 1


BAD = {
    "an invalid order (the 120th)": ({"orders": [order_body("c1", f"o{i}") for i in range(119)]
                                      + [order_body("c1", "o119", amount="-1")]}, "application/json"),
    "an unknown field of an order": ({"orders": [{**order_body("c1", "o1"), "colour": "red"}]}, "application/json"),
    "an unknown field of the batch": ({"orders": [order_body("c1", "o1")], "extra": 1}, "application/json"),
    "no orders": ({"orders": []}, "application/json"),
    "501 orders": ({"orders": [order_body("c1", f"o{i}") for i in range(501)]}, "application/json"),
    "not an object": ([order_body("c1", "o1")], "application/json"),
    "orders not a list": ({"orders": {"a": 1}}, "application/json"),
    "malformed JSON": ('{"orders": [', "application/json"),
    "NaN (json reads it, orjson does not)": ('{"orders": [{"amount": NaN}]}', "application/json"),
    "text/plain": ({"orders": [order_body("c1", "o1")]}, "text/plain"),
    "+json type": ({"orders": [order_body("c1", "o1", amount="x")]}, "application/merge-patch+json"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_batch_answers_as_fastapi_does(client, tenant, calls, monkeypatch, name) -> None:
    body, content_type = BAD[name]
    content = body if isinstance(body, str) else json.dumps(body)
    headers = {**auth(tenant.merchant), "content-type": content_type}
    ahead = client.post("/v1/orders/batch", content=content, headers=headers)
    monkeypatch.setattr(batch_body, "validated_batch", lambda body: None)  # FastAPI alone
    alone = client.post("/v1/orders/batch", content=content, headers=headers)
    assert ahead.status_code == alone.status_code and ahead.status_code in (400, 415, 422), (name, ahead.text)
    assert ahead.json() == alone.json()
    assert all(result is None for result in calls)  # nothing bad was given ahead


def test_a_refused_key_is_still_refused_before_the_batch(client, tenant, calls) -> None:
    body = {"orders": [order_body("c1", "o1")]}
    assert client.post("/v1/orders/batch", json=body, headers=auth(tenant.analyst)).status_code == 403
    assert client.post("/v1/orders/batch", json=body).status_code == 401
