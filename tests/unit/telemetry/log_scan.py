"""A reader of log calls in Python source, for the structured-logging test.

A log call is ``<logger>.<level>(...)`` where ``<logger>`` is a name bound to
``logging.getLogger(...)`` in that module (or a parameter named ``log`` /
``logger``), or ``logging.<level>(...)`` itself. Each must pass
``extra=fields(...)`` (``shared.telemetry.logs.fields``) with names from the
closed list; ``problems`` says where one does not.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

LEVELS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "fatal", "log"}
CONVENTIONAL = {"log", "logger", "_log", "_logger", "LOG", "LOGGER"}


@dataclass(frozen=True)
class LogCall:
    path: str
    line: int
    text: str


def _logger_names(tree: ast.AST) -> set[str]:
    names = set(CONVENTIONAL)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, (ast.Call, ast.BoolOp)):
            source = ast.unparse(node.value)
            if "getLogger(" in source:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def log_calls(source: str, path: str = "<source>") -> list[tuple[LogCall, ast.Call]]:
    tree = ast.parse(source)
    loggers = _logger_names(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in LEVELS):
            continue
        owner = node.func.value
        is_logger = (isinstance(owner, ast.Name) and (owner.id in loggers or owner.id == "logging")) or (
            isinstance(owner, ast.Call) and "getLogger" in ast.unparse(owner.func))
        if is_logger:
            found.append((LogCall(path, node.lineno, ast.unparse(node)[:120]), node))
    return found


def problems(source: str, allowed: frozenset[str], path: str = "<source>",
             allow_unpacking: bool = False) -> list[str]:
    """Every log call of ``source`` without ``extra=fields(...)`` or with a field off ``allowed``."""
    found = []
    for call, node in log_calls(source, path):
        extra = next((k.value for k in node.keywords if k.arg == "extra"), None)
        if not (isinstance(extra, ast.Call) and (
                (isinstance(extra.func, ast.Name) and extra.func.id == "fields")
                or (isinstance(extra.func, ast.Attribute) and extra.func.attr == "fields"))):
            found.append(f"{call.path}:{call.line}: no extra=fields(...): {call.text}")
            continue
        if extra.args:
            found.append(f"{call.path}:{call.line}: fields(...) takes names only: {call.text}")
        for keyword in extra.keywords:
            if keyword.arg is None and not allow_unpacking:
                found.append(f"{call.path}:{call.line}: fields(**...) hides its names from this check")
            elif keyword.arg is not None and keyword.arg not in allowed:
                found.append(f"{call.path}:{call.line}: field {keyword.arg!r} is not in ALLOWED_FIELDS")
    return found


def scan(root: Path, folders: tuple[str, ...], allowed: frozenset[str]) -> tuple[int, list[str]]:
    """How many log calls the folders hold, and the problems among them."""
    total, found = 0, []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            source = path.read_text()
            relative = str(path.relative_to(root))
            total += len(log_calls(source, relative))
            found += problems(source, allowed, relative, allow_unpacking=relative == "shared/telemetry/logs.py")
    return total, found
