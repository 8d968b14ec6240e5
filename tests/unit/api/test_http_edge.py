"""The HTTP edge (shared/api/app.py, limits.py, strict_json.py, strict.py, problems.py): what
the server answers before a route runs, for requests a client got wrong at the HTTP or JSON
level. Each test is a defect an outside contract review reproduced."""

from __future__ import annotations

import json

import pytest

from shared.api.strict_json import OFF_LOOP_BYTES
from tests.conftest import auth, drain, order_body

JSON = {"content-type": "application/json"}


# --- 1. a lone surrogate is malformed JSON, never a 500 ---------------------------------------

@pytest.mark.parametrize("method, url, body", [
    ("PUT", "/v1/agent-policies/p1/draft", b'{"policy": {"k": "v\\ud800"}}'),  # was a 500 (orjson refused it)
    ("PUT", "/v1/agent-policies/p1/draft", b'{"policy": {"k\\udfff": 1}}'),  # in a key
    ("POST", "/v1/agent-policies/validate", b'{"policy": {"k": ["x", "\\uDC00"]}}'),
    ("POST", "/v1/customers/c1/adjustments", b'{"points": 5, "reasonCode": "goodwill", "reason": "r\\ud800", '
                                             b'"idempotencyKey": "s1"}'),
    ("PUT", "/v1/agent-policies/p1/draft", b'{"policy": {"k": "v\xed\xa0\x80"}}'),  # a surrogate's raw bytes
])
def test_a_lone_surrogate_is_malformed_json(client, tenant, method, url, body) -> None:
    answer = client.request(method, url, content=body, headers={**auth(tenant.admin), **JSON})
    assert answer.status_code == 400, answer.text
    assert answer.json()["type"].endswith("/malformed-json") and "surrogate" in answer.json()["detail"]


def test_a_surrogate_pair_is_a_character(client, tenant) -> None:
    answer = client.put("/v1/agent-policies/p1/draft", content=b'{"policy": {"k": "\\ud83d\\ude00 \\\\ud800"}}',
                        headers={**auth(tenant.admin), **JSON})
    assert answer.status_code == 200, answer.text
    assert answer.json()["policy"] == {"k": "\U0001F600 \\ud800"}


# --- 2. a body over the limit is a 413 whether or not it declares its length ------------------

def _chunked(total: int, head: bytes = b'{"x": "'):
    yield head
    sent = len(head)
    while sent < total:
        yield b"a" * 65_536
        sent += 65_536


@pytest.mark.parametrize("method, url, content_type", [
    ("POST", "/v1/orders", "application/json"),
    ("POST", "/v1/customers/c1/adjustments", "application/json"),
    ("PUT", "/v1/agent-policies/p1/draft", "application/json"),
    ("POST", "/v1/orders", "text/plain"),  # a JSON route given another media type reads the body too
    ("POST", "/v1/orders/batch", "application/json"),
])
def test_a_chunked_body_over_the_limit_is_a_413(client, tenant, method, url, content_type) -> None:
    answer = client.request(method, url, content=_chunked(1_200_000),
                            headers={**auth(tenant.admin), "content-type": content_type})
    assert "content-length" not in answer.request.headers
    assert answer.status_code == 413, answer.text
    assert answer.json()["type"].endswith("/payload-too-large")


# --- 3. NaN and Infinity are not JSON ---------------------------------------------------------

@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
@pytest.mark.parametrize("method, url, body", [
    ("PUT", "/v1/agent-policies/p1/draft", b'{"policy": {"x": %s}}'),  # was stored as null
    ("POST", "/v1/customers/c1/adjustments", b'{"points": %s, "reasonCode": "goodwill", "reason": "r", '
                                             b'"idempotencyKey": "n1"}'),  # was a 422
])
def test_nan_and_infinity_are_malformed_json(client, tenant, literal, method, url, body) -> None:
    answer = client.request(method, url, content=body % literal, headers={**auth(tenant.admin), **JSON})
    assert answer.status_code == 400, answer.text
    assert answer.json()["type"].endswith("/malformed-json") and literal.lstrip(b"-").decode() in answer.json()["detail"]


def test_the_words_nan_and_infinity_in_strings_are_text(client, tenant) -> None:
    answer = client.put("/v1/agent-policies/p1/draft", content=b'{"policy": {"NaN": "Infinity and beyond"}}',
                        headers={**auth(tenant.admin), **JSON})
    assert answer.status_code == 200 and answer.json()["policy"] == {"NaN": "Infinity and beyond"}


# --- 4. a trailing slash is not a route: 404, no redirect -------------------------------------

