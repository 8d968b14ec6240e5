"""Every template parses, every module call fits its module, every parameter file fits main.bicep.

Without the Bicep CLI these are the compiler's checks we can make from the syntax
tree: no syntax error, module paths that exist, module parameters that are
declared and complete, and parameter-file values of the declared type and range.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.bicep.bicep_tree import Expr, evaluate, load, properties, syntax_problems
from tests.unit.bicep.conftest import BICEP, MAIN, MODULES, REGIONS, bicep_files, parameter_file


def test_the_bicep_folder_has_main_modules_and_a_parameter_file_per_region() -> None:
    assert MAIN.is_file()
    assert len(list(MODULES.glob("*.bicep"))) >= 5, "one module per concern"
    for region in REGIONS:
        assert parameter_file(region).is_file(), f"missing {parameter_file(region)}"


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(BICEP)))
def test_template_parses_without_syntax_errors(path: Path) -> None:
    problems = syntax_problems(path)
    assert not problems, "syntax errors:\n" + "\n".join(str(p) for p in problems)


def test_the_syntax_check_reports_errors_with_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.bicep"
    broken.write_text("param ok string\n\nresource sa 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n"
                      "  name: 'x'\n  properties: {\n    allowSharedKeyAccess: = false\n  }\n}\n")
    problems = syntax_problems(broken)
    assert problems
    assert any(p.line == 6 for p in problems), [str(p) for p in problems]
    assert str(problems[0]).startswith(f"{broken}:")


def test_every_module_is_used_and_every_module_path_exists() -> None:
    used: set[Path] = set()
    for path in bicep_files():
        for declaration in load(path).modules.values():
            target = (path.parent / declaration.target).resolve()
            assert target.is_file(), f"{path}:{declaration.line}: module {declaration.target} does not exist"
            used.add(target)
    unused = {p.resolve() for p in MODULES.glob("*.bicep")} - used
    assert not unused, f"modules nobody deploys: {sorted(p.name for p in unused)}"


def _module_calls():
    for path in bicep_files():
        for declaration in load(path).modules.values():
            yield pytest.param(path, declaration, id=f"{path.name}:{declaration.symbol}")


@pytest.mark.parametrize(("path", "call"), list(_module_calls()))
def test_module_call_passes_declared_and_required_parameters(path: Path, call) -> None:
    module = load((path.parent / call.target).resolve())
    passed = set(properties(properties(call.body).get("params")))
    undeclared = passed - set(module.params)
    assert not undeclared, f"{path}:{call.line}: {call.symbol} passes undeclared {sorted(undeclared)}"
    required = {name for name, default in module.params.items() if default is None}
    missing = required - passed
    assert not missing, f"{path}:{call.line}: {call.symbol} misses required {sorted(missing)}"


@pytest.mark.parametrize("region", REGIONS)
def test_parameter_file_has_the_deployment_parameters_shape(region: str) -> None:
    document = json.loads(parameter_file(region).read_text())
    assert "deploymentParameters.json" in document["$schema"]
    assert document["contentVersion"] == "1.0.0.0"
    assert isinstance(document["parameters"], dict) and document["parameters"]
    for name, entry in document["parameters"].items():
        assert set(entry) == {"value"}, f"{region}: parameter {name} must be {{'value': ...}}, got {sorted(entry)}"


_TYPES = {"string": str, "int": int, "bool": bool, "array": list, "object": dict}


@pytest.mark.parametrize("region", REGIONS)
def test_parameter_file_values_fit_main_bicep(region: str, main, parameters) -> None:
    values = parameters[region]
    undeclared = set(values) - set(main.params)
    assert not undeclared, f"{region}: parameters main.bicep does not declare: {sorted(undeclared)}"
    required = {name for name, default in main.params.items() if default is None}
    assert required <= set(values), f"{region}: required parameters missing: {sorted(required - set(values))}"
    for name, value in values.items():
        expected = _TYPES[main.param_types[name]]
        assert isinstance(value, expected) and not (expected is int and isinstance(value, bool)), \
            f"{region}: {name}={value!r} is not a {main.param_types[name]}"
        decorators = main.param_decorators[name]
        if "allowed" in decorators:
            assert value in decorators["allowed"][0], f"{region}: {name}={value!r} not in {decorators['allowed'][0]}"
        if "minValue" in decorators:
            assert value >= decorators["minValue"][0], f"{region}: {name}={value} below minimum"
        if "maxValue" in decorators:
            assert value <= decorators["maxValue"][0], f"{region}: {name}={value} above maximum"
        if "maxLength" in decorators:
            assert len(value) <= decorators["maxLength"][0], f"{region}: {name} too long"
        if "minLength" in decorators:
            assert len(value) >= decorators["minLength"][0], f"{region}: {name} too short"


def test_main_parameter_defaults_fit_their_own_constraints(main) -> None:
    for name, default in main.params.items():
        value = evaluate(default, main)
        if default is None or isinstance(value, Expr):
            continue
        decorators = main.param_decorators[name]
        if "allowed" in decorators:
            assert value in decorators["allowed"][0], f"default of {name} not allowed"
        if "minValue" in decorators:
            assert value >= decorators["minValue"][0], f"default of {name} below minimum"
        if "maxValue" in decorators:
            assert value <= decorators["maxValue"][0], f"default of {name} above maximum"
