"""Compile a ``Program`` to a WebAssembly module (WAT text generated from the AST).

The module is self-contained: it declares one fixed-size memory and **no
imports**, so code running in it can reach no file, socket, clock or other
tenant; it can only read the orders the host wrote into its memory and write
outcome records back. Its exports:

* ``memory``;
* ``eval_batch(in_ptr, n, out_ptr)``: evaluates ``n`` consecutive input records
  starting at ``in_ptr`` (each begins with its own byte length) and writes ``n``
  outcome records of ``out_bytes`` each from ``out_ptr``.

Semantics are those of ``shared.rules.closure``, instruction for instruction:
the fixed-point helpers below implement ``shared.rules.numeric`` exactly, with
every intermediate kept inside i64 (magnitudes are bounded by ``MAX_SCALED``,
see the derivations next to each helper). A runtime failure sets the global
``$err`` and branches to the rule's failure handler; no wasm trap is ever used
for a rule's failure.

Memory map: lots at ``LOTS`` (one i64 per earn action), their backup for
rollback right after, then the host's input and output regions from
``scratch_bytes(program)``.
"""

from __future__ import annotations

from shared.rules import ast
from shared.rules.checker import resolve_field
from shared.rules.numeric import MAX_POINTS, MAX_SCALED, SCALE, FailureCode
from shared.rules.program import ActionPlan, Program, RulePlan
from shared.rules.schema import ITEM_SLOTS, S_DATE, S_ITEMS_RAW, Type

PAGE = 65_536
MEMORY_PAGES = 64                      # 4 MiB, fixed: min = max, the store refuses growth too
LOTS = 0
ITEM_BYTES = ITEM_SLOTS * 8
_CMP = {"=": "eq", "!=": "ne", "<": "lt_s", "<=": "le_s", ">": "gt_s", ">=": "ge_s"}
_ARITH = {"+": "$add", "-": "$sub", "*": "$mul", "/": "$div"}


def scratch_bytes(program: Program) -> int:
    """Bytes reserved at the start of memory for the lots and their backup."""
    return (2 * len(program.lots) * 8 + 63) // 64 * 64


def out_bytes(program: Program) -> int:
    return program.size * 8


