"""Fixtures of the Bicep template tests: the templates and the regional parameter files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.bicep.bicep_tree import Template, load

BICEP = Path(__file__).resolve().parents[3] / "bicep"
MAIN = BICEP / "main.bicep"
MODULES = BICEP / "modules"
PARAMS = BICEP / "params"
REGIONS = ("us", "eu", "apac")


def bicep_files() -> list[Path]:
    return sorted(BICEP.rglob("*.bicep"))


def parameter_file(region: str) -> Path:
    return PARAMS / f"{region}.parameters.json"


@pytest.fixture(scope="session")
def main() -> Template:
    return load(MAIN)


def module(name: str) -> Template:
    return load(MODULES / f"{name}.bicep")


@pytest.fixture(scope="session")
def parameters() -> dict[str, dict]:
    """Region -> {parameter name: value} of each parameter file."""
    return {region: {name: entry["value"] for name, entry in json.loads(parameter_file(region).read_text())
                     ["parameters"].items()} for region in REGIONS}
