"""Dry runs (issue 13, part 6): ``?dryRun=true`` on every write that moves or spends
points answers with the outcome the real call would produce and writes nothing
anywhere. See ``shared.dryrun.platform`` for how, and docs/api-policies.md."""

from shared.dryrun.platform import dry_platform

__all__ = ["dry_platform"]
