"""API keys: creation, verification with a bounded cache, revocation, roles.

A key reads ``acr_<keyId>_<secret>``: ``keyId`` (public, 12 base32 chars) finds
the stored record, ``secret`` (32 random bytes, 256 bits) is checked against an
Argon2id hash (OWASP minimum: m=19456 KiB, t=2, p=1). The secret is shown once,
at creation, and never stored.

Verification costs one Argon2 hash only on a cache miss: a successful check is
remembered in memory (bounded LRU, short TTL) as a SHA-256 of the presented key,
so a request with the same key skips Argon2. Revocation drops the key from this
process's cache at once; other processes (other Function instances) stop
accepting it when their entry expires, at most ``CACHE_SECONDS`` later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from shared.clock import Clock, iso
from shared.errors import Conflict, Forbidden, NotFound, PreconditionFailed, Unauthenticated
from shared.store.contention import attempts
from shared.store.layout import API_KEYS
from shared.store.pages import read_all
from shared.store.port import DocumentStore, Filter, Query

CACHE_SECONDS = 30.0
CACHE_SIZE = 10_000
MAX_CONCURRENT_HASHES = 2
KEY_PREFIX = "acr"

# OWASP's minimum Argon2id parameters; argon2-cffi's default (64 MiB) would starve
# a Functions worker under concurrent logins.
HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, salt_len=16)


class Role(str, Enum):
    MERCHANT = "merchant"
    ANALYST = "analyst"
    TENANT_ADMIN = "tenant-admin"
    PLATFORM_ADMIN = "platform-admin"
    AGENT = "agent"


# What each role may do, by capability. Endpoints declare the capability they need.
# Least privilege:
# * merchant: ingest orders, read customers and balances, see and look up personal data
#   of its customers ("personal-data": it collected it);
# * analyst: read-only reports; never sees personal fields;
# * tenant-admin: everything of its tenant, plus rules, webhooks, adjustments, keys,
#   erasure, access exports and the audit log ("admin");
# * platform-admin: tenants and dual-controlled platform acts only, no tenant data.
# * agent: the MCP tool server only (/mcp, issue 21); what it may do there is decided by
#   the guardrail policy bound to the key (shared/agents), never by the REST routes.
CAPABILITIES: dict[Role, frozenset[str]] = {
    Role.MERCHANT: frozenset({"read", "ingest", "personal-data"}),
    Role.ANALYST: frozenset({"read", "report"}),
    Role.TENANT_ADMIN: frozenset({"read", "ingest", "report", "admin", "personal-data"}),
    Role.PLATFORM_ADMIN: frozenset({"platform"}),
    Role.AGENT: frozenset({"agent"}),
}


@dataclass(frozen=True)
class Principal:
    key_id: str
    tenant_id: str
    role: Role

    def can(self, capability: str) -> bool:
        return capability in CAPABILITIES[self.role]

    def require(self, capability: str) -> None:
        if capability not in CAPABILITIES[self.role]:
            raise Forbidden(f"a {self.role.value} key may not do this (needs {capability!r})")


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    secret_key: str
    tenant_id: str
    role: Role


def new_key_id() -> str:
    return base64.b32encode(secrets.token_bytes(10)).decode().rstrip("=").lower()[:12]


KEY_ID_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyz234567")


def parse_key(presented: str) -> tuple[str, str]:
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != 12 or not (40 <= len(parts[2]) <= 64):
        raise Unauthenticated("the API key is malformed: expected acr_<keyId>_<secret>")
    return parts[1], parts[2]


class ApiKeys:
    def __init__(self, store: DocumentStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, bytes, Principal]] = OrderedDict()
        # Digests of keys that just failed: the same wrong key presented again is
        # refused without another Argon2 hash (bounded, short-lived like the cache).
        self._refused: OrderedDict[bytes, float] = OrderedDict()
        self._hashing = threading.BoundedSemaphore(MAX_CONCURRENT_HASHES)
        self._lock = threading.Lock()

    def issue(self, tenant_id: str, role: Role, created_by: str | None, label: str = "",
              key_id: str | None = None, secret: str | None = None, operator_id: str | None = None) -> IssuedKey:
        """Store a new key. This is the credential store only: the product issues keys
        through ``shared.governance.keys.KeyAdministration`` (audit, dual control), which
        chooses ``key_id`` first so the audit record can precede the key. ``secret``: one
        chosen (and kept sealed) by tenant provisioning, so a retry answers with the same key."""
        key_id = key_id or new_key_id()
        assert len(key_id) == 12 and set(key_id) <= KEY_ID_ALPHABET, f"malformed key id {key_id!r}"
        secret = secret or base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        assert 40 <= len(secret) <= 64, "a secret as parse_key accepts it"
        self._store.create(API_KEYS, {
            "id": key_id, "pk": key_id, "docType": "apiKey", "keyId": key_id,
            "tenantId": tenant_id, "role": role.value, "label": label[:100],
            "hash": HASHER.hash(secret), "createdAt": iso(self._clock.now()),
            "createdBy": created_by, "revokedAt": None,
            # A platform-admin key is bound to the operator it is for (shared.governance.operators).
            **({"operatorId": operator_id} if operator_id else {}),
        })
        return IssuedKey(key_id, f"{KEY_PREFIX}_{key_id}_{secret}", tenant_id, role)

    def cached(self, presented: str) -> Principal | None:
        """The answer of the in-memory caches alone, without I/O or hashing: the
        principal of a recently verified key, ``Unauthenticated`` for a malformed
        or recently refused one, or None when only ``verify`` can tell."""
        key_id, _ = parse_key(presented)
        return self._from_cache(key_id, hashlib.sha256(presented.encode()).digest(), time.monotonic())

    def _from_cache(self, key_id: str, digest: bytes, now: float) -> Principal | None:
        with self._lock:
            hit = self._cache.get(key_id)
            if hit is not None and now - hit[0] < CACHE_SECONDS and hmac.compare_digest(hit[1], digest):
                self._cache.move_to_end(key_id)
                return hit[2]
            refused_at = self._refused.get(digest)
            if refused_at is not None and now - refused_at < CACHE_SECONDS:
                raise Unauthenticated("the API key is unknown or revoked")
        return None

    def verify(self, presented: str) -> Principal:
        key_id, secret = parse_key(presented)
        digest = hashlib.sha256(presented.encode()).digest()
        now = time.monotonic()
        known = self._from_cache(key_id, digest, now)
        if known is not None:
            return known
        doc = self._store.read(API_KEYS, key_id, key_id)
        if doc is None or doc.get("revokedAt"):
            raise Unauthenticated("the API key is unknown or revoked")
        try:
            # Bounded: a flood of wrong keys for a known key id costs at most
            # MAX_CONCURRENT_HASHES Argon2 runs at a time, not one per request thread.
            with self._hashing:
                HASHER.verify(doc["hash"], secret)
        except (VerificationError, InvalidHashError):
            with self._lock:
                self._refused[digest] = now
                self._refused.move_to_end(digest)
                while len(self._refused) > CACHE_SIZE:
                    self._refused.popitem(last=False)
            raise Unauthenticated("the API key is unknown or revoked") from None
        principal = Principal(key_id, doc["tenantId"], Role(doc["role"]))
        with self._lock:
            self._cache[key_id] = (now, digest, principal)
            self._cache.move_to_end(key_id)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return principal

    def revoke(self, tenant_id: str, key_id: str, revoked_by: str) -> dict[str, Any]:
        return self.revoke_if_live(tenant_id, key_id, revoked_by)[0]

    def revoke_if_live(self, tenant_id: str, key_id: str, revoked_by: str) -> tuple[dict[str, Any], bool]:
        """Revoke; returns (the key's public view, whether this call revoked it). Of two
        callers racing on one live key exactly one gets True (ETag-guarded write), so
        the act is recorded once."""
        for _ in attempts():
            doc = self.get(tenant_id, key_id)
            with self._lock:
                self._cache.pop(key_id, None)
            if doc.get("revokedAt"):
                return public_view(doc), False
            try:
                saved = self._store.upsert(API_KEYS, dict(doc, revokedAt=iso(self._clock.now()),
                                                          revokedBy=revoked_by), if_match=doc["_etag"])
            except PreconditionFailed:
                continue  # changed meanwhile (revoked by someone else?): read it again
            with self._lock:
                self._cache.pop(key_id, None)
            return public_view(saved), True
        raise Conflict(f"API key {key_id!r} kept changing while it was being revoked; try again")

    def get(self, tenant_id: str, key_id: str) -> dict[str, Any]:
        """The stored key of ``tenant_id`` (with its hash: not for answers), or ``NotFound``."""
        doc = self._store.read(API_KEYS, key_id, key_id)
        if doc is None or doc["tenantId"] != tenant_id:
            raise NotFound(f"API key {key_id!r} does not exist")
        return doc

    def any_of_tenant(self, tenant_id: str) -> bool:
        """Whether any key (revoked or not) was ever issued for ``tenant_id``."""
        return bool(self._store.query(API_KEYS, Query(pk=None, filters=(Filter("tenantId", "=", tenant_id),),
                                                      limit=1)))

    def list(self, tenant_id: str) -> list[dict[str, Any]]:
        """Every key of the tenant, oldest first (read in keyset pages: no cap, so an admin
        can list, and a suspension revoke, every key however many there are)."""
        docs = read_all(self._store, API_KEYS, None, (Filter("tenantId", "=", tenant_id),))
        return sorted((public_view(d) for d in docs), key=lambda v: (v["createdAt"] or "", v["keyId"]))


def public_view(doc: dict[str, Any]) -> dict[str, Any]:
    view = {k: doc.get(k) for k in ("keyId", "tenantId", "role", "label", "createdAt", "createdBy", "revokedAt")}
    if doc.get("operatorId"):
        view["operatorId"] = doc["operatorId"]
    return view
