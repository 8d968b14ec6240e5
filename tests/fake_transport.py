"""A base for test doubles of Azure services that have no runnable peer (Key Vault,
Web PubSub): an azure-core ``HttpTransport`` that answers in process, so the real
SDK client builds its requests and parses the answers as it would on Azure."""

from __future__ import annotations

import json
from typing import Any

import requests
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest._requests_basic import RestRequestsTransportResponse


class FakeTransport(HttpTransport):
    """Plumbing of a transport; subclasses implement ``send`` with ``_respond``."""

    def __enter__(self) -> "FakeTransport":
        return self

    def __exit__(self, *args: Any) -> None:
        pass

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def _respond(self, request: Any, status: int, payload: Any,
                 headers: dict[str, str] | None = None) -> RestRequestsTransportResponse:
        """An answer as the service sends it: JSON ``payload`` (None: no body)."""
        response = requests.Response()
        response.status_code = status
        response._content = b"" if payload is None else json.dumps(payload).encode()
        response._content_consumed = True
        response.headers.update({"Content-Type": "application/json; charset=utf-8", **(headers or {})})
        response.request = requests.Request(request.method, request.url).prepare()
        response.url = request.url
        return RestRequestsTransportResponse(request=request, internal_response=response)
