"""The partner-adapter port: how points leave Accrue for a partner's goods
(a voucher, airline miles), and the resilience around every call.

* ``PartnerPort`` is the port: one call, ``fulfil(PartnerRequest) -> PartnerReceipt``.
  The domain (``redemptions``, ``conversions``) only knows this Protocol.
* ``HttpPartnerAdapter`` speaks a small JSON protocol over httpx, with a
  connect/read timeout: ``POST {baseUrl}/v1/fulfilments`` with an
  ``Idempotency-Key`` header equal to the request's ``reference``; a 2xx with
  ``{"partnerReference": "..."}`` is success, a 4xx (other than 408/429) is a
  refusal for good, anything else (timeout, connection error, 5xx, 408, 429,
  an unreadable body) is transient.
* ``ResilientPartner`` wraps any port with retries (exponential backoff with
  full jitter, bounded attempts) and a per-partner ``CircuitBreaker``. It raises
  ``PartnerCallFailed`` with ``permanent`` set when retrying cannot help.

Retrying a call whose response was lost is safe only because the partner
de-duplicates on ``reference`` (our redemption id): the same reference is
the same fulfilment. That is part of the protocol a partner must implement.

``PartnerDirectory`` keeps the partners' endpoints (``system`` container,
partition ``partners``). Only a platform-admin registers a partner URL:
tenants refer to partners by id, so no tenant can aim the platform's
outbound calls at an address of its choosing.

**Address guard.** A partner's ``baseUrl`` goes through the same SSRF guard as
webhook endpoints (``shared.webhooks.ssrf.check_url``, one implementation for
every outbound URL): https only, no credentials, no legacy IP notations, and the
host must resolve to public addresses only. It is checked at registration (a
``422`` naming ``baseUrl``, nothing saved) and again at every call, and the call
connects to the very address that check accepted (the name goes only in the
Host header and as TLS SNI/certificate name), so DNS rebinding gains nothing.
The directory's ``resolver`` and ``allowance`` are the webhook service's
equivalents: the only way past the guard is a ``TestAllowance`` set by test code.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.clock import Clock, iso
from shared.domain.orders import EntityId
from shared.errors import FieldProblem, NotFound
from shared.spend.circuit import CircuitBreaker, CircuitState
from shared.store.layout import SYSTEM
from shared.store.pages import read_all
from shared.store.port import DocumentStore, Filter
from shared.store.replace import Replaced, replace
from shared.telemetry import metrics, tracing
from shared.webhooks.ssrf import Resolver, Target, TestAllowance, UnsafeUrl, check_url

PARTNERS_PK = "partners"


@dataclass(frozen=True)
class PartnerRequest:
    """What a partner is asked to deliver. ``reference`` is our redemption id: the
    partner's idempotency key. No personal data: ids and amounts only."""

    partner_id: str
    kind: str  # "reward" (a voucher, an item) | "conversion" (points into partner currency)
    reference: str
    tenant_id: str
    customer_id: str
    points: int
    sku: str | None = None
    amount: int | None = None  # partner units (e.g. miles) of a conversion
    partner_account: str | None = None  # the customer's account at the partner (e.g. frequent-flyer number)

    def body(self) -> dict[str, Any]:
        return {"reference": self.reference, "kind": self.kind, "tenantId": self.tenant_id,
                "customerId": self.customer_id, "points": self.points, "sku": self.sku, "amount": self.amount,
                "partnerAccount": self.partner_account}


@dataclass(frozen=True)
class PartnerReceipt:
    partner_reference: str
    attempts: int = 1


class PartnerCallFailed(Exception):
    """The call did not succeed. ``permanent``: the partner refused (retrying cannot help)."""

    def __init__(self, message: str, *, permanent: bool, attempts: int = 1, circuit: str | None = None) -> None:
        super().__init__(message)
        self.message, self.permanent, self.attempts, self.circuit = message, permanent, attempts, circuit


FULFILMENTS_PATH = "/v1/fulfilments"

# The guard as a partner call uses it: the full URL in, the checked (pinned) target out.
Guard = Callable[[str], Target]


class UnsafePartnerUrl(UnsafeUrl):
    """A partner's baseUrl the address guard refuses (at registration: nothing is saved)."""

    code = "partner-url-refused"


class PartnerPort(Protocol):
    def fulfil(self, request: PartnerRequest) -> PartnerReceipt: ...


