"""``python -m shared.local``: run the local platform, or operate on its data.

Commands: ``run`` (default), ``status [--json]``, ``import FILE --tenant T --kind K`` (shared.imports.cli), ``issue-key``, ``revoke-key``, ``poison list|replay [--tenant T]``,
``reconcile``, ``ledger verify|digest|migrate-chain|fill-lines [--tenant T] [--customer C]``
(the ledger's hash chains, shared/app/ledger_chain.py; ``fill-lines``: shared/store/lines.py),
``jobs list|run|retry`` (the fan-out jobs' work items, ``shared.workitems``),
``export run|backfill|decrypt``, ``erasures list|replay --since ISO
[--tenant T]`` (after a database restore: erase again everyone erased since the
backup point, from the erasure log in Blob Storage; ``shared.privacy.erasure``).

Keys go through ``shared.governance.keys`` like the API's: each issue and revoke is one
audit record (actor ``cli:<user>``, role ``operator``). Platform acts need two operators
with security keys (``shared.governance.dual_control``) while dual control is on: for a
platform-admin key (``issue-key --role platform-admin``, ``revoke-key --tenant
_platform``) and a tenant-admin key issued or revoked by the platform, the CLI mints
and revokes nothing and exits 3, after filing the request (``platform-admin.grant``,
``platform-admin.revoke``, ``tenant-admin.issue``, ``tenant-key.revoke``) in the name of
the operator whose own platform-admin key is in ``ACCRUE_OPERATOR_KEY`` (none: nothing
is filed); the requester and a second operator approve it with their security keys on
the operator page (``/operator``), and the result is in the second approval's answer.
``bootstrap-operator --name N`` creates the first operator of an empty region and its
platform-admin key: the one single-operator act (docs/fido2.md). ``make run`` installs this as the
``accrue`` command (``.venv/bin/accrue``). With the Azure settings in the
environment it operates on the Azure stack (e.g. replaying its poison store).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys

from shared.app.auth import Role
from shared.app.reconcile import reconcile
from shared.app.replay import replay_poison
from shared.audit.log import PLATFORM_CHAIN, Actor
from shared.bus.local_queue import LocalQueue
from shared.clock import parse_iso
from shared.errors import Conflict, Forbidden, NotFound, Unauthenticated
from shared.governance.bootstrap import bootstrap_operator
from shared.governance.dual_control import (
    PLATFORM_ADMIN_GRANT,
    PLATFORM_ADMIN_REVOKE,
    TENANT_ADMIN_ISSUE,
    TENANT_KEY_REVOKE,
    DualControlRequired,
)
from shared.governance.operators import AlreadyBootstrapped, OperatorRequired
from shared.platform import Platform, build_platform
from shared.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.local", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("run", help="start the local platform (default)")
    run.add_argument("--host", default=os.environ.get("ACCRUE_HOST", "127.0.0.1"))
    run.add_argument("--port", type=int, default=int(os.environ.get("ACCRUE_PORT", "7071")))
    key = commands.add_parser("issue-key", help="issue a new API key (printed once; audited)")
    key.add_argument("--tenant", help="the key's tenant (required except for platform-admin, whose keys "
                                      "belong to _platform)")
    key.add_argument("--role", required=True, choices=[r.value for r in Role])
    key.add_argument("--label", default=None, help="who or what the key is for (platform-admin: the operator; "
                                                   "default: your user name)")
    key.add_argument("--reason", default=None, help="why (kept in the audit record)")
    boot = commands.add_parser("bootstrap-operator", help="create the first operator of an empty region and its "
                                                          "platform-admin key (once per region; audited as such)")
    boot.add_argument("--name", required=True, help="the operator's display name")
    key.add_argument("--operator", default=None, help="platform-admin: the operator the key is for (op-...; "
                                                      "default: the requester's own)")
    unkey = commands.add_parser("revoke-key", help="revoke an API key (audited)")
    unkey.add_argument("--tenant", required=True, help="the key's tenant (_platform for a platform-admin key)")
    unkey.add_argument("--key-id", required=True)
    unkey.add_argument("--reason", default=None, help="why (kept in the audit record)")
    poison = commands.add_parser("poison", help="inspect or replay poisoned messages")
    poison.add_argument("action", choices=["list", "replay"])
    poison.add_argument("--tenant", help="only this tenant's entries of the poison store")
    recon = commands.add_parser("reconcile", help="recompute every balance from the ledger and report drift "
                                                  "(exit status 1 if any)")
    recon.add_argument("--tenant", default=None, help="only this tenant (default: every tenant)")
    recon.add_argument("--json", action="store_true", help="print the full report as JSON")
    jobs = commands.add_parser("jobs", help="work items of the fan-out jobs: list them (parked ones need you), "
                                            "run the due ones now, or retry a parked one")
    jobs.add_argument("action", choices=["list", "run", "retry"])
    jobs.add_argument("id", nargs="?", help="retry: the work item's id (work:<kind>:<tenant>@<day>)")
    jobs.add_argument("--status", default=None, choices=["queued", "running", "done", "parked"])
    export = commands.add_parser("export", help="warehouse exports: run, backfill, decrypt (python -m shared.exports)")
    export.add_argument("rest", nargs=argparse.REMAINDER)
    erasures = commands.add_parser("erasures", help="the erasure log: list it, or replay it after a restore")
    erasures.add_argument("action", choices=["list", "replay"])
    erasures.add_argument("--since", required=True, help="ISO instant: the backup point of the restore")
    erasures.add_argument("--tenant", default=None, help="only this tenant (default: every tenant)")
    chain = commands.add_parser("ledger", help="the ledger's hash chains: verify a customer or a tenant (exit 1 if "
                                               "broken), write the daily digest, migrate unhashed entries; "
                                               "fill-lines: give entries written before stop 39 the line the "
                                               "export reads (shared/store/lines.py)")
    chain.add_argument("action", choices=["verify", "digest", "migrate-chain", "fill-lines"])
    chain.add_argument("--tenant", default=None, help="the tenant (default: every tenant)")
    chain.add_argument("--customer", default=None, help="verify: only this customer (needs --tenant)")
    load = commands.add_parser("import", help="import a file of rows (customers, orders, opening-balances, awards) "
                                              "with a progress bar; resumable, each row idempotent")
    load.add_argument("file", help="an NDJSON (.ndjson, .jsonl) or CSV (.csv) file")
    load.add_argument("--tenant", required=True)
    load.add_argument("--kind", required=True, help="the row kind: customers, orders, opening-balances, awards")
    load.add_argument("--format", choices=["ndjson", "csv"], default=None, help="default: from the file's extension")
    load.add_argument("--mode", choices=["continue", "all-or-nothing"], default="continue")
    load.add_argument("--evaluate", action="store_true", help="orders: earn by the rules active at each order's time")
    load.add_argument("--rule-set", default=None, help="with --evaluate: this rule set (and --version) instead")
    load.add_argument("--version", type=int, default=None)
    load.add_argument("--errors", default=None, help="write the error report (CSV: line, field, reason) here")
    load.add_argument("--resume", default=None, metavar="IMPORT_ID", help="follow an import already started")
    status = commands.add_parser("status", help="bus backlog, ingest and projection lag, poison count, last run of "
                                                 "every timer job, failing webhook endpoints")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    # Started by 'run' for each of its worker processes (shared/local/worker_process.py); not for people.
    workers = commands.add_parser("workers")
    workers.add_argument("--role", required=True, choices=["ingest", "project"])
    workers.add_argument("--number", type=int, default=1)
    args = parser.parse_args(argv)

    if args.command in (None, "run"):
        from shared.local.runner import run as run_platform

        run_platform(getattr(args, "host", "127.0.0.1"), getattr(args, "port", 7071))
        return 0
    if args.command == "workers":
        from shared.local.worker_process import run_worker_process

        run_worker_process(args.role, args.number)
        return 0
    if args.command == "export":
        from shared.exports.__main__ import main as export_main

        return export_main(args.rest)
    platform = build_platform(Settings.from_env())
    try:
        if args.command == "issue-key":
            return _issue_key(platform, args)
        if args.command == "bootstrap-operator":
            return _bootstrap(platform, args)
        if args.command == "revoke-key":
            try:
                if _platform_act(platform, args.tenant, args.key_id):
                    action = PLATFORM_ADMIN_REVOKE if args.tenant == PLATFORM_CHAIN else TENANT_KEY_REVOKE
                    return _file(platform, action, None if args.tenant == PLATFORM_CHAIN else args.tenant,
                                 {"keyId": args.key_id}, args.reason or f"revoke key {args.key_id}")
                revoked = platform.key_admin.revoke(args.tenant, args.key_id, operator(), reason=args.reason)
            except (NotFound, Conflict) as exc:  # no such key; the last live platform-admin key
                print(exc.message, file=sys.stderr)
                return 2
            print(json.dumps(revoked))
        elif args.command == "poison":
            queue = platform.bus if isinstance(platform.bus, LocalQueue) else None
            if args.action == "list":
                listing = {"queue": [m.__dict__ for m in queue.poisoned()] if queue else [],
                           "store": platform.poison.list_all()}
                print(json.dumps(listing, indent=2, default=str))
            else:
                # Both places a failed item can rest: the local queue's own poison table
                # (messages that failed every delivery) and the poison store (schema
                # refusals, poisoned orders and projection batches; on Azure too).
                count = queue.replay_poison() if queue else 0
                print(f"replayed {count} message(s) from the queue's poison table")
                report = replay_poison(platform.poison, platform.event_bus, platform.projector,
                                       tenant_id=args.tenant)
                print(f"poison store: {len(report.republished)} republished, {len(report.reprojected)} "
                      f"reprojected, {len(report.skipped)} skipped, {len(report.failed)} failed")
                for item in report.skipped + report.failed:
                    print(f"  left in place: {item.poison_id} ({item.source}) {item.detail}")
                return 1 if report.failed else 0
        elif args.command == "erasures":
            try:
                since = parse_iso(args.since)
            except ValueError:
                print(f"--since {args.since!r} is not an ISO instant (e.g. 2026-11-01T00:00:00Z)", file=sys.stderr)
                return 2
            if args.action == "list":
                for record in platform.erasures.log_records(since, args.tenant):
                    print(json.dumps(record, sort_keys=True))
            else:
                report = platform.erasures.replay(since, args.tenant)
                print(json.dumps(report, indent=2))
        elif args.command == "jobs":
            return _jobs(platform, args)
        elif args.command == "import":
            from shared.imports.cli import run_import  # noqa: PLC0415

            return run_import(platform, args, operator())
        elif args.command == "status":
            from shared.telemetry.status import collect, summary

            current = collect(platform)
            print(json.dumps(current, indent=2) if args.json else summary(current))
        elif args.command == "ledger":
            return _ledger(platform, args)
        elif args.command == "reconcile":
            report = reconcile(platform.store, args.tenant)
            print(json.dumps(report.view(), indent=2) if args.json else report.summary())
            return 1 if report.drifts else 0
    finally:
        platform.close()
    return 0


def _ledger(platform: Platform, args: argparse.Namespace) -> int:
    from shared.app.ledger_chain import ledger_tenants  # noqa: PLC0415
    from shared.store.layout import LEDGER  # noqa: PLC0415

    if args.action == "fill-lines":
        if args.tenant or args.customer:
            print("fill-lines works on the whole file: --tenant and --customer do not apply", file=sys.stderr)
            return 2
        fill = getattr(platform.store, "fill_lines", None)  # the SQLite store's; Cosmos DB keeps no lines
        print(json.dumps({"linesFilled": fill(LEDGER) if fill else 0}))
        return 0
    tenants = [args.tenant] if args.tenant else ledger_tenants(platform.store)
    if args.customer:
        if not args.tenant:
            print("--customer needs --tenant", file=sys.stderr)
            return 2
        chain = platform.chains.verify_customer(args.tenant, args.customer)
        print(json.dumps(chain.view(), indent=2))
        return 0 if chain.ok else 1
    broken = 0
    for tenant_id in tenants:
        if args.action == "verify":
            report = platform.chains.verify_tenant(tenant_id)
            print(json.dumps(report.view(), indent=2))
            broken += not report.ok
        elif args.action == "digest":
            print(json.dumps(platform.chains.write_digest(tenant_id)))
        else:
            print(json.dumps({"tenantId": tenant_id, "genesisRecords": platform.chains.migrate_tenant(tenant_id)}))
    return 1 if broken else 0


def _jobs(platform: Platform, args: argparse.Namespace) -> int:
    from shared.jobs import work_items  # noqa: PLC0415

    items = work_items(platform)
    if args.action == "list":
        for item in items.list(status=args.status, limit=1000):
            print(json.dumps({k: item.get(k) for k in ("id", "status", "attempts", "slices", "dueAt", "lastError",
                                                      "result")}, sort_keys=True))
        return 0
    if args.action == "run":
        report = items.run()
        print(json.dumps({"claimed": report.claimed, "slices": report.slices, "finished": report.finished,
                          "resumable": report.resumable, "failed": report.failed, "parked": report.parked}, indent=2))
        return 1 if report.failed or report.parked else 0
    if not args.id:
        print("jobs retry needs the work item's id (see: jobs list --status parked)", file=sys.stderr)
        return 2
    try:
        item = items.retry(args.id)
    except NotFound as exc:
        print(exc.message, file=sys.stderr)
        return 2
    print(f"{item['id']}: {item['status']}")
    return 0


# A platform-admin's own key, when they ask the CLI for another operator's platform-admin key.
OPERATOR_KEY_VARIABLE = "ACCRUE_OPERATOR_KEY"


def operator() -> Actor:
    """The person at the keyboard, as the audit log names them (no API key on this path)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name in this environment (some containers)
        user = "unknown"
    return Actor(f"cli:{user}"[:100], "operator")


