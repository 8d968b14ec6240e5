"""Parsing: rule source text -> typed syntax tree (``shared.rules.ast``).

Pipeline: ``source.screen`` (size, characters) -> lark LALR(1) parse of
``grammar/rules.lark`` -> an iterative depth check -> the tree builder, which
also bounds literals, names, list sizes and the rule count.

Guarantees: every malformed input raises a ``RuleError`` subclass with rule,
line, column, the line and a caret; none raises ``RecursionError`` (lark's LALR
parser is iterative, depth is checked iteratively before the recursive builder
runs, and the depth limit is far below Python's recursion limit).
"""

from __future__ import annotations

import difflib
import threading
from datetime import date
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from shared.domain.tags import MAX_TAG_LENGTH, is_tag
from shared.domain.wallets import WALLET_NAME
from shared.pending.window import MAX_PENDING_DAYS
from shared.rules import ast
from shared.rules.errors import Diagnostic, RuleSourceRejected, RuleSyntaxError
from shared.rules.limits import (
    MAX_DEPTH, MAX_DIAGNOSTICS, MAX_EXPIRY_DAYS, MAX_LIST_ITEMS, MAX_NAME_CHARS, MAX_NUMBER_CHARS,
    MAX_PRIORITY, MAX_RULE_NAME_CHARS, MAX_RULES, MAX_STRING_CHARS,
)
from shared.rules.numeric import MAX_UNITS, SCALE, SCALE_DIGITS
from shared.rules.schema import KEYWORDS
from shared.rules.source import rule_at, screen

GRAMMAR_PATH = Path(__file__).resolve().parents[2] / "grammar" / "rules.lark"
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# The last date an ``expiring on`` may name (days since 1970-01-01), as instants elsewhere end before 9000.
LAST_EXPIRY_DAY = date(8999, 12, 31).toordinal() - EPOCH_ORDINAL
# Trees that wrap the expressions: they do not count towards the nesting limit.
_OUTER_DEPTH = 4

_FRIENDLY = {
    "NAME": "a name", "NUMBER": "a number", "STRING": 'a string in double quotes',
    "DATE": "a date (YYYY-MM-DD)", "COMP_OP": "a comparison (=, !=, <, <=, >, >=)", "$END": "end of text",
    "HAS": "has", "HAVE": "have", "ANY": "any", "ALL": "all",
}
_FOREIGN = {"import", "def", "lambda", "while", "class", "exec", "eval", "return", "function", "let", "var"}


_LARK_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _build_lark() -> Lark:
    return Lark(GRAMMAR_PATH.read_text(encoding="utf-8"), parser="lalr", propagate_positions=True,
                maybe_placeholders=False)


def _lark() -> Lark:
    # Built once, by one thread: lru_cache alone lets racing first callers (concurrent rule
    # saves) each build the grammar, and lark's grammar loader calls ast.literal_eval, which
    # CPython 3.11 can fail with "SystemError: AST constructor recursion depth mismatch" when
    # threads run it at once (a 500 seen in tests/unit/api/test_concurrent_writes.py).
    with _LARK_LOCK:
        return _build_lark()


def parse(source: object) -> ast.RuleSet:
    """Parse rule source into a ``RuleSet`` (not yet type-checked)."""
    text = screen(source)
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as error:
        raise RuleSyntaxError([_syntax_diagnostic(text, error)]) from None
    _check_depth(text, tree)
    builder = _Builder(text)
    ruleset = builder.ruleset(tree)
    if builder.problems:
        raise RuleSyntaxError(builder.problems[:MAX_DIAGNOSTICS])
    _check_ast_depth(text, ruleset)
    return ruleset


def _expressions(rule: ast.Rule):
    yield from (c.expr for c in rule.conditions)
    for action in rule.actions:
        for name in ("amount", "factor", "limit"):
            if hasattr(action, name):
                yield getattr(action, name)


def _check_ast_depth(text: str, ruleset: ast.RuleSet) -> None:
    """Operator chains are flat in the parse tree (``1 + 1 + ...``) but nested in the
    syntax tree; bound the latter too, iteratively, before anything recurses on it."""
    for rule in ruleset.rules:
        for root in _expressions(rule):
            stack: list[tuple[ast.Expr, int]] = [(root, 1)]
            while stack:
                node, depth = stack.pop()
                if depth > MAX_DEPTH:
                    line = node.pos.line
                    raise RuleSourceRejected([Diagnostic(
                        f"expression is nested more than {MAX_DEPTH} levels deep (a chain of operators counts "
                        f"one level per operator)", line, node.pos.column, rule.name,
                        "split it into several conditions or rules", text.split("\n")[line - 1])])
                stack.extend((child, depth + 1) for child in ast.children(node))