class PartnerConfig(BaseModel):
    """A partner's endpoint and its call budget (platform-admin)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    base_url: str = Field(alias="baseUrl", min_length=8, max_length=500)
    timeout_seconds: float = Field(default=5.0, alias="timeoutSeconds", ge=0.05, le=30)
    max_attempts: int = Field(default=3, alias="maxAttempts", ge=1, le=5)
    failure_threshold: int = Field(default=5, alias="failureThreshold", ge=1, le=100)
    cooldown_seconds: float = Field(default=30.0, alias="cooldownSeconds", ge=0.1, le=3600)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL as bad:
            raise ValueError(f"not a URL: {bad}") from None
        if url.scheme not in ("http", "https") or not url.host or url.query or url.fragment:
            raise ValueError("must be an absolute http(s) URL without query or fragment")
        return value.rstrip("/")


class HttpPartnerAdapter:
    """One attempt per ``fulfil`` call; resilience is ``ResilientPartner``'s job.

    Every call first passes the URL through ``guard`` (the SSRF check, with a fresh
    resolution) and then connects to the address it returned: the request line goes
    to ``scheme://<address>:<port>``, the name only as Host header and TLS SNI (which
    is also the name the certificate is verified against). Never a redirect."""

    def __init__(self, config: PartnerConfig, guard: Guard, client: httpx.Client | None = None) -> None:
        self._config = config
        self._guard = guard
        self._client = client or httpx.Client(timeout=httpx.Timeout(config.timeout_seconds),
                                              follow_redirects=False, trust_env=False)

    @tracing.traced("partner call", tracing.CLIENT)
    def fulfil(self, request: PartnerRequest) -> PartnerReceipt:
        try:
            target = self._guard(f"{self._config.base_url}{FULFILMENTS_PATH}")
        except UnsafeUrl as refused:
            # Not sent. Transient: the partner's DNS may be fixed; the breaker stops the calls meanwhile.
            raise PartnerCallFailed(f"partner {request.partner_id} refused by the address guard (SSRF): "
                                    f"{refused.message}", permanent=False) from None
        address = f"[{target.address}]" if ":" in target.address else target.address
        pinned = f"{target.scheme}://{address}:{target.port}{target.target}"
        try:
            response = self._client.post(pinned, json=request.body(),
                                         headers={"Idempotency-Key": request.reference, "Host": target.host_header},
                                         extensions={"sni_hostname": target.host})
        except httpx.TimeoutException:
            raise PartnerCallFailed(f"partner {request.partner_id} timed out after "
                                    f"{self._config.timeout_seconds}s", permanent=False) from None
        except httpx.HTTPError as exc:
            raise PartnerCallFailed(f"partner {request.partner_id} unreachable: {type(exc).__name__}",
                                    permanent=False) from None
        if 200 <= response.status_code < 300:
            try:
                reference = response.json()["partnerReference"]
                assert isinstance(reference, str) and 0 < len(reference) <= 200
            except (ValueError, KeyError, TypeError, AssertionError):
                raise PartnerCallFailed(f"partner {request.partner_id} answered without a partnerReference",
                                        permanent=False) from None
            return PartnerReceipt(reference)
        permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
        raise PartnerCallFailed(f"partner {request.partner_id} answered HTTP {response.status_code}",
                                permanent=permanent)

    def close(self) -> None:
        self._client.close()


@dataclass
class RetryPolicy:
    max_attempts: int = 3
    base_delay: float = 0.1
    max_delay: float = 2.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2^(attempt-1))]."""
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


@dataclass
class ResilientPartner:
    partner_id: str
    inner: PartnerPort
    breaker: CircuitBreaker
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def fulfil(self, request: PartnerRequest) -> PartnerReceipt:
        try:
            return self._fulfil(request)
        finally:
            metrics.partner_circuit(self.partner_id, self.breaker.state.value)

    def _fulfil(self, request: PartnerRequest) -> PartnerReceipt:
        last: PartnerCallFailed | None = None
        for attempt in range(1, self.policy.max_attempts + 1):
            if not self.breaker.allow():
                raise PartnerCallFailed(
                    f"partner {self.partner_id} is unavailable (circuit open; retry in "
                    f"{self.breaker.retry_after():.0f}s)", permanent=False, attempts=attempt - 1,
                    circuit=CircuitState.OPEN.value)
            try:
                receipt = self.inner.fulfil(request)
            except PartnerCallFailed as failure:
                if failure.permanent:
                    # A refusal is an answer: the partner is healthy.
                    self.breaker.record_success()
                    raise PartnerCallFailed(failure.message, permanent=True, attempts=attempt,
                                            circuit=self.breaker.state.value) from None
                self.breaker.record_failure()
                last = failure
                if attempt < self.policy.max_attempts:
                    self.sleep(self.policy.delay(attempt, self.rng))
                continue
            except Exception:
                # Anything else is a failed call too: the breaker must not stay in its half-open trial.
                self.breaker.record_failure()
                raise
            self.breaker.record_success()
            return PartnerReceipt(receipt.partner_reference, attempts=attempt)
        assert last is not None
        raise PartnerCallFailed(f"{last.message} ({self.policy.max_attempts} attempts)", permanent=False,
                                attempts=self.policy.max_attempts, circuit=self.breaker.state.value)


