"""The composition root: builds the adapters the settings choose and the services
over them. The FastAPI app, the Azure Functions and the local runner all get
their services from one ``Platform``, so they run the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.app.auth import ApiKeys
from shared.app.corrections import Corrections
from shared.app.customers import CustomerService
from shared.app.ingest import IngestHandler
from shared.app.orders import OrderIntake
from shared.app.poison import PoisonStore
from shared.app.provisioning import TenantProvisioning
from shared.app.sample_data import seed as seed_sample_data
from shared.app.projections import Projector, ProjectorCheckpoint
from shared.app.tenant_changes import TenantChanges
from shared.app.tenants import TenantDirectory
from shared.audit.log import AuditLog
from shared.blobs.port import BlobSink
from shared.bus.port import OrderBus
from shared.clock import Clock, SystemClock
from shared.earning import EarningRulesProvider
from shared.expiry.service import ExpiryService
from shared.pending.maturation import Maturation
from shared.errors import ConfigurationError, NotFound
from shared.keys import KeyProvider, build_key_provider
from shared.governance.acts import executors as governance_executors
from shared.governance.dual_control import DualControl
from shared.governance.keys import KeyAdministration
from shared.governance.operators import Operators
from shared.governance.webauthn import RelyingParty
from shared.ledger.service import Ledger
from shared.privacy.erasure import Erasures
from shared.privacy.personal import PersonalDataVault
from shared.fraud import Fraud, build_fraud
from shared.reviews import ReviewQueue
from shared.rules.admin import RuleSetAdmin
from shared.rules.lifecycle import RuleSetService
from shared.rules.provider import RuleSetProvider
from shared.rules.sealing import KeyProviderSealer
from shared.schemas.checked_bus import SchemaCheckedBus
from shared.settings import Settings
from shared.spend import Spend, build_spend
from shared.spend.simulator import SIMULATOR_ID, PartnerSimulator
from shared.vouchers import Vouchers, build_vouchers
from shared.referrals import Referrals
from shared.store.layout import CONTAINERS
from shared.store.port import DocumentStore
from shared.tiers import TierService
from shared.webhooks.delivery import DeliveryWorker
from shared.webhooks.service import WebhookService


@dataclass
class Platform:
    settings: Settings
    store: DocumentStore
    bus: OrderBus
    clock: Clock
    # What ingestion earns by; None: the tenant's active rule set (``rule_provider``).
    rules: EarningRulesProvider | None = None
    # Tenant KEKs (local keyring | Key Vault): PII data keys, webhook secrets, export files.
    key_provider: KeyProvider | None = None
    ledger: Ledger = field(init=False)
    # The rule language (issue 3): lifecycle, the provider ingestion uses, the admin acts.
    rule_sets: RuleSetService = field(init=False)
    rule_provider: RuleSetProvider = field(init=False)
    rule_admin: RuleSetAdmin = field(init=False)
    tenants: TenantDirectory = field(init=False)
    customers: CustomerService = field(init=False)
    keys: ApiKeys = field(init=False)
    poison: PoisonStore = field(init=False)
    intake: OrderIntake = field(init=False)
    ingest: IngestHandler = field(init=False)
    projector: Projector = field(init=False)
    checkpoint: ProjectorCheckpoint = field(init=False)
    corrections: Corrections = field(init=False)
    # Privacy and governance (issue 4): the audit log, customers' personal data,
    # dual control of platform-admin acts, and the schema-checked bus the intake uses.
    audit: AuditLog = field(init=False)
    vault: PersonalDataVault = field(init=False)
    # The ledger's hash chains (issue 19): verify a customer or a tenant, the daily tenant digest.
    chains: Any = field(init=False)
    erasures: Erasures = field(init=False)
    operators: Operators = field(init=False)
    approvals: DualControl = field(init=False)
    # Every issue and revoke of an API key (audited; platform-admin under dual control).
    key_admin: KeyAdministration = field(init=False)
    event_bus: SchemaCheckedBus = field(init=False)
    # Data out (issue 5): signed webhooks (outbox fed by the projector) and warehouse exports.
    webhooks: WebhookService = field(init=False)
    webhook_worker: DeliveryWorker = field(init=False)
    exports: Any = field(init=False)
    # Tiers (issue 6): programmes, upgrades from the change feed, periodic evaluation, history.
    tiers: TierService = field(init=False)
    # Spending (issue 6, shared/spend): rewards, redemptions, conversions, partners.
    spend: Spend = field(init=False)
    # Vouchers (issue 20, shared/vouchers): points for codes, point-of-sale redemption, partner code pools.
    vouchers: Vouchers = field(init=False)
    referrals: Referrals = field(init=False)
    # Fraud controls (issue 6, shared/reviews): the manual review queue; kinds register their handlers.
    reviews: ReviewQueue = field(init=False)
    # Agents' tools behind the MCP server (issue 21, shared.agents.tools.AgentTools).
    agents: Any = field(init=False)
    # Fraud controls (issue 6, shared/fraud): policies, velocity and anomaly screening of earns, held earns.
    fraud: Fraud = field(init=False)
    # Transfers between members (issue 19, shared/transfers): the saga and its recovery.
    transfers: Any = field(init=False)
    # Expiry (issue 6, shared/expiry): the expiry calendar (fed by the projector), the job, upcoming expiries.
    expiry: ExpiryService = field(init=False)
    # Pending points (issue 19, shared/pending): the maturity calendar (fed by the projector) and the job.
    maturation: Maturation = field(init=False)
    # Rule performance (issue 14, shared/graphql/performance): daily counters per rule, from the change feed.
    rule_performance: Any = field(init=False)
    # Live updates through Azure Web PubSub (shared/graphql/webpubsub); None without WEBPUBSUB_ENDPOINT.
    live_updates: Any = field(init=False)
    extras: dict[str, Any] = field(default_factory=dict)
    # Every per-process cache of tenant configuration, and the announcements of its changes.
    tenant_changes: TenantChanges = field(init=False)
    provisioning: TenantProvisioning = field(init=False)
    # Historical imports and bulk awards (issue 20, shared/imports); birthday and anniversary
    # rewards (issue 20, shared/occasions).
    imports: Any = field(init=False)
    occasions: Any = field(init=False)

    def _wallets_of(self, tenant_id: str) -> Any:
        """The tenant's wallets for the ledger (None: none, or a ledger written for no known tenant)."""
        try:
            return self.tenants.get(tenant_id).wallets
        except NotFound:
            return None

    def __post_init__(self) -> None:
        if self.key_provider is None:
            self.key_provider = build_key_provider(self.settings)
        self.ledger = Ledger(self.store, self.clock)
        self.tenants = TenantDirectory(self.store)
        self.ledger.wallets_of = self._wallets_of
        self.audit = AuditLog(self.store, self.clock, archive_sink=lambda: build_audit_sink(self.settings))
        self.vault = PersonalDataVault(self.store, self.key_provider, self.clock, self.audit)
        from shared.app.ledger_chain import LedgerChains  # noqa: PLC0415 - keeps the import graph acyclic
        self.chains = LedgerChains(self.store, self.audit, self.clock)
        self.customers = CustomerService(self.store, self.clock, self.vault)
        self.keys = ApiKeys(self.store, self.clock)
        self.poison = PoisonStore(self.store, self.clock)
        self.event_bus = SchemaCheckedBus(self.bus, self.poison)
        self.intake = OrderIntake(self.store, self.event_bus, self.tenants, self.customers, self.ledger, self.clock)
        # Experiment secrets are sealed under the tenant's KEK, never stored in the clear.
        self.rule_sets = RuleSetService(self.store, self.clock, sealer=KeyProviderSealer(self.key_provider))
        self.rule_provider = RuleSetProvider(self.rule_sets)
        if self.rules is None:
            self.rules = self.rule_provider
        self.tiers = TierService(self.store, self.clock, self.tenants, self.customers)
        self.ingest = IngestHandler(self.ledger, self.tenants, self.customers, self.rules, self.poison, self.store,
                                    tier_multiplier=self.tiers.multiplier)
        self.projector = Projector(self.store, self.clock)
        self.checkpoint = ProjectorCheckpoint(self.store, self.clock)
        self.corrections = Corrections(self.store, self.ledger, self.clock, self.tenants)
        self.operators = Operators(self.store, self.clock, self.audit,
                                   RelyingParty(self.settings.webauthn_rp_id, self.settings.webauthn_origins,
                                                self.settings.webauthn_aaguids))
        self.approvals = DualControl(self.store, self.clock, self.audit, self.operators,
                                     executors=governance_executors(self), enabled=self.settings.dual_control)
        self.key_admin = KeyAdministration(self.keys, self.audit, self.approvals, self.store, self.clock)
        self.webhooks = WebhookService(self.store, self.clock, self.key_provider, audit=self.audit)
        self.webhook_worker = DeliveryWorker(self.store, self.clock, self.webhooks)
        self.rule_admin = RuleSetAdmin(self.rule_sets, self._invalidate_rules, self.audit, self.webhooks, self.store,
                                       self.ledger, self.customers, self.clock)
        self.projector.subscribers.append(self.webhooks.project)
        self.expiry = ExpiryService(self.store, self.ledger, self.tenants, self.clock)
        self.projector.subscribers.append(self.expiry.calendar.project)
        self.maturation = Maturation(self.store, self.ledger, self.tenants, self.clock)
        self.projector.subscribers.append(self.maturation.calendar.project)
        self.tiers.publish = self.webhooks.tier_changed
        self.projector.subscribers.append(self.tiers.project)
        from shared.graphql.performance import RulePerformance  # noqa: PLC0415 - keeps the import graph acyclic
        self.rule_performance = RulePerformance(self.store)
        self.projector.subscribers.append(self.rule_performance.project)
        # Live updates on Azure (Web PubSub), published from the change feed; None locally.
        from shared.graphql import webpubsub  # noqa: PLC0415
        self.live_updates = webpubsub.build(self.settings.webpubsub_endpoint, self.settings.webpubsub_hub)
        if self.live_updates is not None:
            self.projector.subscribers.append(self.live_updates.publish)
        from shared.exports.service import ExportService  # noqa: PLC0415 - keeps the import graph acyclic
        from shared.keys.factory import build_export_key_provider  # noqa: PLC0415
        self.exports = ExportService(self.store, self.clock, self.key_provider,
                                     sink=lambda: build_export_sink(self.settings), vault=self.vault, audit=self.audit,
                                     export_keys=lambda: build_export_key_provider(self.settings))
        from shared.imports.service import Imports  # noqa: PLC0415 - keeps the import graph acyclic
        from shared.occasions.service import Occasions  # noqa: PLC0415
        self.occasions = Occasions(self.store, self.ledger, self.tenants, self.clock, self.vault.blind_secret)
        self.customers.occasions = self.occasions
        self.imports = Imports(self.store, self.ledger, self.customers, self.tenants, self.rule_sets, self.clock,
                               self.audit, sink=lambda: build_import_sink(self.settings), enqueue=self._enqueue)
        # Erasure that reaches every copy (shared.privacy.erasure); its log beside the audit archive.
        self.erasures = Erasures(self.store, self.clock, self.vault, self.webhooks, self.exports,
                                 log_sink=lambda: build_audit_sink(self.settings))
        self.spend = build_spend(self.store, self.ledger, self.clock)
        self.reviews = ReviewQueue(self.store, self.ledger, self.clock, self.audit)
        self.fraud = build_fraud(self.store, self.ledger, self.clock, self.reviews)
        self.ingest.fraud = self.fraud.controls
        from shared.transfers.saga import Transfers  # noqa: PLC0415 - keeps the import graph acyclic
        self.transfers = Transfers(self.store, self.ledger, self.clock, self.tenants, self.customers,
                                   transfers_per_hour=lambda t: self.fraud.policies.get(t).customer.transfers_per_hour)
        # Held earns reach the review queue from the change feed (at least once; submit is idempotent).
        self.projector.subscribers.append(self.fraud.holds.project)
        self.spend.redemptions.attach_review_queue(self.reviews)
        self.spend.redemptions.screen = self.fraud.controls.check_redemption
        # Agents' tools (issue 21): guardrail policies, quotes, the decision trail; the MCP server
        # (shared/api/mcp.py) is their protocol door. Registers the review kinds it escalates to.
        from shared.agents.tools import AgentTools  # noqa: PLC0415 - keeps the import graph acyclic
        self.agents = AgentTools(self)
        # Sandbox tenants' partner rewards go to the in-process simulator, never to a real partner.
        self.spend.partners.use(SIMULATOR_ID, PartnerSimulator(self._is_sandbox))
        self.vouchers = build_vouchers(self.store, self.ledger, self.clock, self.spend, self.vault.keyed_digest)
        # Referrals (issue 20): qualification and reversal from the ledger's change feed.
        self.referrals = Referrals(self.store, self.ledger, self.clock, self.vault.keyed_digest, self.vault.open,
                                   reviews=self.reviews, tenants=self.tenants)
        self.referrals.publish = lambda tenant_id, event_type, data, source: self.webhooks.publish(
            tenant_id, event_type, data, source_id=source)
        self.projector.subscribers.append(self.referrals.project)
        self.erasures.also.append(self.referrals.forget_signals)
        self.erasures.also.append(self.agents.forget_customer)
        self.referrals.context = self._referral_context
        self.vouchers.publish = lambda tenant_id, event_type, data, at: self.webhooks.publish(
            tenant_id, event_type, data, source_id=f"{event_type}:{data['voucherId']}:{data.get('use', '')}",
            occurred_at=at)
        # All-or-nothing, idempotent tenant creation (keys first); sandboxes get sample data.
        self.provisioning = TenantProvisioning(self, seed=seed_sample_data)
        self.tenant_changes = TenantChanges()
        for cache in (self.tenants.cache, self.tiers.cache, self.webhooks.cache):
            self.tenant_changes.register(cache.forget)
            cache.announce = self.tenant_changes.announce
        self.tenant_changes.register(self._forget_rules)

    def _enqueue(self, kind: str, key: str, generation: str, params: dict[str, Any]) -> bool:
        from shared.jobs import work_items  # noqa: PLC0415 - shared.jobs reads this module's types

        return work_items(self).enqueue(kind, key, generation, params)

    def _referral_context(self, tenant_id: str, customer_id: str) -> tuple[Any, Any]:
        """What a referral programme's rule condition sees: the tenant's settings and the
        referee as a rule sees a customer (shared/referrals)."""
        from datetime import date  # noqa: PLC0415

        from shared.earning import CustomerContext  # noqa: PLC0415

        customer = self.customers.get(tenant_id, customer_id)
        return self.tenants.get(tenant_id), CustomerContext(
            customer_id=customer_id, join_date=date.fromisoformat(customer["joinDate"]), tier=customer.get("tier"),
            tags=tuple(customer.get("tags", ())))

    def _is_sandbox(self, tenant_id: str) -> bool:
        try:
            return self.tenants.get(tenant_id).sandbox
        except NotFound:
            return False

    def _invalidate_rules(self, tenant_id: str) -> None:
        """The tenant's active rule set changed here: drop its cached routing, and tell
        the other processes (shared.app.tenant_changes)."""
        self._forget_rules(tenant_id)
        self.tenant_changes.announce(tenant_id)

    def _forget_rules(self, tenant_id: str) -> None:
        self.rule_provider.invalidate(tenant_id)
        if self.rules is not self.rule_provider and hasattr(self.rules, "invalidate"):
            self.rules.invalidate(tenant_id)

    def close(self) -> None:
        self.webhook_worker.close()  # its kept-alive connections
        self.bus.close()
        self.store.close()


