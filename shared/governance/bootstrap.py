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
from shared.governance.operators import AlreadyBootstrapped

if TYPE_CHECKING:
    from shared.platform import Platform


@dataclass(frozen=True)
class Bootstrapped:
    operator_id: str
    name: str
    key: IssuedKey


def bootstrap_operator(platform: "Platform", name: str, who: HasActor | Actor | None) -> Bootstrapped:
    """The region's first operator and its platform-admin key (``AlreadyBootstrapped`` after).

    The operator and its key are two writes in two partitions: a bootstrap cut off between them
    is finished by running it again (the bootstrap operator gets its key, only while it has
    never held one); otherwise the region would have an operator nobody can act as."""
    try:
        operator = platform.operators.bootstrap(name, who)
    except AlreadyBootstrapped:
        operator_id = platform.operators.bootstrap_operator_id()
        if operator_id is None or platform.key_admin.operator_holds_key(operator_id):
            raise
        operator = platform.operators.get(operator_id)
    key = platform.key_admin.issue_platform_admin(who, label=operator["name"], operator_id=operator["id"],
                                                  reason="the bootstrap operator's key")
    return Bootstrapped(operator["id"], operator["name"], key)