@pytest.mark.parametrize("method, url, key", [("POST", "/v1/orders/", "merchant"), ("POST", "/v1/orders/", None),
                                              ("GET", "/v1/customers/", "merchant"), ("GET", "/health/", None)])
def test_a_trailing_slash_is_a_404_problem_not_a_redirect(client, tenant, method, url, key) -> None:
    headers = auth(getattr(tenant, key)) if key else {}
    answer = client.request(method, url, json=order_body("c1", "slash") if method == "POST" else None,
                            headers=headers, follow_redirects=False)
    assert answer.status_code == 404, (answer.status_code, answer.headers)
    assert "location" not in answer.headers and answer.json()["type"].endswith("/not-found")
    assert client.get("/v1/orders/slash", headers=auth(tenant.merchant)).status_code == 404  # nothing was sent


# --- 5. HEAD is GET without the body ----------------------------------------------------------

@pytest.mark.parametrize("url, key", [("/health", None), ("/v1/customers/c1", "merchant"),
                                      ("/v1/customers?limit=2", "merchant"), ("/v1/tenant", "admin"),
                                      ("/v1/orders/nope", "merchant"), ("/v1/customers/c1", None)])
def test_head_answers_what_get_answers_without_the_body(client, tenant, url, key) -> None:
    headers = auth(getattr(tenant, key)) if key else {}
    got, head = client.get(url, headers=headers), client.head(url, headers=headers)
    assert head.status_code == got.status_code, (head.status_code, got.status_code)
    assert head.content == b""
    ignore = {"ratelimit", "date"}  # one more unit spent; the clock
    assert {k: v for k, v in head.headers.items() if k not in ignore} == \
        {k: v for k, v in got.headers.items() if k not in ignore}


def test_head_where_no_get_is_served_is_a_405_and_allow_names_head_beside_get(client, tenant) -> None:
    answer = client.head("/v1/orders", headers=auth(tenant.merchant))
    assert answer.status_code == 405 and answer.headers["allow"] == "POST" and answer.content == b""
    answer = client.put("/v1/customers/c1/balance", headers=auth(tenant.merchant))
    assert answer.status_code == 405 and answer.headers["allow"] == "GET, HEAD"


# --- 6. dryRun is true or false, nothing else -------------------------------------------------

@pytest.mark.parametrize("spelling", ["True", "TRUE", "1", "yes", "on", "y", "t",
                                      "False", "0", "no", "off", "n", "f", ""])
def test_dry_run_takes_only_true_or_false(client, tenant, spelling) -> None:
    answer = client.post(f"/v1/orders?dryRun={spelling}", json=order_body("c1", "dr1"),
                         headers=auth(tenant.merchant))
    assert answer.status_code == 400, (spelling, answer.status_code, answer.text)
    body = answer.json()
    assert body["type"].endswith("/malformed-parameter") and [e["field"] for e in body["errors"]] == ["dryRun"]
    assert client.get("/v1/orders/dr1", headers=auth(tenant.merchant)).status_code == 404  # no real write


def test_dry_run_true_and_false_keep_their_meaning(client, tenant) -> None:
    dry = client.post("/v1/orders?dryRun=true", json=order_body("c1", "dr2"), headers=auth(tenant.merchant))
    assert dry.status_code == 200 and dry.headers["accrue-dry-run"] == "true"
    real = client.post("/v1/orders?dryRun=false", json=order_body("c1", "dr2"), headers=auth(tenant.merchant))
    assert real.status_code == 202 and "accrue-dry-run" not in real.headers


def test_every_boolean_query_parameter_is_strict(client, platform, tenant) -> None:
    from tests.unit.api.test_strict_parameters import all_routes
    from shared.api.strict import _declared

    checked = 0
    for method, path, route in all_routes(platform):
        for name in _declared(route).booleans:
            answer = client.request(method, path, params={name: "yes"}, headers=auth(tenant.admin))
            assert answer.status_code == 400 and answer.json()["type"].endswith("/malformed-parameter"), \
                (method, path, name, answer.status_code)
            checked += 1
    assert checked >= 8  # the dry-runnable writes


# --- 7. the refund's description says what the server answers --------------------------------

def test_an_over_refund_is_the_422_the_refund_operation_describes(client, platform, tenant) -> None:
    from tests.conftest import drain

    client.post("/v1/orders", json=order_body("c1", "q1", "10.00"), headers=auth(tenant.merchant))
    drain(platform)
    answer = client.post("/v1/orders/q1/refunds", json={"refundId": "r1", "amount": "11.00", "currency": "EUR"},
                         headers=auth(tenant.merchant))
    assert answer.status_code == 422 and [e["field"] for e in answer.json()["errors"]] == ["amount"]
    description = client.get("/openapi/v1.json").json()["paths"]["/v1/orders/{orderId}/refunds"]["post"]["description"]
    assert "422" in description and "exceed" in description.split("422", 1)[1]
    assert "exceed" not in description.split("422", 1)[0]  # no longer listed among the 409s