def build_store(settings: Settings) -> DocumentStore:
    if settings.store == "sqlite":
        from shared.store.sqlite import SqliteDocumentStore

        return SqliteDocumentStore(settings.data_dir / "accrue.db", CONTAINERS, synchronous=settings.sqlite_synchronous,
                                   ttl=settings.ttl)
    from shared.store.cosmos import CosmosDocumentStore  # imported only when chosen
    from azure.identity import DefaultAzureCredential

    assert settings.cosmos_endpoint
    return CosmosDocumentStore(settings.cosmos_endpoint, settings.cosmos_database, CONTAINERS,
                               credential=DefaultAzureCredential(), ttl=settings.ttl)


def build_audit_sink(settings: Settings) -> BlobSink:
    """The audit archive: the ``audit`` blob container (7-year immutability in Bicep), or
    ``<data dir>/blobs/audit`` locally. Built on first use, not at start."""
    if settings.blobs == "local":
        from shared.blobs.local import LocalBlobSink

        return LocalBlobSink(settings.data_dir / "blobs" / "audit")
    from shared.blobs.azure import AzureBlobSink
    from azure.identity import DefaultAzureCredential

    return AzureBlobSink("audit", account_url=settings.blob_account_url, credential=DefaultAzureCredential())


def build_import_sink(settings: Settings) -> BlobSink:
    """Import files (shared/imports): the ``imports`` blob container (uploads arrive through a
    short-lived SAS), or ``<data dir>/blobs/imports`` locally. Built on first use."""
    if settings.blobs == "local":
        from shared.blobs.local import LocalBlobSink

        return LocalBlobSink(settings.data_dir / "blobs" / "imports")
    from shared.blobs.azure import AzureBlobSink
    from azure.identity import DefaultAzureCredential

    return AzureBlobSink("imports", account_url=settings.blob_account_url, credential=DefaultAzureCredential())


