"""Fixtures of the fraud-control tests: set a tenant's policy over the API, send orders."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from tests.conftest import auth, drain, order_body


@pytest.fixture
def set_policy(client, tenant) -> Callable[..., dict[str, Any]]:
    def put(body: dict[str, Any], key: str | None = None) -> dict[str, Any]:
        response = client.put("/v1/fraud/policy", json=body, headers=auth(key or tenant.admin))
        assert response.status_code == 200, response.text
        return response.json()

    return put


@pytest.fixture
def send(client, platform, tenant) -> Callable[..., dict[str, Any]]:
    """Send one order (amount in EUR: 10 points per euro), process it, return its status."""

    def post(order_id: str, amount: str = "10.00", customer: str = "c1", **extra: Any) -> dict[str, Any]:
        response = client.post("/v1/orders", json=order_body(customer, order_id, amount, **extra),
                               headers=auth(tenant.merchant))
        assert response.status_code == 202, response.text
        drain(platform)
        return client.get(f"/v1/orders/{order_id}", headers=auth(tenant.merchant)).json()

    return post
