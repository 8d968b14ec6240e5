"""The three regional parameter files, and data residency.

The files may differ only in what makes a stack regional (location, names,
address space, replicas) and in sizing; every security switch is the same
everywhere. Every location a file names must lie in its stack's geography, and
the templates must not place anything anywhere but the stack's `location`.
"""

from __future__ import annotations

import re

import pytest

from tests.unit.bicep.bicep_tree import evaluate, load, path
from tests.unit.bicep.conftest import MAIN, MODULES, REGIONS, bicep_files

GEOGRAPHIES = {
    "eu": {"westeurope", "northeurope", "francecentral", "francesouth", "germanywestcentral", "germanynorth",
           "swedencentral", "swedensouth", "italynorth", "polandcentral", "spaincentral", "austriaeast",
           "belgiumcentral", "denmarkeast"},
    "us": {"eastus", "eastus2", "centralus", "northcentralus", "southcentralus", "westcentralus", "westus",
           "westus2", "westus3"},
    "apac": {"southeastasia", "eastasia", "australiaeast", "australiasoutheast", "australiacentral",
             "japaneast", "japanwest", "koreacentral", "koreasouth", "centralindia", "southindia",
             "westindia", "indonesiacentral", "malaysiawest", "newzealandnorth"},
}
ALL_REGIONS = set().union(*GEOGRAPHIES.values()) | {"uksouth", "ukwest", "switzerlandnorth", "norwayeast",
                                                     "canadacentral", "brazilsouth", "uaenorth",
                                                     "southafricanorth", "qatarcentral", "israelcentral"}

# What may differ between the files.
REGIONAL = {"location", "region", "namePrefix", "cosmosReplicaLocations", "vnetAddressPrefix"}
SIZING = {"cosmosMaxThroughput", "eventHubCapacity", "eventHubMaxCapacity", "functionMaximumInstanceCount",
          "functionAlwaysReadyHttp", "functionInstanceMemoryMB", "eventHubRetentionDays", "logRetentionDays"}


def location_values(values: dict) -> list[tuple[str, str]]:
    """Every (parameter, location) pair of a file: any parameter whose name mentions a location or region list."""
    pairs = []
    for name, value in values.items():
        if re.search(r"location", name, re.IGNORECASE):
            for item in value if isinstance(value, list) else [value]:
                pairs.append((name, item["locationName"] if isinstance(item, dict) else item))
    return pairs


def test_the_files_declare_the_same_parameters(parameters) -> None:
    names = {region: set(values) for region, values in parameters.items()}
    assert names["us"] == names["eu"] == names["apac"], names


def test_the_files_differ_only_in_location_names_and_sizing(parameters) -> None:
    for name in parameters["us"]:
        values = {region: parameters[region][name] for region in REGIONS}
        if len({repr(v) for v in values.values()}) > 1:
            assert name in REGIONAL | SIZING, f"{name} differs between regions ({values}): security switches " \
                                              "and behaviour must be the same in every stack"


def test_regional_values_are_distinct_per_stack(parameters) -> None:
    for name in ("location", "region", "namePrefix", "vnetAddressPrefix"):
        seen = [parameters[region][name] for region in REGIONS]
        assert len(set(seen)) == len(REGIONS), f"{name} repeats across regions: {seen}"
    for region in REGIONS:
        assert parameters[region]["region"] == region
        assert region in parameters[region]["namePrefix"]


@pytest.mark.parametrize("region", REGIONS)
def test_every_location_lies_in_the_stacks_geography(region: str, parameters) -> None:
    pairs = location_values(parameters[region])
    assert {name for name, _ in pairs} >= {"location", "cosmosReplicaLocations"}
    outside = [(name, loc) for name, loc in pairs if loc not in GEOGRAPHIES[region]]
    assert not outside, f"{region} stack names locations outside its geography: {outside}"
    assert parameters[region]["location"] not in parameters[region]["cosmosReplicaLocations"]


def test_the_eu_file_pins_eu_regions_only(parameters) -> None:
    eu = parameters["eu"]
    for name, loc in location_values(eu):
        assert loc in GEOGRAPHIES["eu"], f"EU data would leave the EU: {name}={loc}"


def test_the_geography_check_catches_a_replica_outside_the_eu(parameters) -> None:
    leaked = {**parameters["eu"], "cosmosReplicaLocations": ["northeurope", "eastus"]}
    assert ("cosmosReplicaLocations", "eastus") in [p for p in location_values(leaked)
                                                    if p[1] not in GEOGRAPHIES["eu"]]


def test_main_takes_every_location_from_parameters(main) -> None:
    location_params = {name for name in main.params if re.search("location", name, re.IGNORECASE)}
    assert location_params == {"location", "cosmosReplicaLocations"}, \
        "a new location parameter needs a geography check in this file"


def test_every_module_is_deployed_to_the_stacks_location(main) -> None:
    for symbol, call in main.modules.items():
        target = load((MAIN.parent / call.target).resolve())
        if "location" in target.params:
            assert path(call.body, "params", "location").text == b"location", f"{symbol} not in `location`"


@pytest.mark.parametrize("module_path", sorted(MODULES.glob("*.bicep")), ids=lambda p: p.name)
def test_every_resource_is_created_in_the_location_parameter(module_path) -> None:
    template = load(module_path)
    for resource in template.resources.values():
        if resource.existing:
            continue
        node = path(resource.body, "location")
        if node is not None:
            value = node.text.decode()
            assert value in ("location", "'global'"), f"{module_path.name}:{resource.line}: location {value}"
    replicas = template.params.get("replicaLocations", ...)
    if replicas is not ...:
        assert replicas is None, "replica locations must come from the parameter files, no default"


def test_no_template_hard_codes_a_region() -> None:
    for path_ in bicep_files():
        words = set(re.findall(r"'([a-z0-9]+)'", path_.read_text()))
        assert not words & ALL_REGIONS, f"{path_.name} names a region: {words & ALL_REGIONS}"


def test_cosmos_replicas_come_from_the_replica_parameter(main) -> None:
    passed = path(main.modules["cosmos"].body, "params", "replicaLocations")
    assert passed.text == b"cosmosReplicaLocations"
    cosmos = load(MODULES / "cosmos.bicep")
    assert evaluate(cosmos.variables["regions"], cosmos).text == "concat([location], replicaLocations)"