# --- syntax errors -----------------------------------------------------------------


def _terminal_text(name: str) -> str:
    if name in _FRIENDLY:
        return _FRIENDLY[name]
    try:
        pattern = _lark().get_terminal(name).pattern
    except KeyError:
        return name.lower()
    return pattern.value if pattern.type == "str" else name.lower()


def _syntax_diagnostic(text: str, error: UnexpectedInput) -> Diagnostic:
    line = max(1, getattr(error, "line", 1) or 1)
    column = max(1, getattr(error, "column", 1) or 1)
    lines = text.split("\n")
    source_line = lines[line - 1] if line - 1 < len(lines) else ""
    if isinstance(error, UnexpectedToken):
        expected = sorted({_terminal_text(t) for t in error.expected})
        token: Token = error.token
        if token.type == "$END":
            found = "end of text"
            line, column = len(lines), len(lines[-1]) + 1
            source_line = lines[-1]
        else:
            found = repr(str(token)[:40])
    elif isinstance(error, UnexpectedCharacters):
        expected = sorted({_terminal_text(t) for t in (error.allowed or ())})
        found = repr(source_line[column - 1: column]) if column - 1 < len(source_line) else "character"
    else:
        assert isinstance(error, UnexpectedEOF)
        expected = sorted({_terminal_text(t) for t in error.expected})
        found = "end of text"
    word = found.strip("'\"")
    hint = None
    keyword_choices = [e for e in expected if e in KEYWORDS]
    close = difflib.get_close_matches(word, keyword_choices, n=1, cutoff=0.6)
    if word in _FOREIGN or word.startswith("__"):
        hint = "rules have no imports, functions, loops or access to Python: see grammar/README.md"
    elif close:
        hint = f"did you mean {close[0]}?"
    elif word == "&&" or word == "&":
        hint = "did you mean and?"
    elif word == "|":
        hint = "did you mean or?"
    elif word == "'":
        hint = 'strings use double quotes: "coffee"'
    message = f"unexpected {found}"
    if expected:
        shown = ", ".join(expected[:12]) + (", ..." if len(expected) > 12 else "")
        message += f"; expected {shown}"
    return Diagnostic(message, line, column, rule_at(text, line), hint, source_line)


def _check_depth(text: str, tree: Tree) -> None:
    limit = MAX_DEPTH + _OUTER_DEPTH
    stack: list[tuple[Tree, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            line = getattr(node.meta, "line", 1) if not node.meta.empty else 1
            column = getattr(node.meta, "column", 1) if not node.meta.empty else 1
            raise RuleSourceRejected([Diagnostic(
                f"expression is nested more than {MAX_DEPTH} levels deep", line, column, rule_at(text, line),
                "split it into several conditions or rules", text.split("\n")[line - 1])])
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tree))


# --- tree builder ----------------------------------------------------------------------


