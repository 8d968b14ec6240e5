"""The ``EarningRulesProvider`` ingestion uses: the tenant's active rule set
version, or the customer's arm of a running A/B experiment, compiled once.

Per tenant it reads one document (the lifecycle's ``routing``) and keeps it for
``ttl_seconds`` (activations reach every process within that time; the
service's own process can call ``invalidate`` at once). Compiled versions come
from the ``RuleSetRegistry``. A tenant with nothing active earns by
``PointsPerCurrencyUnitRate``.

Guarantee: ``for_tenant`` does not raise because of rules: if a stored version
no longer compiles (a language change) or a routing document is damaged, it
logs and falls back to the rate rule (every result names the rule set that
produced it). Store errors do propagate: they are transient, and the ingest
handler's retry is the right answer to them, not points computed by the wrong rules.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from decimal import Decimal

from shared.domain.tenants import TenantSettings
from shared.earning import EarningRules, PointsPerCurrencyUnitRate
from shared.errors import NotFound
from shared.rules.errors import RuleError
from shared.rules.experiments import assign
from shared.rules.lifecycle import RuleSetService
from shared.rules.ruleset import ArmRules
from shared.telemetry.logs import fields

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Route:
    active: tuple[str, int] | None
    control: tuple[str, int] | None = None
    treatment: tuple[str, int] | None = None
    share: Decimal = Decimal(0)
    secret: bytes = b""


class RuleSetProvider:
    def __init__(self, service: RuleSetService, ttl_seconds: float = 5.0) -> None:
        self.service = service
        self.registry = service.registry
        self.ttl = ttl_seconds
        self._routes: dict[str, tuple[float, _Route]] = {}
        self._lock = threading.Lock()
        self._rate = PointsPerCurrencyUnitRate()

    def invalidate(self, tenant_id: str | None = None) -> None:
        with self._lock:
            if tenant_id is None:
                self._routes.clear()
            else:
                self._routes.pop(tenant_id, None)

    def _route(self, tenant_id: str) -> _Route:
        now = time.monotonic()
        with self._lock:
            cached = self._routes.get(tenant_id)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        routing = self.service._routing(tenant_id) or {}
        active = routing.get("active")
        route = _Route(active=(active["ruleSetId"], int(active["version"])) if active else None)
        experiment = routing.get("experiment")
        if experiment:
            route = _Route(
                active=route.active,
                control=(experiment["control"]["ruleSetId"], int(experiment["control"]["version"])),
                treatment=(experiment["treatment"]["ruleSetId"], int(experiment["treatment"]["version"])),
                share=Decimal(str(experiment["treatmentShare"])),
                secret=self.service.experiment_secret(tenant_id, experiment["sealedSecret"]))
        with self._lock:
            self._routes[tenant_id] = (now, route)
        return route

    def for_tenant(self, tenant: TenantSettings, customer_id: str) -> EarningRules:
        try:
            route = self._route(tenant.tenant_id)
            if route.control is not None and route.treatment is not None:
                arm = assign(route.secret, customer_id, route.share)
                rule_set_id, version = route.treatment if arm == "B" else route.control
                return ArmRules(self.registry.get(tenant.tenant_id, rule_set_id, version), arm)
            if route.active is not None:
                rule_set_id, version = route.active
                return ArmRules(self.registry.get(tenant.tenant_id, rule_set_id, version), None)
        except (RuleError, NotFound, KeyError, ValueError):
            log.exception("rules unavailable; earning by rate", extra=fields(tenant=tenant.tenant_id))
        return self._rate