# --- 8. a JSON route takes JSON: 415 for another media type; a Content-Length is digits --------

@pytest.mark.parametrize("content_type", ["text/plain", None, "application/x-www-form-urlencoded",
                                          "application/jsonx"])
def test_a_json_body_sent_as_another_media_type_is_a_415(client, tenant, content_type) -> None:
    import json

    headers = {**auth(tenant.merchant), **({"content-type": content_type} if content_type else {})}
    answer = client.post("/v1/orders", content=json.dumps(order_body("c1", "ct1")).encode(), headers=headers)
    assert answer.status_code == 415, answer.text
    assert answer.json()["type"].endswith("/unsupported-media-type")
    assert client.get("/v1/orders/ct1", headers=auth(tenant.merchant)).status_code == 404


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "application/merge-patch+json"])
def test_json_media_types_are_read(client, tenant, content_type) -> None:
    answer = client.patch("/v1/tenant", content=b'{"name": "Shop"}',
                          headers={**auth(tenant.admin), "content-type": content_type})
    assert answer.status_code == 200, answer.text


def test_no_body_is_left_to_the_route(client, tenant) -> None:
    answer = client.post("/v1/orders", headers=auth(tenant.merchant))  # no body, no type: the body is missing
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "body"


def test_a_csv_upload_route_is_not_a_json_route(client, tenant) -> None:
    answer = client.post("/v1/voucher-pools/pool2/codes", content=b"code\r\nCINE-4F7K-22QX\r\n",
                         headers={**auth(tenant.admin), "content-type": "text/csv"})
    assert answer.status_code == 201, answer.text


def test_every_operation_with_a_json_body_declares_415(client) -> None:
    document = client.get("/openapi/v1.json").json()
    with_json = [(path, method, op) for path, item in document["paths"].items() for method, op in item.items()
                 if "application/json" in op.get("requestBody", {}).get("content", {})]
    assert len(with_json) > 40
    assert not [f"{m} {p}" for p, m, op in with_json if "415" not in op["responses"]]


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", " 2", ""])
def test_a_content_length_that_is_not_digits_is_a_400(client, tenant, length) -> None:
    answer = client.post("/v1/orders", content=b"{}",
                         headers={**auth(tenant.merchant), **JSON, "content-length": length})
    assert answer.status_code == 400, answer.text
    assert answer.json()["type"].endswith("/bad-request") and "Content-Length" in answer.json()["detail"]


# --- 9. a refusal at the edge of a keyed route is authenticated, charged, and says so ---------

def _refusals():
    big = b'{"x": "' + b"a" * 1_100_000 + b'"}'
    return [
        ("malformed JSON", "POST", "/v1/orders", {"content": b"{bad", "headers": JSON}, 400),
        ("lone surrogate", "PUT", "/v1/agent-policies/p1/draft", {"content": b'{"policy": {"k": "\\ud800"}}',
                                                                  "headers": JSON}, 400),
        ("unknown parameter", "GET", "/v1/customers/c1?limt=5", {}, 400),
        ("unknown parameter, hot read", "GET", "/v1/customers/c1/balance?limt=5", {}, 400),
        ("malformed parameter", "POST", "/v1/orders?dryRun=yes", {"json": order_body("c1", "e1")}, 400),
        ("declared too large", "POST", "/v1/orders/batch", {"content": big, "headers": JSON}, 413),
        ("chunked too large", "POST", "/v1/orders", {"content": _chunked(1_200_000),
                                                     "headers": {"content-type": "text/plain"}}, 413),
        ("Content-Length abc", "POST", "/v1/orders", {"content": b"{}", "headers": {**JSON, "content-length": "abc"}},
         400),
        ("media type", "POST", "/v1/orders", {"content": b"{}", "headers": {"content-type": "text/plain"}}, 415),
        ("repeated name", "POST", "/v1/orders", {"content": b'{"customerId": "c1", "customerId": "c2"}',
                                                 "headers": JSON}, 400),
    ]