def build_export_sink(settings: Settings) -> BlobSink:
    """The warehouse exports: the ``exports`` blob container, or ``<data dir>/blobs/exports``
    locally. Built on first use, not at start."""
    if settings.blobs == "local":
        from shared.blobs.local import LocalBlobSink

        return LocalBlobSink(settings.data_dir / "blobs" / "exports")
    from shared.blobs.azure import AzureBlobSink
    from azure.identity import DefaultAzureCredential

    return AzureBlobSink("exports", account_url=settings.blob_account_url, credential=DefaultAzureCredential())


def build_bus(settings: Settings) -> OrderBus:
    if settings.bus == "local":
        from shared.bus.local_queue import LocalQueue

        return LocalQueue(settings.data_dir / "queue.db", synchronous=settings.sqlite_synchronous)
    from shared.bus.eventhubs import EventHubsOrderBus
    from azure.identity import DefaultAzureCredential

    assert settings.eventhub_namespace
    return EventHubsOrderBus.from_namespace(settings.eventhub_namespace, settings.eventhub_name,
                                            DefaultAzureCredential())


def build_platform(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    store: DocumentStore | None = None,
    bus: OrderBus | None = None,
    rules: EarningRulesProvider | None = None,
    key_provider: KeyProvider | None = None,
) -> Platform:
    settings = settings or Settings.from_env()
    try:
        store = store or build_store(settings)
        bus = bus or build_bus(settings)
    except ConfigurationError:
        raise
    except Exception as exc:  # noqa: BLE001 - any adapter failure at start names its settings
        raise ConfigurationError(
            f"could not start the {settings.store} store / {settings.bus} bus: {exc}. "
            "Check COSMOS_ENDPOINT, EVENTHUB_NAMESPACE and the identity's access."
        ) from exc
    return Platform(settings=settings, store=store, bus=bus, clock=clock or SystemClock(),
                    rules=rules, key_provider=key_provider)