# The numeric helpers. A = |a|, B = |b| <= MAX (10^18), S = 10^4, M1 = MAX / S = 10^14.
_HELPERS = f"""
  (global $err (mut i32) (i32.const 0))
  (func $chk (param $v i64) (result i64)
    (if (i32.or (i64.gt_s (local.get $v) (i64.const {MAX_SCALED}))
                (i64.lt_s (local.get $v) (i64.const -{MAX_SCALED})))
      (then (global.set $err (i32.const {int(FailureCode.OVERFLOW)}))))
    (local.get $v))
  ;; |a|, |b| <= MAX, so a + b fits i64 before the check.
  (func $add (param $a i64) (param $b i64) (result i64) (call $chk (i64.add (local.get $a) (local.get $b))))
  (func $sub (param $a i64) (param $b i64) (result i64) (call $chk (i64.sub (local.get $a) (local.get $b))))
  (func $abs (param $a i64) (result i64)
    (select (i64.sub (i64.const 0) (local.get $a)) (local.get $a) (i64.lt_s (local.get $a) (i64.const 0))))
  ;; floor(A*B/S) = ah*bh*S + ah*bl + al*bh + floor(al*bl/S) with a = ah*S + al, b = bh*S + bl.
  ;; ah*bh <= M1 is checked first (else the result exceeds MAX); then each term is <= ~10^18
  ;; and their sum < 4*10^18 < 2^63. The sign is applied last: the result rounds toward zero.
  (func $mul (param $a i64) (param $b i64) (result i64)
    (local $A i64) (local $B i64) (local $ah i64) (local $al i64) (local $bh i64) (local $bl i64) (local $m i64)
    (local.set $A (call $abs (local.get $a)))
    (local.set $B (call $abs (local.get $b)))
    (local.set $ah (i64.div_u (local.get $A) (i64.const {SCALE})))
    (local.set $al (i64.rem_u (local.get $A) (i64.const {SCALE})))
    (local.set $bh (i64.div_u (local.get $B) (i64.const {SCALE})))
    (local.set $bl (i64.rem_u (local.get $B) (i64.const {SCALE})))
    (if (i64.ne (local.get $ah) (i64.const 0))
      (then (if (i64.gt_u (local.get $bh) (i64.div_u (i64.const {MAX_SCALED // SCALE}) (local.get $ah)))
        (then (global.set $err (i32.const {int(FailureCode.OVERFLOW)})) (return (i64.const 0))))))
    (local.set $m (i64.add (i64.add
        (i64.mul (i64.mul (local.get $ah) (local.get $bh)) (i64.const {SCALE}))
        (i64.mul (local.get $ah) (local.get $bl)))
      (i64.add (i64.mul (local.get $al) (local.get $bh))
        (i64.div_u (i64.mul (local.get $al) (local.get $bl)) (i64.const {SCALE})))))
    (if (i64.gt_u (local.get $m) (i64.const {MAX_SCALED}))
      (then (global.set $err (i32.const {int(FailureCode.OVERFLOW)})) (return (i64.const 0))))
    (select (i64.sub (i64.const 0) (local.get $m)) (local.get $m)
            (i32.xor (i64.lt_s (local.get $a) (i64.const 0)) (i64.lt_s (local.get $b) (i64.const 0)))))
  ;; floor(A*S/B) by long division: q = A / B (> M1 means overflow), then four decimal digits
  ;; from the remainder r < B <= 10^18, so r*10 < 10^19 < 2^64 (unsigned).
  (func $div (param $a i64) (param $b i64) (result i64)
    (local $A i64) (local $B i64) (local $q i64) (local $r i64) (local $k i32)
    (if (i64.eqz (local.get $b))
      (then (global.set $err (i32.const {int(FailureCode.DIVISION_BY_ZERO)})) (return (i64.const 0))))
    (local.set $A (call $abs (local.get $a)))
    (local.set $B (call $abs (local.get $b)))
    (local.set $q (i64.div_u (local.get $A) (local.get $B)))
    (local.set $r (i64.rem_u (local.get $A) (local.get $B)))
    (if (i64.gt_u (local.get $q) (i64.const {MAX_SCALED // SCALE}))
      (then (global.set $err (i32.const {int(FailureCode.OVERFLOW)})) (return (i64.const 0))))
    (local.set $k (i32.const {len(str(SCALE)) - 1}))
    (block $done (loop $digit
      (br_if $done (i32.eqz (local.get $k)))
      (local.set $r (i64.mul (local.get $r) (i64.const 10)))
      (local.set $q (i64.add (i64.mul (local.get $q) (i64.const 10)) (i64.div_u (local.get $r) (local.get $B))))
      (local.set $r (i64.rem_u (local.get $r) (local.get $B)))
      (local.set $k (i32.sub (local.get $k) (i32.const 1)))
      (br $digit)))
    (if (i64.gt_u (local.get $q) (i64.const {MAX_SCALED}))
      (then (global.set $err (i32.const {int(FailureCode.OVERFLOW)})) (return (i64.const 0))))
    (select (i64.sub (i64.const 0) (local.get $q)) (local.get $q)
            (i32.xor (i64.lt_s (local.get $a) (i64.const 0)) (i64.lt_s (local.get $b) (i64.const 0)))))
  (func $floor (param $a i64) (result i64) (local $r i64)
    (local.set $r (i64.rem_s (local.get $a) (i64.const {SCALE})))
    (if (i64.lt_s (local.get $r) (i64.const 0)) (then (local.set $r (i64.add (local.get $r) (i64.const {SCALE})))))
    (i64.sub (local.get $a) (local.get $r)))
  (func $ceil (param $a i64) (result i64)
    (i64.sub (i64.const 0) (call $floor (i64.sub (i64.const 0) (local.get $a)))))
  (func $round (param $a i64) (result i64) (local $m i64)
    (local.set $m (i64.mul (i64.div_u (i64.add (call $abs (local.get $a)) (i64.const {SCALE // 2}))
                                      (i64.const {SCALE})) (i64.const {SCALE})))
    (select (i64.sub (i64.const 0) (local.get $m)) (local.get $m) (i64.lt_s (local.get $a) (i64.const 0))))
  (func $min (param $a i64) (param $b i64) (result i64)
    (select (local.get $a) (local.get $b) (i64.lt_s (local.get $a) (local.get $b))))
  (func $max (param $a i64) (param $b i64) (result i64)
    (select (local.get $a) (local.get $b) (i64.gt_s (local.get $a) (local.get $b))))
"""