class _Builder:
    """Lark tree -> AST, validating literals; collects problems instead of stopping."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.split("\n")
        self.problems: list[Diagnostic] = []

    def problem(self, message: str, pos: ast.Pos, hint: str | None = None) -> None:
        if len(self.problems) < MAX_DIAGNOSTICS:
            line = self.lines[pos.line - 1] if 0 < pos.line <= len(self.lines) else None
            self.problems.append(Diagnostic(message, pos.line, pos.column, rule_at(self.text, pos.line), hint, line))

    @staticmethod
    def pos(node: Tree | Token) -> ast.Pos:
        if isinstance(node, Token):
            return ast.Pos(node.line or 1, node.column or 1)
        if node.meta.empty:
            return ast.Pos(1, 1)
        return ast.Pos(node.meta.line, node.meta.column)

    # --- top level ---

    def ruleset(self, tree: Tree) -> ast.RuleSet:
        valid_from = valid_until = None
        rules: list[ast.Rule] = []
        rule_trees = [c for c in tree.children if isinstance(c, Tree) and c.data == "rule"]
        if len(rule_trees) > MAX_RULES:
            self.problem(f"{len(rule_trees):,} rules; a rule set may have at most {MAX_RULES}",
                         self.pos(rule_trees[MAX_RULES]), "merge similar rules or split the programme")
            return ast.RuleSet((), source=self.text)
        for child in tree.children:
            if child.data == "validity":
                for part in child.children:
                    literal = self.date(part.children[0])
                    if part.data == "valid_from":
                        valid_from = literal
                    else:
                        valid_until = literal
            else:
                rules.append(self.rule(child, len(rules)))
        if valid_from and valid_until and valid_from.days > valid_until.days:
            self.problem(f"valid from {valid_from.text} is after valid until {valid_until.text}", valid_from.pos)
        return ast.RuleSet(tuple(rules), valid_from, valid_until, self.text)

    def rule(self, tree: Tree, index: int) -> ast.Rule:
        name_token, *rest = tree.children
        name = self.string(name_token)
        pos = self.pos(tree)
        if not name.strip():
            self.problem("a rule needs a name", self.pos(name_token))
        elif len(name) > MAX_RULE_NAME_CHARS:
            self.problem(f"rule name is {len(name)} characters; the limit is {MAX_RULE_NAME_CHARS}",
                         self.pos(name_token))
        priority = 0
        conditions: tuple[ast.Condition, ...] = ()
        actions: list[ast.Action] = []
        for part in rest:
            if part.data == "priority":
                priority = self.integer(part.children[0], 0, MAX_PRIORITY, "priority")
            elif part.data == "condition":
                conditions = self.conditions(part.children[0])
            else:
                actions.append(self.action(part))
        return ast.Rule(name, priority, conditions, tuple(actions), index, pos)

    def conditions(self, tree: Tree | Token) -> tuple[ast.Condition, ...]:
        parts = tree.children if isinstance(tree, Tree) and tree.data == "and_expr" else [tree]
        return tuple(ast.Condition(self.expr(p), self.slice(p)) for p in parts)

    def slice(self, node: Tree | Token) -> str:
        if isinstance(node, Token):
            return str(node)
        text = self.text[node.meta.start_pos:node.meta.end_pos]
        return " ".join(text.split())[:300]

    def action(self, tree: Tree) -> ast.Action:
        pos = self.pos(tree)
        kind = tree.data
        if kind == "earn":
            amount = self.expr(tree.children[0])
            days = expiry_date = pending = wallet = None
            seen: set[str] = set()
            for option in tree.children[1:]:
                kind = "expiry" if option.data in ("expiry_days", "expiry_date") else option.data
                if kind in seen:
                    self.problem(f"an earn action takes one {kind} option", self.pos(option))
                seen.add(kind)
                if option.data == "expiry_days":
                    days = self.integer(option.children[0], 1, MAX_EXPIRY_DAYS, "expiry")
                elif option.data == "expiry_date":
                    expiry_date = self.date(option.children[0])
                    if expiry_date.days > LAST_EXPIRY_DAY:
                        # Past it, the lot's end (the day after, local midnight) is no date at all:
                        # 9999-12-31 saved and then failed every order (an outside review).
                        self.problem(f"expiry date {expiry_date.text} is too far: the last is 8999-12-31",
                                     self.pos(option.children[0]))
                elif option.data == "pending":
                    pending = self.integer(option.children[0], 0, MAX_PENDING_DAYS, "pending window")
                else:
                    wallet = self.string(option.children[0])
                    if not WALLET_NAME.match(wallet):
                        self.problem(f"wallet {wallet[:40]!r} must be 1-32 lower-case letters, digits or '-', "
                                     "starting with a letter or digit", self.pos(option))
            return ast.Earn(amount, days, expiry_date, pos, pending, wallet)
        if kind == "multiply":
            return ast.Multiply(self.expr(tree.children[0]), pos)
        if kind == "cap":
            return ast.Cap(self.expr(tree.children[0]), pos)
        if kind == "tag":
            token = tree.children[-1]
            tag = self.string(token)
            if not is_tag(tag):  # the customer API's grammar (shared/domain/tags.py)
                self.problem(f"tag {tag[:40]!r} must be 1-{MAX_TAG_LENGTH} lower-case letters, digits, '-' or '_', "
                             "starting with a letter or digit", self.pos(token))
            return ast.Tag(tag, pos)
        assert kind == "stop", kind
        return ast.Stop(pos)

    # --- literals ---

    def string(self, token: Token) -> str:
        raw = str(token)[1:-1]
        value = raw.replace('\\"', '"').replace("\\\\", "\\")
        if len(value) > MAX_STRING_CHARS:
            self.problem(f"string is {len(value):,} characters; the limit is {MAX_STRING_CHARS}", self.pos(token))
            value = value[:MAX_STRING_CHARS]
        return value

    def integer(self, token: Token, low: int, high: int, what: str) -> int:
        text = str(token)
        if "." in text or len(text) > MAX_NUMBER_CHARS or not (low <= int(text) <= high):
            self.problem(f"{what} must be a whole number from {low} to {high:,}", self.pos(token))
            return low
        return int(text)

    def number(self, token: Token) -> int:
        text = str(token)
        if len(text) > MAX_NUMBER_CHARS:
            self.problem(f"number literal has {len(text)} characters; the limit is {MAX_NUMBER_CHARS}",
                         self.pos(token))
            return 0
        whole, _, frac = text.partition(".")
        if len(frac) > SCALE_DIGITS:
            self.problem(f"{text} has more than {SCALE_DIGITS} decimal places", self.pos(token),
                         f"numbers are exact to {SCALE_DIGITS} decimals")
            return 0
        value = int(whole) * SCALE + int((frac or "0").ljust(SCALE_DIGITS, "0"))
        if value > MAX_UNITS * SCALE:
            self.problem(f"number {text} is larger than {MAX_UNITS:,}", self.pos(token))
            return 0
        return value

    def date(self, token: Token) -> ast.DateLit:
        text = str(token)
        try:
            days = date.fromisoformat(text).toordinal() - EPOCH_ORDINAL
        except ValueError:
            self.problem(f"{text} is not a calendar date", self.pos(token), "dates are written YYYY-MM-DD")
            days = 0
        return ast.DateLit(days, text, self.pos(token))

    def name(self, token: Token) -> str:
        text = str(token)
        if len(text) > MAX_NAME_CHARS:
            self.problem(f"name is {len(text):,} characters; the limit is {MAX_NAME_CHARS}", self.pos(token))
            return text[:MAX_NAME_CHARS]
        return text

    # --- expressions ---

    def expr(self, node: Tree | Token) -> ast.Expr:
        assert isinstance(node, Tree), node
        pos = self.pos(node)
        kind = node.data
        c = node.children
        if kind == "number":
            return ast.Num(self.number(c[0]), pos)
        if kind == "string":
            return ast.Str(self.string(c[0]), pos)
        if kind == "date":
            return self.date(c[0])
        if kind in ("true", "false"):
            return ast.Bool(kind == "true", pos)
        if kind == "earned":
            return ast.Earned(pos)
        if kind == "path":
            return ast.Field(tuple(self.name(t) for t in c), pos)
        if kind == "call":
            return ast.Call(self.name(c[0]), tuple(self.expr(a) for a in c[1:]), pos)
        if kind == "list":
            if len(c) > MAX_LIST_ITEMS:
                self.problem(f"list has {len(c):,} elements; the limit is {MAX_LIST_ITEMS}", pos)
            return ast.ListLit(tuple(self.expr(a) for a in c[:MAX_LIST_ITEMS]), pos)
        if kind == "neg":
            operand = self.expr(c[1])
            if isinstance(operand, ast.Num):       # fold literals so "-5" is a constant
                return ast.Num(-operand.value, pos)
            return ast.Neg(operand, pos)
        if kind == "not_":
            return ast.Not(self.expr(c[0]), pos)
        if kind in ("sum", "product"):
            result = self.expr(c[0])
            for i in range(1, len(c), 2):
                result = ast.Arith(str(c[i]), result, self.expr(c[i + 1]), self.pos(c[i]))
            return result
        if kind == "compare":
            op = "=" if str(c[1]) == "==" else str(c[1])
            return ast.Compare(op, self.expr(c[0]), self.expr(c[2]), self.pos(c[1]))
        if kind in ("member", "not_member"):
            return ast.Member(self.expr(c[0]), self.expr(c[1]), kind == "not_member", pos)
        if kind == "between":
            return ast.Between(self.expr(c[0]), self.expr(c[1]), self.expr(c[2]), pos)
        if kind == "and_expr":
            return ast.And(tuple(self.expr(p) for p in c), pos)
        if kind == "or_expr":
            return ast.Or(tuple(self.expr(p) for p in c), pos)
        if kind == "quantifier":
            quant, var, collection, _has, body = c
            return ast.Quantifier(str(quant), self.name(var), self.expr(collection), self.expr(body), pos)
        if kind == "count":
            where = self.expr(c[2]) if len(c) > 2 else None
            return ast.Count(self.name(c[0]), self.expr(c[1]), where, pos)
        if kind == "total":
            where = self.expr(c[3]) if len(c) > 3 else None
            return ast.Sum(self.expr(c[0]), self.name(c[1]), self.expr(c[2]), where, pos)
        raise AssertionError(f"unhandled syntax node {kind}")