def _bootstrap(platform: Platform, args: argparse.Namespace) -> int:
    try:
        done = bootstrap_operator(platform, args.name, operator())
    except (AlreadyBootstrapped, DualControlRequired) as exc:
        print(f"refused: {exc.message}", file=sys.stderr)
        return 3
    print(done.key.secret_key)
    print(f"operator {done.operator_id} ({done.name}) created with this platform-admin key (shown once). Register "
          "the operator's security key on the operator page (/operator): the one key registered without a second "
          "operator. Every other platform act needs two operators (docs/fido2.md).", file=sys.stderr)
    return 0


def _platform_act(platform: Platform, tenant: str, key_id: str) -> bool:
    """Whether revoking ``key_id`` of ``tenant`` is a platform act under dual control: a
    platform-admin key, or a tenant-admin key (revoked by the platform)."""
    if not platform.approvals.enabled:
        return False
    return tenant == PLATFORM_CHAIN or platform.keys.get(tenant, key_id)["role"] == Role.TENANT_ADMIN.value


def _file(platform: Platform, action: str, tenant_id: str | None, params: dict, reason: str) -> int:
    """File ``action`` in the name of the operator whose own platform-admin key is in
    ``ACCRUE_OPERATOR_KEY`` (from the environment, never the command line); exit 3 either way:
    nothing is done until two operators approve with their security keys."""
    presented = os.environ.get(OPERATOR_KEY_VARIABLE, "").strip()
    try:
        requester = platform.keys.verify(presented) if presented else None
    except Unauthenticated:
        requester = None
    if requester is None or requester.role is not Role.PLATFORM_ADMIN:
        print(f"refused: {action} needs two operators. To file the request, set {OPERATOR_KEY_VARIABLE} to your own "
              "platform-admin key and run this again (or file it on the operator page)", file=sys.stderr)
        return 3
    try:
        request = platform.approvals.request(action, requester, tenant_id=tenant_id, params=params, reason=reason)
    except (OperatorRequired, NotFound, Forbidden) as exc:
        print(f"refused: {exc.message}", file=sys.stderr)
        return 3
    print(f"refused until approved: filed request {request['id']} ({action}, expires {request['expiresAt']}); you and "
          "a second operator approve it with your security keys on the operator page (/operator); the result is in "
          "the second approval's answer", file=sys.stderr)
    return 3