class _Gen:
    """Emits the body of ``$eval_order`` as flat wasm instructions."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.types = program.typed.types
        self.code: list[str] = []
        self.locals: list[tuple[str, str]] = []
        self.string_ids = {s: i for i, s in enumerate(program.string_literals)}
        self.n_lots = len(program.lots)
        self.backup = LOTS + self.n_lots * 8
        self.item_var: tuple[str, str] | None = None     # (rule-language name, wasm local)
        self.fail_label = ""
        self.counter = 0

    def emit(self, *instructions: str) -> None:
        self.code.extend(instructions)

    def local(self, kind: str) -> str:
        self.counter += 1
        name = f"$l{self.counter}"
        self.locals.append((name, kind))
        return name

    def label(self, prefix: str) -> str:
        self.counter += 1
        return f"${prefix}{self.counter}"

    def fail_if_err(self) -> None:
        self.emit("global.get $err", f"br_if {self.fail_label}")

    def fail_with(self, code: FailureCode) -> None:
        self.emit(f"i32.const {int(code)}", "global.set $err", f"br {self.fail_label}")

    def store_out(self, slot: int) -> str:
        return f"i64.store offset={slot * 8}"

    # --- expressions: numbers, dates and strings are i64; booleans are i32 ---

    def is_bool(self, node: ast.Expr) -> bool:
        return self.types.get(node) is Type.BOOL

    def expr(self, node: ast.Expr) -> None:
        emit = self.emit
        if isinstance(node, ast.Num):
            assert -MAX_SCALED <= node.value <= MAX_SCALED, "the checker bounds every literal"
            emit(f"i64.const {node.value}")
        elif isinstance(node, ast.Str):
            emit(f"i64.const {self.string_ids[node.value]}")
        elif isinstance(node, ast.DateLit):
            emit(f"i64.const {node.days}")
        elif isinstance(node, ast.Bool):
            emit(f"i32.const {int(node.value)}")
        elif isinstance(node, ast.Earned):
            emit("local.get $earned", f"i64.const {SCALE}", "i64.mul")
        elif isinstance(node, ast.Field):
            var = self.item_var
            spec = resolve_field(node, var[0] if var else None)
            assert spec is not None
            base = var[1] if var and node.path[0] == var[0] else "$in"
            emit(f"local.get {base}", f"i64.load offset={spec.slot * 8}")
        elif isinstance(node, ast.Call):
            for arg in node.args:
                self.expr(arg)
            if node.name in ("min", "max"):
                emit(*([f"call ${node.name}"] * (len(node.args) - 1)))
            else:
                emit(f"call ${node.name}")
        elif isinstance(node, ast.Neg):
            emit("i64.const 0")
            self.expr(node.operand)
            emit("i64.sub")
        elif isinstance(node, ast.Not):
            self.expr(node.operand)
            emit("i32.eqz")
        elif isinstance(node, ast.Arith):
            self.expr(node.left)
            self.expr(node.right)
            emit(f"call {_ARITH[node.op]}")
            self.fail_if_err()
        elif isinstance(node, ast.Compare):
            self.expr(node.left)
            self.expr(node.right)
            width = "i32" if self.is_bool(node.left) else "i64"
            op = _CMP[node.op] if width == "i64" else _CMP[node.op].replace("_s", "_u")
            emit(f"{width}.{op}")
        elif isinstance(node, ast.Member):
            self.member(node)
        elif isinstance(node, ast.Between):
            value, low, high = self.local("i64"), self.local("i64"), self.local("i64")
            for part, name in ((node.value, value), (node.low, low), (node.high, high)):
                self.expr(part)
                emit(f"local.set {name}")
            emit(f"local.get {value}", f"local.get {low}", "i64.ge_s",
                 f"local.get {value}", f"local.get {high}", "i64.le_s", "i32.and")
        elif isinstance(node, ast.And):
            self.chain(node.parts, short="i32.const 0", on_first_true=True)
        elif isinstance(node, ast.Or):
            self.chain(node.parts, short="i32.const 1", on_first_true=False)
        elif isinstance(node, ast.AGGREGATES):
            self.aggregate(node)
        else:
            raise AssertionError(f"unhandled node {type(node).__name__}")

    def chain(self, parts: tuple[ast.Expr, ...], short: str, on_first_true: bool) -> None:
        """``and``/``or`` with short-circuit, flat: one block, left with ``short`` by the first
        part that decides (``br_if``), else the last part's value. (It was one nested ``if`` per
        operand, generated recursively: a chain of ~1,000 operands, which the checker allows as
        one node, raised RecursionError and every order of a wasm tenant earned 0.)"""
        self.emit("block (result i32)")
        for part in parts[:-1]:
            self.emit(short)     # the block's value if this part decides
            self.expr(part)
            if on_first_true:    # and: leave when false
                self.emit("i32.eqz")
            self.emit("br_if 0", "drop")
        self.expr(parts[-1])
        self.emit("end")

    def member(self, node: ast.Member) -> None:
        if isinstance(node.container, ast.Field):
            assert isinstance(node.element, ast.Str)
            slot = self.program.tag_slot(node.element.value)
            self.emit("local.get $in", f"i64.load offset={slot * 8}", "i64.const 1",
                      "i64.ne" if node.negated else "i64.eq")
            return
        assert isinstance(node.container, ast.ListLit)
        value = self.local("i64")
        self.expr(node.element)
        self.emit(f"local.set {value}")
        for index, item in enumerate(node.container.items):
            self.emit(f"local.get {value}")
            self.expr(item)
            self.emit("i64.eq")
            if index:
                self.emit("i32.or")
        if node.negated:
            self.emit("i32.eqz")

    def aggregate(self, node: ast.Quantifier | ast.Count | ast.Sum) -> None:
        emit = self.emit
        ptr, index, acc = self.local("i32"), self.local("i32"), self.local("i64")
        done, again = self.label("done"), self.label("next")
        initial = 1 if isinstance(node, ast.Quantifier) and node.kind == "all" else 0
        emit(f"i64.const {initial}", f"local.set {acc}",
             "local.get $in", f"i32.const {self.program.n_inputs * 8}", "i32.add", f"local.set {ptr}",
             "i32.const 0", f"local.set {index}",
             f"block {done}", f"loop {again}",
             f"local.get {index}", "local.get $n", "i32.ge_u", f"br_if {done}")
        self.item_var = (node.var, ptr)
        if isinstance(node, ast.Quantifier):
            self.expr(node.body)
            if node.kind == "all":
                emit("i32.eqz")
            emit("if", f"i64.const {1 - initial}", f"local.set {acc}", f"br {done}", "end")
        elif isinstance(node, ast.Count):
            if node.where is not None:
                self.expr(node.where)
                emit("if")
            emit(f"local.get {acc}", f"i64.const {SCALE}", "i64.add", f"local.set {acc}")
            if node.where is not None:
                emit("end")
        else:
            if node.where is not None:
                self.expr(node.where)
                emit("if")
            emit(f"local.get {acc}")
            self.expr(node.value)
            emit("call $add")
            self.fail_if_err()
            emit(f"local.set {acc}")
            if node.where is not None:
                emit("end")
        self.item_var = None
        emit(f"local.get {ptr}", f"i32.const {ITEM_BYTES}", "i32.add", f"local.set {ptr}",
             f"local.get {index}", "i32.const 1", "i32.add", f"local.set {index}",
             f"br {again}", "end", "end", f"local.get {acc}")
        if isinstance(node, ast.Quantifier):
            emit("i32.wrap_i64")

    # --- rules and actions ---

    def rule(self, plan: RulePlan, rules_end: str) -> None:
        emit = self.emit
        next_rule, fail = self.label("rule"), self.label("fail")
        self.fail_label = fail
        n_cond = len(plan.rule.conditions)
        emit(f"block {next_rule}", f"block {fail}")
        for index, condition in enumerate(plan.rule.conditions):
            emit(f"i32.const {index}", "local.set $where")
            self.expr(condition.expr)
            emit("local.set $c",
                 "local.get $out", "local.get $c", "i64.extend_i32_u", self.store_out(plan.cond_base + index),
                 "local.get $c", "i32.eqz", "if",
                 "local.get $out", "i64.const 0", self.store_out(plan.status), f"br {next_rule}", "end")
        emit("local.get $earned", "local.set $saved")
        if plan.changes_lots:
            emit(f"i32.const {self.backup}", f"i32.const {LOTS}", f"i32.const {self.n_lots * 8}", "memory.copy")
        for index, action in enumerate(plan.actions):
            emit(f"i32.const {n_cond + index}", "local.set $where")
            self.action(action)
        emit("local.get $out", "i64.const 1", self.store_out(plan.status))
        if plan.rule.stops:
            emit(f"br {rules_end}")
        emit(f"br {next_rule}", "end")
        # The failure handler: record, then restore what the rule's actions changed.
        emit("local.get $out", "i64.const 2", self.store_out(plan.status),
             "local.get $out", "global.get $err", "i64.extend_i32_u", self.store_out(plan.fail_code),
             "local.get $out", "local.get $where", "i64.extend_i32_u", self.store_out(plan.fail_where),
             "i32.const 0", "global.set $err",
             "local.get $where", f"i32.const {n_cond}", "i32.lt_u", "if",
             "local.get $out", "local.get $where", "i32.const 8", "i32.mul", "i32.add", "i64.const 2",
             self.store_out(plan.cond_base),
             "else", "local.get $saved", "local.set $earned")
        if plan.changes_lots:
            emit(f"i32.const {LOTS}", f"i32.const {self.backup}", f"i32.const {self.n_lots * 8}", "memory.copy")
        else:
            for action in plan.actions:
                if action.kind == "earn":
                    emit("i32.const 0", "i64.const -1", f"i64.store offset={LOTS + action.lot * 8}")
        emit("end", "end")

    def action(self, plan: ActionPlan) -> None:
        emit, action, slot = self.emit, plan.action, plan.slot
        if isinstance(action, ast.Earn):
            self.expr(action.amount)
            emit("local.set $x", "local.get $x", "i64.const 0", "i64.lt_s", "if")
            self.fail_with(FailureCode.NEGATIVE_POINTS)
            emit("end", "local.get $x", f"i64.const {SCALE}", "i64.div_s", "local.set $x",
                 "local.get $earned", "local.get $x", "i64.add", f"i64.const {MAX_POINTS}", "i64.gt_s", "if")
            self.fail_with(FailureCode.POINTS_LIMIT)
            emit("end",
                 "local.get $out", "local.get $x", self.store_out(slot),
                 "i32.const 0", "local.get $x", f"i64.store offset={LOTS + plan.lot * 8}",
                 "local.get $earned", "local.get $x", "i64.add", "local.set $earned")
        elif isinstance(action, ast.Multiply):
            self.expr(action.factor)
            emit("local.set $f", "local.get $f", "i64.const 0", "i64.lt_s", "if")
            self.fail_with(FailureCode.NEGATIVE_FACTOR)
            done, again = self.label("mdone"), self.label("mnext")
            emit("end", "i64.const 0", "local.set $tot", "i32.const 0", "local.set $k",
                 f"block {done}", f"loop {again}",
                 "local.get $k", f"i32.const {self.n_lots * 8}", "i32.ge_u", f"br_if {done}",
                 "local.get $k", f"i64.load offset={LOTS}", "local.set $x",
                 "local.get $x", "i64.const 0", "i64.ge_s", "if",
                 "local.get $x", f"i64.const {SCALE}", "i64.mul", "local.get $f", "call $mul")
            self.fail_if_err()
            emit(f"i64.const {SCALE}", "i64.div_s", "local.set $x",
                 "local.get $k", "local.get $x", f"i64.store offset={LOTS}",
                 "local.get $tot", "local.get $x", "i64.add", "local.set $tot",
                 "end",
                 "local.get $k", "i32.const 8", "i32.add", "local.set $k", f"br {again}", "end", "end",
                 "local.get $tot", f"i64.const {MAX_POINTS}", "i64.gt_s", "if")
            self.fail_with(FailureCode.POINTS_LIMIT)
            emit("end",
                 "local.get $out", "local.get $f", self.store_out(slot),
                 "local.get $out", "local.get $earned", self.store_out(slot + 1),
                 "local.get $out", "local.get $tot", self.store_out(slot + 2),
                 "local.get $tot", "local.set $earned")
        elif isinstance(action, ast.Cap):
            self.expr(action.limit)
            emit("local.set $x", "local.get $x", "i64.const 0", "i64.lt_s", "if")
            self.fail_with(FailureCode.NEGATIVE_CAP)
            done, again = self.label("cdone"), self.label("cnext")
            emit("end", "local.get $x", f"i64.const {SCALE}", "i64.div_s", "local.set $x",
                 "local.get $earned", "local.set $y",
                 "local.get $earned", "local.get $x", "i64.gt_s", "if",
                 "local.get $earned", "local.get $x", "i64.sub", "local.set $e",
                 f"i32.const {self.n_lots * 8}", "local.set $k",
                 f"block {done}", f"loop {again}",
                 "local.get $k", "i32.eqz", f"br_if {done}",
                 "local.get $k", "i32.const 8", "i32.sub", "local.set $k",
                 "local.get $k", f"i64.load offset={LOTS}", "local.set $p",
                 "local.get $p", "i64.const 0", "i64.gt_s", "if",
                 "local.get $p", "local.get $e", "local.get $p", "local.get $e", "i64.lt_s", "select",
                 "local.set $t",
                 "local.get $k", "local.get $p", "local.get $t", "i64.sub", f"i64.store offset={LOTS}",
                 "local.get $e", "local.get $t", "i64.sub", "local.set $e",
                 "end", f"br {again}", "end", "end",
                 "local.get $x", "local.set $earned",
                 "end",
                 "local.get $out", "local.get $x", self.store_out(slot),
                 "local.get $out", "local.get $y", self.store_out(slot + 1),
                 "local.get $out", "local.get $earned", self.store_out(slot + 2))
        else:   # tag, stop
            emit("local.get $out", "i64.const 1", self.store_out(slot))

    def eval_order(self) -> str:
        program, emit = self.program, self.emit
        ruleset = program.ruleset
        emit("local.get $out", "i32.const 255", f"i32.const {out_bytes(program)}", "memory.fill",
             f"i32.const {LOTS}", "i32.const 255", f"i32.const {self.n_lots * 8}", "memory.fill",
             "i64.const 0", "local.set $earned",
             "local.get $in", f"i64.load offset={S_DATE * 8}", "local.set $x")
        if ruleset.valid_from is not None:
            emit("local.get $x", f"i64.const {ruleset.valid_from.days}", "i64.lt_s", "if",
                 "local.get $out", "i64.const 1", "i64.store offset=0", "return", "end")
        if ruleset.valid_until is not None:
            emit("local.get $x", f"i64.const {ruleset.valid_until.days}", "i64.gt_s", "if",
                 "local.get $out", "i64.const 2", "i64.store offset=0", "return", "end")
        emit("local.get $out", "i64.const 0", "i64.store offset=0",
             "local.get $in", f"i64.load offset={S_ITEMS_RAW * 8}", "i32.wrap_i64", "local.set $n")
        rules_end = self.label("rules_end")
        emit(f"block {rules_end}")
        for plan in program.rules:
            self.rule(plan, rules_end)
        emit("end",
             "local.get $out", f"i32.const {program.lots_base * 8}", "i32.add",
             f"i32.const {LOTS}", f"i32.const {self.n_lots * 8}", "memory.copy")
        fixed = [("$n", "i32"), ("$c", "i32"), ("$where", "i32"), ("$k", "i32"), ("$earned", "i64"),
                 ("$saved", "i64"), ("$x", "i64"), ("$y", "i64"), ("$f", "i64"), ("$tot", "i64"),
                 ("$e", "i64"), ("$p", "i64"), ("$t", "i64")]
        declared = " ".join(f"(local {name} {kind})" for name, kind in fixed + self.locals)
        body = "\n    ".join(self.code)
        return f"  (func $eval_order (param $in i32) (param $out i32) {declared}\n    {body})\n"


def generate(program: Program) -> str:
    """The WAT text of the module for ``program``."""
    body = _Gen(program).eval_order()
    size = out_bytes(program)
    return f"""(module
  (memory (export "memory") {MEMORY_PAGES} {MEMORY_PAGES})
{_HELPERS}
{body}
  (func (export "eval_batch") (param $in i32) (param $n i32) (param $out i32)
    (block $done (loop $next
      (br_if $done (i32.eqz (local.get $n)))
      (call $eval_order (local.get $in) (local.get $out))
      (local.set $in (i32.add (local.get $in) (i32.wrap_i64 (i64.load (local.get $in)))))
      (local.set $out (i32.add (local.get $out) (i32.const {size})))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $next))))
)
"""