class PartnerDirectory:
    """Registered partners and their ports (one resilient port per partner and config)."""

    def __init__(self, store: DocumentStore, clock: Clock, *, resolver: Resolver | None = None,
                 allowance: TestAllowance | None = None) -> None:
        self._store = store
        self._clock = clock
        self._ports: dict[str, tuple[str, PartnerPort]] = {}
        self._overrides: dict[str, PartnerPort] = {}
        self._lock = threading.Lock()
        # As in WebhookService: None = the system resolver; an allowance only from test code.
        self.resolver = resolver
        self.allowance = allowance

    def check_url(self, url: str) -> Target:
        """The SSRF guard with this directory's resolver and allowance (read at each call)."""
        return check_url(url, self.resolver, self.allowance)

    def save(self, partner_id: str, config: PartnerConfig, actor: str) -> Replaced:
        """Register or change a partner; exactly once per change (``shared.store.replace``):
        ``before``/``after`` are public views, and a repeat of the stored config changes nothing.
        The base URL goes through the SSRF guard first (``UnsafePartnerUrl``: nothing stored)."""
        try:
            self.check_url(f"{config.base_url}{FULFILMENTS_PATH}")
        except UnsafeUrl as refused:
            raise UnsafePartnerUrl(f"baseUrl refused: {refused.message}",
                                   [FieldProblem("baseUrl", refused.message)]) from None
        fields = config.model_dump(mode="json", by_alias=True)

        def build(current: dict[str, Any] | None) -> dict[str, Any]:
            return {"id": partner_id, "pk": PARTNERS_PK, "docType": "partner", "partnerId": partner_id, **fields,
                    "updatedAt": iso(self._clock.now()), "updatedBy": actor}

        result = replace(self._store, SYSTEM, PARTNERS_PK, partner_id, build,
                         content=lambda d: ({k: d.get(k) for k in fields}, d.get("docType")))
        return Replaced(public_view(result.before) if result.before else None, public_view(result.after),
                        result.changed)

    def get(self, partner_id: str) -> dict[str, Any]:
        doc = self._store.read(SYSTEM, PARTNERS_PK, partner_id)
        if doc is None or doc.get("docType") != "partner":
            raise NotFound(f"partner {partner_id!r} is not registered")
        return public_view(doc)

    def exists(self, partner_id: str) -> bool:
        with self._lock:
            if partner_id in self._overrides:
                return True
        doc = self._store.read(SYSTEM, PARTNERS_PK, partner_id)
        return doc is not None and doc.get("docType") == "partner"

    def list(self) -> list[dict[str, Any]]:
        docs = read_all(self._store, SYSTEM, PARTNERS_PK, (Filter("docType", "=", "partner"),))
        return [public_view(d) for d in docs]  # every one, in id order (keyset pages, no cap)

    def use(self, partner_id: str, port: PartnerPort) -> None:
        """Wire a port in-process (an SDK-based adapter, or a test double); wins over the stored URL."""
        with self._lock:
            self._overrides[partner_id] = port

    def port(self, partner_id: EntityId) -> PartnerPort:
        with self._lock:
            if partner_id in self._overrides:
                return self._overrides[partner_id]
        doc = self._store.read(SYSTEM, PARTNERS_PK, partner_id)
        if doc is None or doc.get("docType") != "partner":
            raise NotFound(f"partner {partner_id!r} is not registered")
        version = doc["_etag"]
        with self._lock:
            cached = self._ports.get(partner_id)
            if cached is not None and cached[0] == version:
                return cached[1]
            config = PartnerConfig.model_validate({f.alias: doc[f.alias] for f in PartnerConfig.model_fields.values()
                                                   if f.alias in doc})
            port = ResilientPartner(partner_id, HttpPartnerAdapter(config, self.check_url),
                                    CircuitBreaker(config.failure_threshold, config.cooldown_seconds),
                                    RetryPolicy(max_attempts=config.max_attempts))
            self._ports[partner_id] = (version, port)
            return port


def public_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc.get(k) for k in ("partnerId", "baseUrl", "timeoutSeconds", "maxAttempts", "failureThreshold",
                                    "cooldownSeconds", "updatedAt", "updatedBy")}
