"""The import upload URL (``AzureBlobSink.upload_url``): a user-delegation SAS for one
blob, create and write only, HTTPS only, short-lived, signed with the key the service
hands the identity (never the account key). Blob Storage's user-delegation-key call has
no runnable peer here (Azurite needs an Entra identity for it): the real SDK talks to
an in-process transport that answers as the service does."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.rest._requests_basic import RestRequestsTransportResponse
from azure.storage.blob import BlobServiceClient

from shared.blobs.azure import AzureBlobSink
from shared.blobs.port import InvalidBlobPath
from tests.fake_transport import FakeTransport

KEY = base64.b64encode(b"k" * 32).decode()


class Credential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("token", int(datetime.now(timezone.utc).timestamp()) + 3600)


class DelegationKeyService(FakeTransport):
    def __init__(self) -> None:
        self.requests: list[Any] = []

    def send(self, request: Any, **kwargs: Any) -> RestRequestsTransportResponse:
        self.requests.append(request)
        assert "comp=userdelegationkey" in request.url and request.method == "POST"
        body = (f"<?xml version=\"1.0\" encoding=\"utf-8\"?><UserDelegationKey><SignedOid>oid-1</SignedOid>"
                f"<SignedTid>tid-1</SignedTid><SignedStart>2026-12-05T09:55:00Z</SignedStart>"
                f"<SignedExpiry>2026-12-05T10:15:00Z</SignedExpiry><SignedService>b</SignedService>"
                f"<SignedVersion>2024-08-04</SignedVersion><Value>{KEY}</Value></UserDelegationKey>")
        response = requests.Response()
        response.status_code = 200
        response._content = body.encode()
        response._content_consumed = True
        response.headers.update({"Content-Type": "application/xml"})
        response.request = requests.Request(request.method, request.url).prepare()
        response.url = request.url
        return RestRequestsTransportResponse(request=request, internal_response=response)


@pytest.fixture
def sink_and_service() -> tuple[AzureBlobSink, DelegationKeyService]:
    service = DelegationKeyService()
    client = BlobServiceClient("https://acct.blob.core.windows.net", credential=Credential(), transport=service)
    sink = object.__new__(AzureBlobSink)  # the constructor's container check needs the network
    sink._service = client
    sink._container = client.get_container_client("imports")
    return sink, service


def test_the_upload_url_is_a_short_lived_create_only_sas_for_one_blob(sink_and_service) -> None:
    sink, service = sink_and_service
    url = sink.upload_url("imports/acme/imp-1/source.ndjson", timedelta(minutes=15))
    parsed = urlparse(url)
    query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
    assert parsed.scheme == "https" and parsed.path == "/imports/imports/acme/imp-1/source.ndjson"
    assert query["sp"] == "cw" and query["sr"] == "b" and query["spr"] == "https"
    assert query["skoid"] == "oid-1" and "sig" in query  # signed with the delegation key, not an account key
    expiry = datetime.fromisoformat(unquote(query["se"]).replace("Z", "+00:00"))
    assert timedelta(0) < expiry - datetime.now(timezone.utc) <= timedelta(minutes=15)
    assert len(service.requests) == 1
    signature = base64.b64decode(query["sig"])
    assert len(signature) == hashlib.sha256().digest_size
    assert not hmac.compare_digest(signature, b"\0" * 32)


def test_an_upload_url_is_refused_for_a_bad_path_or_a_long_life(sink_and_service) -> None:
    sink, service = sink_and_service
    with pytest.raises(InvalidBlobPath):
        sink.upload_url("../escape", timedelta(minutes=5))
    with pytest.raises(AssertionError):
        sink.upload_url("imports/a/b", timedelta(hours=2))
    assert service.requests == []
