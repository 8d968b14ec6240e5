"""Screening of rule source text before it reaches the parser.

Refuses, with a positioned diagnostic, text that is too large or that could
mean something other than what a reviewer sees:

* control characters (other than newline, tab, carriage return);
* invisible and bidirectional formatting characters (zero-width spaces and
  joiners, BOM, LRO/RLO/PDF, isolates: the "Trojan Source" family), anywhere,
  including inside strings and comments where they would hide code;
* private-use, surrogate and unassigned code points;
* any non-ASCII character outside a string literal or a comment: names are
  ASCII, so ``оrder`` with a Cyrillic ``о`` is refused with the ASCII
  look-alike suggested instead of silently being a different name;
* brackets nested deeper than ``MAX_DEPTH`` (redundant parentheses leave no
  trace in the tree, so the parser's depth check would not see them).

Guarantees: linear in the text length, never raises anything but
``RuleSourceRejected``.
"""

from __future__ import annotations

import re
import unicodedata

from shared.rules.errors import Diagnostic, RuleSourceRejected
from shared.rules.limits import MAX_DEPTH, MAX_DIAGNOSTICS, MAX_LINE_CHARS, MAX_SOURCE_BYTES

# Common confusables of ASCII letters (Cyrillic, Greek, fullwidth via NFKC below).
_HOMOGLYPHS = {
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j",
    "ѕ": "s", "ԁ": "d", "ɡ": "g", "һ": "h", "ӏ": "l", "ո": "n", "ս": "u", "ν": "v", "ο": "o",
    "α": "a", "ε": "e", "ι": "i", "κ": "k", "τ": "t", "ρ": "p", "χ": "x", "υ": "u",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C",
    "Т": "T", "Х": "X", "ı": "i", "ℓ": "l",
}
_WORD = re.compile(r"[\w.]+", re.UNICODE)


def ascii_lookalike(text: str) -> str:
    """The ASCII text a reader most likely saw (for "did you mean" hints)."""
    out = []
    for ch in text:
        if ch in _HOMOGLYPHS:
            out.append(_HOMOGLYPHS[ch])
            continue
        folded = unicodedata.normalize("NFKC", ch)
        folded = "".join(c for c in unicodedata.normalize("NFKD", folded) if ord(c) < 128)
        out.append(folded or "?")
    return "".join(out)


def rule_at(source: str, line: int) -> str | None:
    """The name of the rule whose text contains ``line`` (best effort, for messages)."""
    name = None
    for number, text in enumerate(source.split("\n")[:line], start=1):
        match = re.match(r'\s*rule\s+"([^"\n]{0,100})"', text)
        if match:
            name = match.group(1)
    return name


def _describe(ch: str) -> str:
    return f"U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed character')}"


def screen(source: object) -> str:
    """Return the source if acceptable, else raise ``RuleSourceRejected`` with every problem."""
    if not isinstance(source, str):
        raise RuleSourceRejected([Diagnostic("rule source must be text", 1, 1)])
    size = len(source.encode("utf-8", errors="surrogatepass"))
    if size > MAX_SOURCE_BYTES:
        raise RuleSourceRejected([Diagnostic(
            f"rule source is {size:,} bytes; the limit is {MAX_SOURCE_BYTES:,}", 1, 1,
            hint="split the programme into fewer, simpler rules")])
    problems: list[Diagnostic] = []
    lines = source.split("\n")
    depth = 0
    for number, text in enumerate(lines, start=1):
        if len(problems) >= MAX_DIAGNOSTICS:
            break
        if len(text) > MAX_LINE_CHARS:
            problems.append(Diagnostic(f"line is {len(text):,} characters long; the limit is {MAX_LINE_CHARS:,}",
                                       number, MAX_LINE_CHARS + 1, rule_at(source, number)))
            continue
        in_string = False
        escaped = False
        for column, ch in enumerate(text, start=1):
            code = ord(ch)
            if code < 128 and (ch.isprintable() or ch in "\t\r"):
                if in_string:
                    if escaped:
                        escaped = False
                    elif ch == "\\":
                        escaped = True
                    elif ch == '"':
                        in_string = False
                elif ch == '"':
                    in_string = True
                elif ch in "([":
                    depth += 1
                    if depth > MAX_DEPTH and len(problems) < MAX_DIAGNOSTICS:
                        problems.append(Diagnostic(f"brackets are nested more than {MAX_DEPTH} levels deep",
                                                   number, column, rule_at(source, number),
                                                   "split it into several conditions or rules", text))
                        depth = -(10 ** 9)     # report once
                elif ch in ")]":
                    depth -= 1
                elif ch == "#":
                    # The rest of the line is a comment: still screened for invisible characters.
                    problem = _screen_comment(text, number, column, source)
                    if problem:
                        problems.append(problem)
                    break
                continue
            category = unicodedata.category(ch)
            if category in ("Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp") or (category == "Zs" and ch != " "):
                problems.append(Diagnostic(
                    f"invisible or control character {_describe(ch)} is not allowed", number, column,
                    rule_at(source, number), hint="delete it; it can make text display differently from what it does",
                    source_line=text.encode("ascii", "backslashreplace").decode()))
                break
            if not in_string:
                word_match = next((m for m in _WORD.finditer(text) if m.start() < column <= m.end()), None)
                word = word_match.group(0) if word_match else ch
                problems.append(Diagnostic(
                    f"character {_describe(ch)} is not allowed outside a string: names are ASCII", number, column,
                    rule_at(source, number), hint=f"did you mean {ascii_lookalike(word)}?",
                    source_line=text))
                break
    if problems:
        raise RuleSourceRejected(problems[:MAX_DIAGNOSTICS])
    return source


def _screen_comment(text: str, number: int, start: int, source: str) -> Diagnostic | None:
    for column in range(start, len(text) + 1):
        ch = text[column - 1]
        if ord(ch) >= 128 or not (ch.isprintable() or ch in "\t\r"):
            if unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"):
                return Diagnostic(f"invisible or control character {_describe(ch)} is not allowed", number, column,
                                  rule_at(source, number), hint="delete it; comments may not hide characters")
    return None
