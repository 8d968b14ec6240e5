"""A webhook delivery continues the trace of the order that caused it: the ledger
entry's ``traceContext`` travels onto the outbox message, never onto the wire body."""

from __future__ import annotations



from tests.conftest import auth, drain, order_body


def test_the_delivery_span_is_a_child_of_the_orders_ledger_append(platform, tenant, client, receiver,
                                                                  allow_loopback, spans) -> None:
    platform.webhooks.register("acme", receiver.url + "/hook", ["transaction.committed"], "erp")
    assert client.post("/v1/orders", json=order_body(), headers=auth(tenant.merchant)).status_code == 202
    drain(platform)
    assert platform.webhook_worker.drain().succeeded == 1
    finished = spans.get_finished_spans()
    [request] = [s for s in finished if s.name == "POST /v1/orders"]
    [append] = [s for s in finished if s.name == "ledger append"]
    [delivery] = [s for s in finished if s.name == "webhook delivery"]
    assert delivery.context.trace_id == request.context.trace_id
    assert delivery.parent.span_id == append.context.span_id
    assert delivery.attributes["accrue.succeeded"] is True and delivery.attributes["http.response.status_code"] == 204
    [got] = receiver.received
    assert b"traceContext" not in got.body and b"traceparent" not in got.body


def test_a_delivery_without_a_context_is_its_own_trace(platform, tenant, receiver, allow_loopback, spans) -> None:
    platform.webhooks.register("acme", receiver.url + "/h", ["ruleset.activated"])
    platform.webhooks.rule_set_activated("acme", "rs1", 3, activated_at="2026-11-01T12:00:00.000000Z")
    assert platform.webhook_worker.run_once().succeeded == 1
    [delivery] = [s for s in spans.get_finished_spans() if s.name == "webhook delivery"]
    assert delivery.parent is None
