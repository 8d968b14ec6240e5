"""Response models of the rules routes (shared/api/routes/rules.py).

The rule lifecycle already answers with its own pydantic models
(``shared.rules.models``), serialised by alias: those are the response models;
only the list and "active" envelopes are new here."""

from __future__ import annotations

from pydantic import BaseModel, Field

from shared.api.contract import next_link

from shared.rules import models


class VersionList(BaseModel):
    """The versions of a rule set, newest first (without their sources)."""

    items: list[models.VersionInfo]
    next: str | None = next_link()


class ActivationList(BaseModel):
    """The activation log, newest first."""

    items: list[models.Activation]
    next: str | None = next_link()


class ActiveState(BaseModel):
    """What ingestion applies now; ``active`` is null until a version is activated."""

    active: models.ActiveRuleSet | None = Field(description="the active version and any running experiment")