def _issue_key(platform: Platform, args: argparse.Namespace) -> int:
    who = operator()
    if args.role != Role.PLATFORM_ADMIN.value:
        if not args.tenant or not platform.tenants.exists(args.tenant):
            print(f"tenant {args.tenant!r} does not exist", file=sys.stderr)
            return 2
        if args.role == Role.TENANT_ADMIN.value and platform.approvals.enabled:
            return _file(platform, TENANT_ADMIN_ISSUE, args.tenant, {"label": args.label or ""},
                         args.reason or f"tenant-admin key for {args.tenant}")
        issued = platform.key_admin.issue(args.tenant, Role(args.role), who, label=args.label or "",
                                          reason=args.reason)
        print(issued.secret_key)
        return 0
    if args.tenant not in (None, PLATFORM_CHAIN):
        print(f"note: platform-admin keys belong to {PLATFORM_CHAIN}, not to tenant {args.tenant!r}",
              file=sys.stderr)
    label = args.label or who.key_id.removeprefix("cli:")
    if not platform.approvals.enabled:  # only on the embedded store (see shared.settings)
        issued = platform.key_admin.issue_platform_admin(who, label=label, reason=args.reason)
        print(issued.secret_key)
        return 0
    if not platform.operators.bootstrapped():
        print("refused: this region has no operator yet; its first one is created with "
              "`accrue bootstrap-operator --name NAME` (docs/fido2.md)", file=sys.stderr)
        return 3
    presented = os.environ.get(OPERATOR_KEY_VARIABLE, "").strip()
    operator_id = args.operator
    if operator_id is None and presented:
        try:
            operator_id = platform.operators.of_key(platform.keys.verify(presented).key_id)
        except (Unauthenticated, OperatorRequired):
            operator_id = None
    if operator_id is not None:
        try:
            platform.operators.active(operator_id)
        except (NotFound, Forbidden) as exc:
            print(f"refused: {exc.message}", file=sys.stderr)
            return 3
    return _file(platform, PLATFORM_ADMIN_GRANT, None, {"operatorId": operator_id or "", "label": label},
                 args.reason or f"platform-admin key {label!r}, asked on the command line by {who.key_id}")


if __name__ == "__main__":
    sys.exit(main())