@pytest.mark.parametrize("what, method, url, kwargs, status", _refusals(), ids=[r[0] for r in _refusals()])
def test_a_keyed_refusal_carries_the_rate_limit_headers_and_is_charged(client, tenant, what, method, url, kwargs,
                                                                       status) -> None:
    def remaining() -> int:
        answer = client.get("/v1/tenant", headers=auth(tenant.admin))
        return int(answer.headers["ratelimit"].split("r=")[1].split(";")[0])

    before = remaining()
    kwargs = dict(kwargs)
    headers = {**auth(tenant.admin), **kwargs.pop("headers", {})}
    answer = client.request(method, url, headers=headers, **kwargs)
    assert answer.status_code == status, answer.text
    assert answer.headers["ratelimit-policy"].startswith('"key";q=') and answer.headers["ratelimit"], what
    assert remaining() == before - 2, what  # the refusal cost one unit (the reading GET the other)


@pytest.mark.parametrize("what, method, url, kwargs, status", _refusals(), ids=[r[0] for r in _refusals()])
def test_a_refusal_without_a_valid_key_is_a_401(client, tenant, what, method, url, kwargs, status) -> None:
    kwargs = dict(kwargs)
    for headers in ({}, {"Authorization": "Bearer acr_aaaaaaaaaaaa_nope"}):
        answer = client.request(method, url, headers={**headers, **kwargs.get("headers", {})},
                                **{k: v for k, v in kwargs.items() if k != "headers"})
        assert answer.status_code == 401, (what, answer.status_code, answer.text)
        assert answer.headers["ratelimit-policy"] == '"failed-auth";q=30;w=60'
        if "content" in kwargs and not isinstance(kwargs["content"], bytes):
            kwargs["content"] = _chunked(1_200_000)  # a generator is spent


def test_a_refusal_on_a_route_without_a_key_carries_no_rate_limit(client) -> None:
    answer = client.get("/health?verbose=1")
    assert answer.status_code == 400 and "ratelimit" not in answer.headers


# --- 10. a name twice in one object is malformed JSON, at any depth, and changes nothing ------

def _with_repeat(body: dict, after: str, repeat: str) -> bytes:
    """``body``'s JSON with ``repeat`` (``"name": value``) inserted after the first ``after``."""
    text = json.dumps(body)
    assert after in text
    return text.replace(after, after + ", " + repeat, 1).encode()


def _batch_with_a_repeat() -> bytes:
    orders = [order_body("c1", f"b{n}") for n in range(100)]  # over OFF_LOOP_BYTES: checked on a thread
    body = _with_repeat({"orders": orders}, '"orderId": "b99"', '"amount": "9999.00"')
    assert len(body) > OFF_LOOP_BYTES
    return body


@pytest.mark.parametrize("method, url, key, body, name", [
    ("POST", "/v1/orders", "merchant", _with_repeat(order_body("c1", "d1"), '"amount": "10.00"', '"amount": "9999.00"'),
     "amount"),
    ("POST", "/v1/orders", "merchant", _with_repeat(order_body("c1", "d2"), '"quantity": 1', '"quantity": 1000'),
     "quantity"),
    ("POST", "/v1/orders/batch", "merchant", _batch_with_a_repeat(), "amount"),
    ("POST", "/v1/customers/c1/adjustments", "admin",
     b'{"points": 5, "reasonCode": "goodwill", "reason": "r", "idempotencyKey": "d3", "points": 50000}', "points"),
    ("PUT", "/v1/agent-policies/p1/draft", "admin", b'{"policy": {"limits": {"k": 1, "k": 2}}}', "k"),
], ids=["order", "order item", "batch of 100", "adjustment", "nested policy"])
def test_a_repeated_name_is_malformed_json_and_changes_nothing(client, platform, tenant, method, url, key, body,
                                                               name) -> None:
    answer = client.request(method, url, content=body, headers={**auth(getattr(tenant, key)), **JSON})
    assert answer.status_code == 400, answer.text
    problem = answer.json()
    assert problem["type"].endswith("/malformed-json") and f"{name!r} appears twice" in problem["detail"]
    drain(platform)
    assert platform.ledger.head("acme", "c1").seq == 0
    for order_id in ("d1", "d2", "b0", "b99"):
        assert client.get(f"/v1/orders/{order_id}", headers=auth(tenant.merchant)).status_code == 404
    assert client.get("/v1/agent-policies/p1", headers=auth(tenant.admin)).status_code == 404


def test_one_name_in_several_objects_is_no_repeat(client, tenant) -> None:
    orders = [order_body("c1", "r1"), order_body("c1", "r2")]  # "orderId", "sku", "amount" in each object once
    answer = client.post("/v1/orders/batch", content=json.dumps({"orders": orders}).encode(),
                         headers={**auth(tenant.merchant), **JSON})
    assert answer.status_code == 202, answer.text
