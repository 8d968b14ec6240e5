"""The bootstrap of a region's first operator: the one platform act a single person does.

``bootstrap_operator`` (the ``accrue bootstrap-operator`` command; the local runner's
first start) works once per region (the ``operators/bootstrap`` marker is created
once): it creates the operator and a platform-admin key bound to it, and audits both
as single-operator acts. The operator then registers its first security key on the
operator page, alone, once (``Operators.register_bootstrap_key``). From then on every
platform act, the second operator's registration included, needs two operators."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.app.auth import IssuedKey
from shared.audit.log import Actor, HasActor

if TYPE_CHECKING:
    from shared.platform import Platform


@dataclass(frozen=True)
class Bootstrapped:
    operator_id: str
    name: str
    key: IssuedKey


def bootstrap_operator(platform: "Platform", name: str, who: HasActor | Actor | None) -> Bootstrapped:
    """The region's first operator and its platform-admin key (``AlreadyBootstrapped`` after)."""
    operator = platform.operators.bootstrap(name, who)
    key = platform.key_admin.issue_platform_admin(who, label=operator["name"], operator_id=operator["id"],
                                                  reason="the bootstrap operator's key")
    return Bootstrapped(operator["id"], operator["name"], key)
