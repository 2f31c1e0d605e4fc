"""Our IVIG rules engine against two peer rules engines, on the same rulebook and the same requests.

    .venv/bin/python bench/peers.py [--count 10000] [--seed 1]     # any CPython 3.11/3.12 will do
    bench/.venv-peers/bin/python bench/peers.py [--count 10000]    # the same, already in the venv
    .venv/bin/python bench/peers.py --setup-only                   # only create/refresh the venv

Peers: GoRules ZEN (`zen-engine`, a Rust decision-table engine) and Regorus (a Rust Rego
interpreter; its Python bindings come from the `gordon-to-regorus` fork, see
bench/peers/requirements.txt). They live in their own virtualenv, bench/.venv-peers (gitignored),
never in .venv and never as project dependencies. Run with any other interpreter, this script
creates or refreshes that venv (hash-pinned peers from bench/peers/requirements.txt, then
`pip install -e .` for the project) whenever requirements.txt or pyproject.toml changed, and
re-executes itself inside it. A full run takes about two minutes on 2 cores.

1. Translation. From OUR compiled rulesets (service/compiler.py: the durable-rules condition
   trees with `$and`, `$or`, `$lt`, `$gte` and equality, their `pri` order, the per-code order,
   the label-age alternatives and the missing-fact "unknown" variants), at run time:
   - ZEN: one JDM decision table per part, hit policy "first", one input column per message
     field, one row per conjunction of the condition in disjunctive normal form (an `$or` of
     equalities on one field stays one cell: "A", "B"), output `rule` = compiled rule name;
   - Rego: one package per part whose `decision` is the first compiled rule in `pri` order whose
     condition holds (`else` chains of REGO_PART rules, tried in order); each distinct `$or`
     is a helper rule with one definition per branch.
   Both read the flat message our engine posts (CompiledRulebook.message). Two layouts of the
   same ordered rules: "by ruleset" (our 5 durable-rules rulesets) and "by category" (one part
   per ICD-10-CM category, which linear first-hit engines prefer; rules of different categories
   never both match). Routing a code to its part is a Python dict lookup for every engine, as in
   service/engine.py. Everything is written to bench/peers/generated/ on every run; anything the
   translator cannot map exactly (say a future `$neq`) stops it, naming the compiled rule.
2. Requests: N distinct payloads from bench/decisions.py's request_mix, with typed diagnoses
   (names, synonyms, misspellings, ICD-10-CM descriptions, unrecognised text), codes below a
   rule's code, codes in a ruled category that no rule covers, codes in categories no rule touches.
3. Agreement, before anything is timed: every request must get the same compiled rule (or no
   match) from our engine and every peer mode, and Formulary.decide must name the same rule;
   then a targeted engine-level set (every rule code and a code below it, ages on and around
   every age limit, facts missing at random, a product x age sweep on labelled codes, and on
   every code whose rules test them: confirmed_by, specialty, course, phases, observations on and
   around every threshold and window, weeks a failed therapy was tried). Any
   disagreement prints the first five and exits 1.
4. Timing, interleaved per request with the order rotated, GC off: Formulary.decide(payload);
   engine.evaluate(code, facts); ZEN engine.evaluate(key) over a static loader; Regorus
   set_input + eval_rule; Regorus RVM set_input_json + execute_entry_point (also fed the event
   text our engine posts); the dict message build alone (the Python work the peers' wrappers
   share). Each engine-level callable takes (code, facts) and builds its input itself, as
   engine.evaluate does (it posts CompiledRulebook.message_json: compact JSON text without the
   fields its ruleset never tests). ZenDecision.evaluate ("create the
   decision once, then evaluate") is timed in its own pass: it starts threads on every call.
   Wall clock and thread CPU time; "cold" = N distinct requests with our answer caches (the
   engine's and Formulary's decisions) emptied and off, the diagnosis caches (per text, per code) emptied, "warm" = 50 requests repeated to N with the caches on; load/compile times. Prints the tables and writes bench/peers/last-run.json.
"""

import argparse
import gc
import hashlib
import itertools
import json
import math
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "bench" / "peers"
GENERATED = PEERS / "generated"
REQUIREMENTS = PEERS / "requirements.txt"
VENV = ROOT / "bench" / ".venv-peers"
VENV_PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".peers-installed"
WARM_DISTINCT = 50


# --------------------------------------------------------------------------- the peers' venv


def _wanted_stamp() -> str:
    digest = hashlib.sha256()
    for path in (REQUIREMENTS, ROOT / "pyproject.toml"):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _in_peer_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def ensure_peer_venv(argv: list[str]):
    """Create or refresh bench/.venv-peers when needed, and re-execute inside it."""
    wanted = _wanted_stamp()
    if not (STAMP.exists() and STAMP.read_text() == wanted):
        if not VENV_PYTHON.exists():
            base = getattr(sys, "_base_executable", sys.executable)
            print(f"creating {VENV.relative_to(ROOT)} with {base}", file=sys.stderr)
            subprocess.run([base, "-m", "venv", str(VENV)], check=True)
        pip = [str(VENV_PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        print("installing the peers (hash-pinned) and the project into it", file=sys.stderr)
        subprocess.run(pip + ["--require-hashes", "-r", str(REQUIREMENTS)], check=True)
        subprocess.run(pip + ["-e", str(ROOT)], check=True)
        STAMP.write_text(wanted)
    if not _in_peer_venv():
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), str(Path(__file__).resolve())] + argv)


# --------------------------------------------------------------------------- condition trees


class Untranslatable(Exception):
    """A compiled condition uses something this translator does not map exactly."""


# durable-rules comparison operators we translate; all are false when the field is absent, in
# durable-rules, ZEN (a null never compares) and Rego (an undefined reference fails the body).
COMPARISONS = {"$lt": "<", "$lte": "<=", "$gt": ">", "$gte": ">="}
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _literal(value):
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise Untranslatable(f"literal {value!r}: only strings and numbers are translated")
    return value


def parse_condition(condition):
    """A durable-rules condition -> ("and"|"or", [nodes]) or ("atom", (field, op, value)).

    op is "==", "<", "<=", ">", ">=" or "in" (an `$or` of equalities on one field, value a tuple).
    Anything else ($neq, $ex, $nex, $mt, ...) is refused rather than guessed at.
    """
    if not isinstance(condition, dict) or not condition:
        raise Untranslatable(f"condition {condition!r}")
    parts = []
    for key, value in condition.items():
        if key == "$and":
            parts.append(("and", [parse_condition(c) for c in value]))
        elif key == "$or":
            parts.append(_merge_equalities([parse_condition(c) for c in value]))
        elif key in COMPARISONS:
            if not isinstance(value, dict) or len(value) != 1:
                raise Untranslatable(f"{key} {value!r}")
            ((name, literal),) = value.items()
            parts.append(("atom", (name, COMPARISONS[key], _literal(literal))))
        elif key.startswith("$"):
            raise Untranslatable(f"operator {key}")
        else:
            parts.append(("atom", (key, "==", _literal(value))))
    return parts[0] if len(parts) == 1 else ("and", parts)


def _merge_equalities(children):
    """Inside an `$or`, equalities on the same field become one membership test."""
    by_field, rest = {}, []
    for child in children:
        if child[0] == "atom" and child[1][1] == "==":
            by_field.setdefault(child[1][0], []).append(child[1][2])
        else:
            rest.append(child)
    merged = [
        ("atom", (f, "==", vs[0])) if len(vs) == 1 else ("atom", (f, "in", tuple(vs))) for f, vs in by_field.items()
    ]
    merged += rest
    return merged[0] if len(merged) == 1 else ("or", merged)


def dnf(node) -> list[list[tuple]]:
    """Disjunctive normal form: a list of conjunctions of atoms (duplicates dropped)."""
    kind, body = node
    if kind == "atom":
        return [[body]]
    if kind == "or":
        return [term for child in body for term in dnf(child)]
    terms = [[]]
    for child in body:
        terms = [a + [b for b in t if b not in a] for a in terms for t in dnf(child)]
    return terms


def compiled_rules(compiled):
    """Each ruleset's compiled rules in `pri` order: [(name, parsed condition)]."""
    out = {}
    for ruleset, rules in compiled.rulesets.items():
        ordered = []
        for name, rule in sorted(rules.items(), key=lambda item: item[1]["pri"]):
            if set(rule) != {"all", "pri"} or len(rule["all"]) != 1 or set(rule["all"][0]) != {"m"}:
                raise Untranslatable(f"{name}: expected one fact binding 'm' in 'all', found {rule!r}")
            ordered.append((name, parse_condition(rule["all"][0]["m"])))
        out[ruleset] = ordered
    return out


# --------------------------------------------------------------------------- ZEN (JDM)

MAX_ROWS_PER_RULE = 64


def _zen_literal(value) -> str:
    return json.dumps(value)


def _zen_cell(atoms) -> str:
    """A unary cell testing one column (`$` is the column's value)."""
    if len(atoms) == 1:
        _, op, value = atoms[0]
        if op == "==":
            return _zen_literal(value)
        if op == "in":
            return ", ".join(_zen_literal(v) for v in value)
        return f"{op} {_zen_literal(value)}"
    tests = []
    for _, op, value in atoms:
        if op == "in":
            tests.append(f"$ in [{', '.join(_zen_literal(v) for v in value)}]")
        else:
            tests.append(f"$ {op} {_zen_literal(value)}")
    return " and ".join(tests)


def _column_order(field: str):
    code = re.fullmatch(r"dx(\d+)", field)
    return (0, int(code.group(1)), field) if code else (1, 0, field)


def zen_model(ruleset: str, rules, header: dict) -> tuple[dict, int]:
    """One JDM graph: input -> decision table (first hit) -> output. Returns (model, rows)."""
    rows = []
    for name, condition in rules:
        terms = dnf(condition)
        if len(terms) > MAX_ROWS_PER_RULE:
            raise Untranslatable(f"{name}: {len(terms)} rows in disjunctive normal form")
        for term in terms:
            cells = {}
            for atom in term:
                cells.setdefault(atom[0], []).append(atom)
            rows.append((name, cells))
    fields = sorted({f for _, cells in rows for f in cells}, key=_column_order)
    column = {f: f"in_{i}" for i, f in enumerate(fields)}
    table_rules = []
    for j, (name, cells) in enumerate(rows):
        row = {"_id": f"row_{j}", "_description": name}
        for f in fields:
            row[column[f]] = _zen_cell(cells[f]) if f in cells else ""
        row["out_rule"] = _zen_literal(name)
        table_rules.append(row)
    model = {
        "contentType": "application/vnd.gorules.decision",
        "_generated": header,
        "nodes": [
            {"id": "request", "type": "inputNode", "name": "Request", "position": {"x": 0, "y": 0}},
            {
                "id": "rules",
                "type": "decisionTableNode",
                "name": f"IVIG {ruleset}",
                "position": {"x": 250, "y": 0},
                "content": {
                    "hitPolicy": "first",
                    "inputs": [{"id": column[f], "name": f, "type": "expression", "field": f} for f in fields],
                    "outputs": [{"id": "out_rule", "name": "rule", "type": "expression", "field": "rule"}],
                    "rules": table_rules,
                },
            },
            {"id": "response", "type": "outputNode", "name": "Response", "position": {"x": 500, "y": 0}},
        ],
        "edges": [
            {"id": "request-rules", "type": "edge", "sourceId": "request", "targetId": "rules"},
            {"id": "rules-response", "type": "edge", "sourceId": "rules", "targetId": "response"},
        ],
    }
    return model, len(rows)


# --------------------------------------------------------------------------- Rego


def _rego_ref(field: str) -> str:
    return f"input.{field}" if IDENTIFIER.match(field) else f"input[{json.dumps(field)}]"


def _rego_atom(atom) -> str:
    field, op, value = atom
    if op == "in":
        return f"{_rego_ref(field)} in {{{', '.join(json.dumps(v) for v in value)}}}"
    return f"{_rego_ref(field)} {op} {json.dumps(value)}"


class _RegoWriter:
    """Bodies for conditions; each distinct `$or` becomes one helper rule (shared by every
    compiled rule that has the same `$or`, so the engine evaluates it at most once a request)."""

    def __init__(self):
        self.helpers: list[str] = []
        self._names: dict[tuple, str] = {}

    def body(self, node) -> list[str]:
        kind, content = node
        if kind == "atom":
            return [_rego_atom(content)]
        if kind == "and":
            return [line for child in content for line in self.body(child)]
        branches = tuple(tuple(self.body(child)) for child in content)
        if branches not in self._names:
            name = self._names[branches] = f"or_{len(self._names)}"
            for lines in branches:  # one definition per branch: Rego's "or"
                self.helpers.append(_rego_rule(name, None, list(lines)))
        return [self._names[branches]]


def _rego_rule(head: str, value, lines: list[str], keyword: str = "") -> str:
    assignment = "" if value is None else f" := {json.dumps(value)}"
    inner = "\n".join(f"\t{line}" for line in lines) or "\ttrue"
    return f"{keyword}{head}{assignment} if {{\n{inner}\n}}"


# Regorus' RVM compiler (gordon-to-regorus 0.13.0) panics with "Register overflow" on an `else`
# chain of more than about 40 short branches, so the chain is split into parts of REGO_PART
# compiled rules, tried in order by `decision`: still first match wins. (The RVM also answers
# undefined for `decision := x if { x := part_1 }` reached through `else`, where the interpreter
# is right; `decision := part_1 if { part_1 }` is correct in both.)
REGO_PART = 8


def rego_policy(package: str, rules, header: str) -> str:
    writer = _RegoWriter()
    parts = []
    for start in range(0, len(rules), REGO_PART):
        part = f"part_{start // REGO_PART}"
        chain = []
        for i, (name, condition) in enumerate(rules[start : start + REGO_PART]):
            chain.append(
                _rego_rule(part if i == 0 else "", name, writer.body(condition), keyword="" if i == 0 else "else")
            )
        parts.append((part, start, start + len(chain) - 1, " ".join(chain)))  # `} else := "x" if {` continues
    decision = " ".join(
        f"{'decision' if k == 0 else 'else'} := {part} if {{\n\t{part}\n}}" for k, (part, *_) in enumerate(parts)
    )
    return (
        f"{header}\npackage {package}\n\nimport rego.v1\n\n"
        f"# The first compiled rule (in durable-rules `pri` order) whose condition holds.\n{decision}\n\n"
        + "\n\n".join(f"# compiled rules {first}..{last} (pri)\n{chain}" for _, first, last, chain in parts)
        + "\n\n# `$or` nodes: one definition per branch.\n"
        + "\n\n".join(writer.helpers)
        + "\n"
    )


# --------------------------------------------------------------------------- generation

LAYOUTS = ("ruleset", "category")


def _code_test(name: str, condition) -> str:
    """The dotless code a compiled rule is written on, read from its code test."""
    kind, body = condition
    atoms = [body] if kind == "atom" else [c[1] for c in body if c[0] == "atom"] if kind == "and" else []
    codes = {value for field, op, value in atoms if re.fullmatch(r"dx\d+", field) and op == "=="}
    if len(codes) != 1:
        raise Untranslatable(f"{name}: no single code test at the top of its condition")
    return codes.pop()


def _category(name: str, condition) -> str:
    """The ICD-10-CM category a compiled rule is written on."""
    return _code_test(name, condition)[:3]


def layouts(compiled) -> dict[str, dict[str, list]]:
    """Two ways to cut the same ordered rules: as our rulesets (up to 120 compiled rules, the
    layout durable-rules gets), and one part per ICD-10-CM category (what a linear first-hit
    engine is better served by). Rules of different categories can never both match one request,
    so within a part the `pri` order of the ruleset is kept and nothing else changes."""
    by_ruleset = compiled_rules(compiled)
    by_category: dict[str, list] = {}
    for rules in by_ruleset.values():
        for name, condition in rules:
            by_category.setdefault(_category(name, condition), []).append((name, condition))
    missing = set(compiled.routes) ^ set(by_category)
    if missing:
        raise Untranslatable(f"categories routed but without rules, or the reverse: {sorted(missing)}")
    return {"ruleset": by_ruleset, "category": dict(sorted(by_category.items()))}


def _dump_model(model: dict) -> str:
    """A JDM file as the editor would read it, one table row per line (diffable, compact)."""
    table = model["nodes"][1]["content"]
    shell = {
        **model,
        "nodes": [model["nodes"][0], {**model["nodes"][1], "content": {**table, "rules": "ROWS"}}, model["nodes"][2]],
    }
    rows = ",\n".join("     " + json.dumps(row, separators=(",", ":")) for row in table["rules"])
    return json.dumps(shell, indent=1).replace('"ROWS"', "[\n" + rows + "\n    ]") + "\n"


def generate(formulary) -> dict:
    """Translate our compiled rulebook into ZEN models and Rego policies, in both layouts; write them out."""
    from service.rulebook.as_data import rulebook_ref

    compiled = formulary.engine._compiled
    ref = rulebook_ref(formulary.rulebook)
    started = time.perf_counter()
    cut = layouts(compiled)
    header = {"from": "rules/ivig.yaml via service/compiler.py", "by": "bench/peers.py", "do_not_edit": True, **ref}
    rego_header = (
        f"# Generated by bench/peers.py from rules/ivig.yaml {ref['version']} "
        f"(digest {ref['digest']}) via service/compiler.py. Do not edit."
    )
    out = {
        "rulebook": ref,
        "parts": {},
        "zen_models": {},
        "zen_rows": {},
        "rego_policies": {},
        "conditions": list(cut["ruleset"].values()),
    }
    for layout, parts in cut.items():
        out["parts"][layout] = list(parts)
        models, rows, policies = {}, {}, {}
        for part, rules in parts.items():
            models[part], rows[part] = zen_model(part, rules, header)
            policies[part] = rego_policy(f"peers.by_{layout}.{part}", rules, rego_header)
        out["zen_models"][layout], out["zen_rows"][layout], out["rego_policies"][layout] = models, rows, policies
    out["translate_seconds"] = time.perf_counter() - started

    for layout in LAYOUTS:
        for kind, suffix, content in (
            ("zen", ".json", out["zen_models"][layout]),
            ("rego", ".rego", out["rego_policies"][layout]),
        ):
            folder = GENERATED / f"{kind}-by-{layout}"
            folder.mkdir(parents=True, exist_ok=True)
            for old in folder.glob(f"*{suffix}"):
                old.unlink()
            for part, item in content.items():
                (folder / f"{part}{suffix}").write_text(item if isinstance(item, str) else _dump_model(item))
    return out


# --------------------------------------------------------------------------- the engines


class Peers:
    """Every engine behind one interface: (code, facts) -> compiled rule name (or our Verdict) or None.

    Each wrapper routes the code to its part with a Python dict lookup, as service/engine.py does,
    and builds its input from the facts: the dict of CompiledRulebook.message (JSON text of it for
    the RVM). Our engine posts CompiledRulebook.message_json instead: the same facts as compact
    JSON text, without the fields its ruleset never tests; "RVM, our event text" gets that text."""

    def __init__(self, formulary, generated):
        import regorus
        import zen

        self.compiled = compiled = formulary.engine._compiled
        name_of = {id(verdict): name for name, verdict in compiled.verdicts.items()}
        message, message_json = compiled.message, compiled.message_json
        routes = {"ruleset": compiled.routes, "category": {c: c for c in compiled.routes}}
        self.load = {}
        fns = {}
        undefined = '"<undefined>"'
        dumps, loads = json.dumps, json.loads

        for layout in LAYOUTS:
            route = routes[layout].get
            parts = generated["parts"][layout]
            models, policies = generated["zen_models"][layout], generated["rego_policies"][layout]

            # ZEN, as its README's loader example: an engine over a (static) loader, evaluate(key, context).
            t0 = time.perf_counter()
            zen_engine = zen.ZenEngine({"loader": {"type": "static", "content": models}})
            for part in parts:
                zen_engine.get_decision(part)
            self.load[f"zen_{layout}"] = time.perf_counter() - t0

            def zen_keyed(code, facts, route=route, evaluate=zen_engine.evaluate):
                part = route(code[:3])
                if part is None:
                    return None
                return evaluate(part, message(0, code, facts))["result"].get("rule")

            # Regorus interpreter: policies added once; set_input + eval_rule per request.
            t0 = time.perf_counter()
            rego = regorus.Engine()
            for part in parts:
                rego.add_policy(f"{part}.rego", policies[part])
            self.load[f"rego_{layout}"] = time.perf_counter() - t0
            paths = {part: f"data.peers.by_{layout}.{part}.decision" for part in parts}

            def rego_eval(code, facts, route=route, rego=rego, paths=paths):
                part = route(code[:3])
                if part is None:
                    return None
                rego.set_input(message(0, code, facts))
                return rego.eval_rule(paths[part])

            # Regorus RVM: the same policies compiled once to one VM program.
            t0 = time.perf_counter()
            program = regorus.Program.compile_from_modules(
                "{}", [(f"{part}.rego", policies[part]) for part in parts], list(paths.values())
            )
            vm = regorus.Rvm()
            vm.load_program(program)
            vm.set_data_json("{}")
            self.load[f"rvm_{layout}"] = time.perf_counter() - t0

            def rvm_exec(code, facts, route=route, vm=vm, paths=paths):
                part = route(code[:3])
                if part is None:
                    return None
                vm.set_input_json(dumps(message(0, code, facts)))
                out = vm.execute_entry_point(paths[part])
                return None if out == undefined else loads(out)

            fns[f"zen_{layout}"], fns[f"rego_{layout}"], fns[f"rvm_{layout}"] = zen_keyed, rego_eval, rvm_exec

            if layout == "category":
                # The RVM reads JSON text, so it can take exactly the event text our engine posts
                # (compact, without the fields the category's ruleset never tests).
                plans, ruleset_of = formulary.engine._plans, compiled.routes

                def rvm_text(code, facts, route=route, vm=vm, paths=paths, plans=plans, ruleset_of=ruleset_of):
                    part = route(code[:3])
                    if part is None:
                        return None
                    vm.set_input_json(message_json(0, code, facts, plans[ruleset_of[part]]))
                    out = vm.execute_entry_point(paths[part])
                    return None if out == undefined else loads(out)

                fns["rvm_category_text"] = rvm_text
                self.load["rvm_category_text"] = self.load["rvm_category"]  # the same program and VM

        # ZEN as "create the decision once, then evaluate it": ZenDecision.evaluate. Measured
        # here (zen-engine 2.1.3), each such call starts and stops two threads and an epoll
        # instance (strace: clone3 x2, epoll_create1 per call): a fixed cost of ~200 us.
        t0 = time.perf_counter()
        decision_engine = zen.ZenEngine()
        decisions = {
            part: decision_engine.create_decision(json.dumps(generated["zen_models"]["ruleset"][part]))
            for part in generated["parts"]["ruleset"]
        }
        self.load["zen_decision"] = time.perf_counter() - t0
        ruleset_route = compiled.routes.get

        def zen_decision(code, facts):
            part = ruleset_route(code[:3])
            if part is None:
                return None
            return decisions[part].evaluate(message(0, code, facts))["result"].get("rule")

        engine = formulary.engine

        def ours(code, facts):
            return engine.evaluate(code, facts)

        def ours_name(code, facts):
            verdict = engine.evaluate(code, facts)
            return None if verdict is None else name_of[id(verdict)]

        def message_only(code, facts):
            if ruleset_route(code[:3]) is None:
                return None
            return message(0, code, facts)

        self.first = {"engine": ours, "zen_decision": zen_decision, **fns}
        self.answers = {"ours": ours_name, "zen_decision": zen_decision, **fns}
        self.timed = {"engine": ours, **fns, "message": message_only}
        # Timed in its own pass: the threads it starts and stops on every call would otherwise
        # land on its neighbours' clocks.
        self.separate = {"zen_decision": zen_decision}


# --------------------------------------------------------------------------- requests


def _typo(rng: random.Random, text: str) -> str:
    letters = [i for i, ch in enumerate(text) if ch.isalpha()][1:-1]
    if len(letters) < 4:
        return text.lower()
    i = rng.choice(letters)
    kind = rng.randrange(3)
    if kind == 0:
        out = text[:i] + text[i + 1 :]  # a letter dropped
    elif kind == 1:
        out = text[:i] + text[i + 1] + text[i] + text[i + 2 :]  # two letters swapped
    else:
        out = text[:i] + text[i] + text[i:]  # a letter doubled
    return out.lower()


class RequestPool:
    """What the request mix draws from, all derived from the rulebook and the ICD-10-CM release."""

    def __init__(self, formulary, seed: int):
        import simple_icd_10_cm as cm

        from service.rulebook import icd10

        rng = random.Random(seed)
        rulebook, compiled = formulary.rulebook, formulary.engine._compiled
        rule_codes = {icd10.normalise(c) for dx in rulebook.diagnoses.values() for c in dx.codes}
        below, uncovered, unrouted = [], [], []
        for code in cm.get_all_codes(False):
            if not icd10.is_valid(code) or code in rule_codes:
                continue
            covered = any(p in rule_codes for p in icd10.prefixes(code))
            if covered:
                below.append(code)
            elif code[:3] in compiled.routes:
                uncovered.append(code)
            else:
                unrouted.append(code)
        self.below = below
        self.uncovered = uncovered
        self.unrouted = rng.sample(unrouted, min(400, len(unrouted)))
        names = sorted(
            {dx.name for dx in rulebook.diagnoses.values()}
            | {s.term for dx in rulebook.diagnoses.values() for s in dx.synonyms}
        )
        self.texts = {
            "name": names,
            "typo": [_typo(rng, t) for t in rng.sample(names, min(60, len(names))) if len(t) > 6],
            "icd": [cm.get_description(c) for c in rng.sample(uncovered + self.unrouted, 40)],
            "unknown": [f"qwzx plorbity {i}" for i in range(10)],
        }


def build_requests(formulary, pool: RequestPool, count: int, seed: int) -> list[dict]:
    """`count` distinct request payloads (see the module docstring for the mix)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from decisions import request_mix

    from service.rulebook import icd10

    rng = random.Random(seed)
    seen, out = set(), []
    for attempt in itertools.count():
        if attempt > 20:
            raise SystemExit(f"could not make {count} distinct requests")
        for payload in request_mix(formulary, count * 2, seed=seed * 1000 + attempt):
            r = rng.random()
            if r < 0.20:
                kind = rng.choices(["name", "typo", "icd", "unknown"], weights=[55, 20, 20, 5])[0]
                payload["diagnosis"] = {"text": rng.choice(pool.texts[kind])}
            elif r < 0.27:
                payload["diagnosis"] = {"code": icd10.dotted(rng.choice(pool.below))}
            elif r < 0.35:
                payload["diagnosis"] = {"code": icd10.dotted(rng.choice(pool.uncovered))}
            elif r < 0.38:
                payload["diagnosis"] = {"code": icd10.dotted(rng.choice(pool.unrouted))}
            key = json.dumps(payload, sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append(payload)
                if len(out) == count:
                    return out
    raise AssertionError("unreachable")


class Item:
    """A request, and what the engines see of it (code None: it never reaches an engine)."""

    __slots__ = ("payload", "code", "facts", "routed", "kind")

    def __init__(self, payload, code, facts, routed, kind):
        self.payload, self.code, self.facts, self.routed, self.kind = payload, code, facts, routed, kind


def prepare(formulary, payloads) -> list[Item]:
    """Parse and resolve each request with a separate Terminology, so the timed Formulary's
    text cache is not warmed by the preparation."""
    from service.decide.request import parse_request
    from service.decide.terminology import Terminology

    terminology = Terminology(formulary.rulebook)
    routes = formulary.engine._compiled.routes
    items = []
    for payload in payloads:
        request = parse_request(payload, formulary.vocabulary)
        kind = "code" if request.code else "text"
        diagnosis = terminology.resolve(request.code, request.text)
        if diagnosis.code is None or diagnosis.problem:
            items.append(Item(payload, None, None, False, kind))
        else:
            code = diagnosis.plain_code
            items.append(Item(payload, code, request.facts, code[:3] in routes, kind))
    return items


# --------------------------------------------------------------------------- agreement


def check_agreement(formulary, peers: Peers, items: list[Item]) -> tuple[dict, list[dict]]:
    counts = {"requests": len(items), "no_code": 0, "unrouted": 0, "engine_match": 0, "engine_no_match": 0}
    problems, fired = [], set()
    for item in items:
        decision = formulary.decide(item.payload)
        if item.code is None:
            counts["no_code"] += 1
            if decision.rule is not None:
                problems.append(
                    {
                        "request": item.payload,
                        "why": "no diagnosis code, yet Formulary.decide named a rule",
                        "full_path_rule": decision.rule["id"],
                    }
                )
            continue
        counts["unrouted"] += not item.routed
        answers = {name: fn(item.code, item.facts) for name, fn in peers.answers.items()}
        # A diagnosis matched only approximately is proposed, not decided: the rule the engine fires
        # is the one the decision says would decide if the code were confirmed.
        decided = decision.if_confirmed if decision.diagnosis.is_proposal else decision.to_dict()
        full_rule = decided["rule"]["id"] if decided and decided["rule"] else None
        ours = answers["ours"]
        ours_rule = formulary.engine._compiled.verdicts[ours].rule.id if ours else None
        if len(set(answers.values())) != 1 or full_rule != ours_rule:
            problems.append(
                {
                    "request": item.payload,
                    "code": item.code,
                    "message": peers.compiled.message(0, item.code, item.facts) if item.routed else None,
                    "answers": answers,
                    "full_path_rule": full_rule,
                }
            )
        counts["engine_match" if ours else "engine_no_match"] += 1
        if ours:
            variant = formulary.engine._compiled.verdicts[ours].variant
            counts[f"fired_{variant}"] = counts.get(f"fired_{variant}", 0) + 1
            fired.add(ours)
    counts["distinct_compiled_rules_fired"] = len(fired)
    return counts, problems


def targeted_cases(formulary, generated, seed: int, per_code: int = 60) -> list[tuple[str, object]]:
    """Engine-level cases aimed at every compiled rule: each rule code (and a code below it) with
    random facts whose ages sit on and around every age limit the compiled conditions test, and
    every other fact sometimes missing (so the "unknown" variants fire). Not timed."""
    import simple_icd_10_cm as cm

    from service.rulebook import icd10
    from service.rulebook.facts import Facts
    from service.rulebook.model import SEVERITIES, SEXES

    rng = random.Random(seed)
    rulebook = formulary.rulebook
    limits = {
        value
        for rules in generated["conditions"]
        for _, condition in rules
        for term in dnf(condition)
        for field, op, value in term
        if field == "age" and op != "in"
    }
    ages = sorted({0, 50, 90} | {a + d for a in limits for d in (-1, -0.5, 0, 0.5) if a + d >= 0})
    therapies = sorted(rulebook.therapies)
    products = sorted(rulebook.products)
    codes = sorted({icd10.normalise(c) for dx in rulebook.diagnoses.values() for c in dx.codes})

    def maybe(values, missing=0.25):
        return None if rng.random() < missing else rng.choice(values)

    def therapy_set():
        return None if rng.random() < 0.3 else frozenset(rng.sample(therapies, rng.randrange(0, 3)))

    cases = []
    for code in codes:
        below = [icd10.normalise(c) for c in cm.get_descendants(code) if icd10.is_valid(c)]
        for target in [code] + ([rng.choice(below)] if below else []):
            for _ in range(per_code):
                pregnant = maybe([True, False], 0.5)
                sex = maybe(list(SEXES))
                if pregnant and sex == "male":
                    sex = "female"
                cases.append(
                    (
                        target,
                        Facts(
                            age_years=maybe(ages, 0.2),
                            sex=sex,
                            pregnant=pregnant,
                            severity=maybe(list(SEVERITIES), 0.5),
                            failed=therapy_set(),
                            concurrent=therapy_set(),
                            product=maybe(products, 0.3),
                        ),
                    )
                )
    # Label alternatives (one per label age limit) and their missing-age variants fire only for
    # one product group at the right age: sweep product x age on the codes whose rules test a product.
    product_codes = sorted(
        {
            _code_test(name, condition)
            for rules in generated["conditions"]
            for name, condition in rules
            if any(field == "product" for term in dnf(condition) for field, _, _ in term)
        }
    )
    for code in product_codes:
        for product in [None] + products:
            for age in [None] + ages:
                cases.append(
                    (
                        code,
                        Facts(
                            age_years=age,
                            product=product,
                            sex=maybe(list(SEXES)),
                            failed=therapy_set(),
                            concurrent=therapy_set(),
                        ),
                    )
                )
    cases += _newer_fact_cases(rulebook, generated, rng, per_code * 4)
    return cases


NEWER_FIELDS = re.compile(r"^(confirmed_by|specialty|course|phases__.+|obs__.+|failed_weeks__.+)$")


def _newer_fact_cases(rulebook, generated, rng: random.Random, per_code: int) -> list[tuple[str, object]]:
    """Cases on every code whose rules test the facts added to the rule language after the first
    translation (confirmed_by, specialty, course, phases, observations within windows, weeks a
    failed therapy was tried): values on and around every threshold and window, each sometimes missing."""
    from service.rulebook.facts import Facts, Observation
    from service.rulebook.model import COURSES, SEVERITIES, SEXES

    limits: dict[str, set] = {}
    codes = set()
    for rules in generated["conditions"]:
        for name, condition in rules:
            for term in dnf(condition):
                for field, op, value in term:
                    if NEWER_FIELDS.match(field):
                        codes.add(_code_test(name, condition))
                        if op != "in":
                            limits.setdefault(field, set()).add(value)

    def around(values):
        numbers = sorted({v + d for v in values if isinstance(v, (int, float)) for d in (-1, -0.01, 0, 0.01, 1)})
        return [v for v in numbers if v >= 0] or [0]

    observed = {}  # measure -> (values to try, days ago to try)
    for field, values in limits.items():
        if field.startswith("obs__"):
            measure, _, window = field[len("obs__") :].partition("__")
            tried, days = observed.setdefault(measure, (set(), {0, 400}))
            tried.update(around(values))
            if window:
                days.update({int(window) - 1, int(window), int(window) + 1})
    weeks = {f[len("failed_weeks__") :]: around(v) for f, v in limits.items() if f.startswith("failed_weeks__")}
    specialties = sorted(rulebook.specialties)
    phases = sorted(rulebook.phases)
    therapies = sorted(rulebook.therapies)

    def maybe(values, missing=0.25):
        return None if rng.random() < missing or not values else rng.choice(values)

    cases = []
    for code in sorted(codes):
        for _ in range(per_code):
            failed = None if rng.random() < 0.3 else set(rng.sample(therapies, rng.randrange(0, 3)))
            tried = ()
            if failed is not None:
                chosen = [t for t in weeks if rng.random() < 0.6]
                failed |= set(chosen)
                tried = tuple(sorted((t, int(rng.choice(weeks[t]))) for t in chosen if rng.random() < 0.8))
            observations = tuple(
                Observation(measure, float(rng.choice(sorted(values))), rng.choice(sorted(days)))
                for measure, (values, days) in sorted(observed.items())
                if rng.random() < 0.7
            )
            cases.append(
                (
                    code,
                    Facts(
                        age_years=maybe([0.5, 2, 17, 18, 45, 70], 0.2),
                        sex=maybe(list(SEXES)),
                        severity=maybe(list(SEVERITIES), 0.5),
                        failed=None if failed is None else frozenset(failed),
                        failed_weeks=tried,
                        concurrent=None
                        if rng.random() < 0.3
                        else frozenset(rng.sample(therapies, rng.randrange(0, 2))),
                        observations=observations,
                        confirmed_by=maybe(specialties, 0.3),
                        specialty=maybe(specialties, 0.3),
                        phases=None if rng.random() < 0.3 else frozenset(rng.sample(phases, rng.randrange(0, 3))),
                        course=maybe(list(COURSES), 0.3),
                    ),
                )
            )
    return cases


def check_targeted(formulary, peers: Peers, cases) -> tuple[dict, list[dict]]:
    counts, problems, fired = {"cases": len(cases)}, [], set()
    verdicts = formulary.engine._compiled.verdicts
    for code, facts in cases:
        answers = {name: fn(code, facts) for name, fn in peers.answers.items()}
        if len(set(answers.values())) != 1:
            problems.append(
                {
                    "code": code,
                    "facts": repr(facts),
                    "message": peers.compiled.message(0, code, facts),
                    "answers": answers,
                }
            )
        ours = answers["ours"]
        key = f"fired_{verdicts[ours].variant}" if ours else "no_match"
        counts[key] = counts.get(key, 0) + 1
        if ours:
            fired.add(ours)
    counts["distinct_compiled_rules_fired"] = len(fired)
    return counts, problems


# --------------------------------------------------------------------------- timing

LABELS = {
    "full": "ours: Formulary.decide(payload)",
    "engine": "ours: engine.evaluate(code, facts)",
    "zen_ruleset": "ZEN engine.evaluate(key), by ruleset",
    "zen_category": "ZEN engine.evaluate(key), by category",
    "zen_decision": "ZEN decision.evaluate, by ruleset *",
    "rego_ruleset": "Regorus eval_rule, by ruleset",
    "rego_category": "Regorus eval_rule, by category",
    "rvm_ruleset": "Regorus RVM, by ruleset",
    "rvm_category": "Regorus RVM, by category",
    "rvm_category_text": "Regorus RVM, by category, our event text",
    "message": "message dict build (the peers' floor)",
}
ROWS = list(LABELS)
PEER_ROWS = [k for k in ROWS if k not in ("full", "engine", "message")]


def time_run(formulary, peers: Peers, items: list[Item]) -> dict[str, tuple[list[int], list[int]]]:
    """(wall, thread CPU) nanoseconds per call, interleaved per request, the order rotated from
    one request to the next. CPU time leaves out the time the OS gave to other processes."""
    decide = formulary.decide
    engine_fns = list(peers.timed.items())
    samples = {"full": ([], [])} | {name: ([], []) for name, _ in engine_fns}
    clock, cpu = time.perf_counter_ns, time.thread_time_ns
    gc.collect()
    gc.disable()
    try:
        for i, item in enumerate(items):
            calls = [("full", None)] + (engine_fns if item.routed else [])
            k = i % len(calls)
            for name, fn in calls[k:] + calls[:k]:
                if fn is None:
                    c0 = cpu()
                    t0 = clock()
                    decide(item.payload)
                    t1 = clock()
                    c1 = cpu()
                else:
                    code, facts = item.code, item.facts
                    c0 = cpu()
                    t0 = clock()
                    fn(code, facts)
                    t1 = clock()
                    c1 = cpu()
                wall, cpus = samples[name]
                wall.append(t1 - t0)
                cpus.append(c1 - c0)
    finally:
        gc.enable()
    return samples


def time_separately(fn, items: list[Item]) -> tuple[list[int], list[int]]:
    """(wall, thread CPU) nanoseconds per call of one engine-level callable, on its own, over the routed requests."""
    wall, cpus = [], []
    clock, cpu = time.perf_counter_ns, time.thread_time_ns
    gc.collect()
    gc.disable()
    try:
        for item in items:
            if item.routed:
                code, facts = item.code, item.facts
                c0 = cpu()
                t0 = clock()
                fn(code, facts)
                t1 = clock()
                c1 = cpu()
                wall.append(t1 - t0)
                cpus.append(c1 - c0)
    finally:
        gc.enable()
    return wall, cpus


def summarise_pair(pair) -> dict:
    wall, cpus = pair
    out = summarise(wall)
    ordered = sorted(cpus)
    out["cpu_median_us"] = statistics.median(ordered) / 1000
    out["cpu_p99_us"] = ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] / 1000
    out["over_1ms_wall"] = sum(t > 1_000_000 for t in wall)
    return out


def summarise(ns: list[int]) -> dict:
    ordered = sorted(ns)
    n = len(ordered)
    total = sum(ordered)
    return {
        "n": n,
        "median_us": statistics.median(ordered) / 1000,
        "p99_us": ordered[max(0, math.ceil(0.99 * n) - 1)] / 1000,
        "mean_us": total / n / 1000,
        "decisions_per_s": n / (total / 1e9),
    }


# --------------------------------------------------------------------------- load times


def measure_loads() -> dict:
    """Our own load, step by step (a second, throw-away instance; the timed one is separate)."""
    from service.rulebook.compiler import compile_rulebook
    from service.rulebook.engine import Engine
    from service.rulebook.lint import lint_rulebook
    from service.rulebook.reader import load_rulebook
    from service.rulebook.shipped import default_rulebook_path

    t0 = time.perf_counter()
    rulebook = load_rulebook(default_rulebook_path())
    t1 = time.perf_counter()
    assert not lint_rulebook(rulebook)
    t2 = time.perf_counter()
    compiled = compile_rulebook(rulebook)
    t3 = time.perf_counter()
    engine = Engine(compiled)
    t4 = time.perf_counter()
    engine.close()
    return {"load_yaml_s": t1 - t0, "lint_s": t2 - t1, "compile_s": t3 - t2, "engine_load_s": t4 - t3}


def first_calls(peers: Peers, item: Item) -> dict:
    """The very first decision of each engine after loading (lazy set-up shows here)."""
    out = {}
    for name, fn in peers.first.items():
        t0 = time.perf_counter()
        fn(item.code, item.facts)
        out[name] = time.perf_counter() - t0
    return out


# --------------------------------------------------------------------------- main


def _versions() -> dict:
    from importlib.metadata import version

    return {name: version(name) for name in ("zen-engine", "gordon-to-regorus", "durable-rules")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="requests per run (cold: all distinct)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--setup-only", action="store_true", help="create or refresh bench/.venv-peers, then stop")
    args = parser.parse_args()
    ensure_peer_venv(sys.argv[1:])
    if args.setup_only:
        print(f"{VENV.relative_to(ROOT)} is ready")
        return
    sys.path.insert(0, str(ROOT))
    from service.decide.formulary import Formulary

    started = time.perf_counter()
    formulary = Formulary.load()
    ours_total = time.perf_counter() - started
    ours_steps = measure_loads()
    compiled = formulary.engine._compiled

    generated = generate(formulary)
    peers = Peers(formulary, generated)

    t0 = time.perf_counter()
    formulary.terminology.warm()  # both text indexes, as a server warms them
    terminology_warm = time.perf_counter() - t0

    pool = RequestPool(formulary, args.seed)
    cold = prepare(formulary, build_requests(formulary, pool, args.count, args.seed))
    rng = random.Random(args.seed + 7)
    warm_distinct = rng.sample(cold, WARM_DISTINCT)
    warm = [warm_distinct[i % WARM_DISTINCT] for i in range(args.count)]
    warmup = prepare(formulary, build_requests(formulary, pool, 300, args.seed + 99))
    first = first_calls(peers, next(i for i in warmup if i.routed))

    counts, problems = check_agreement(formulary, peers, cold + warmup)
    print(
        f"agreement: {counts['requests']:,} requests; {counts['engine_match']:,} matched a rule, "
        f"{counts['engine_no_match']:,} matched none ({counts['unrouted']:,} of them in a category no rule touches), "
        f"{counts['no_code']:,} had no usable diagnosis code; fired: {counts.get('fired_match', 0):,} match and "
        f"{counts.get('fired_unknown', 0):,} missing-fact variants, {counts['distinct_compiled_rules_fired']} of "
        f"{len(compiled.verdicts)} compiled rules; disagreements: {len(problems)}"
    )
    targeted, targeted_problems = check_targeted(formulary, peers, targeted_cases(formulary, generated, args.seed))
    print(
        f"agreement, targeted (engine level, not timed): {targeted['cases']:,} cases on every rule code and a code "
        f"below it; fired: {targeted.get('fired_match', 0):,} match, {targeted.get('fired_unknown', 0):,} missing-fact "
        f"variants, {targeted.get('no_match', 0):,} no match; {targeted['distinct_compiled_rules_fired']} of "
        f"{len(compiled.verdicts)} compiled rules; disagreements: {len(targeted_problems)}"
    )
    if problems or targeted_problems:
        for p in (problems + targeted_problems)[:5]:
            print("DISAGREEMENT:", json.dumps(p, default=str))
        sys.exit(1)

    load_before = os.getloadavg()
    time_run(formulary, peers, warmup)  # warm-up pass, not reported
    results = {}
    for run, items in (("cold", cold), ("warm", warm)):
        # Cold: nothing remembered (our answer cache emptied and off, the text cache emptied);
        # warm: the caches on, as a server runs them.
        # The full path's own memory of decisions goes with the engine's answers; the per-code
        # and per-text diagnosis look-ups are emptied and stay on (a server sees a few hundred codes).
        formulary.engine._cache.clear()
        formulary.engine._cache_size = 0 if run == "cold" else 4096
        formulary._decisions.clear()
        formulary.cache_size = 0 if run == "cold" else 4096
        formulary.terminology.resolve_text.cache_clear()
        formulary.terminology._by_code.cache_clear()
        results[run] = {k: summarise_pair(v) for k, v in time_run(formulary, peers, items).items()}
    for name, fn in peers.separate.items():
        time_separately(fn, warmup)
        for run, items in (("cold", cold), ("warm", warm)):
            results[run][name] = summarise_pair(time_separately(fn, items))
    load_after = os.getloadavg()

    versions = _versions()
    kinds = {"code": sum(i.kind == "code" for i in cold), "text": sum(i.kind == "text" for i in cold)}
    rows = generated["zen_rows"]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, CPython {platform.python_version()}; "
        f"zen-engine {versions['zen-engine']}, gordon-to-regorus {versions['gordon-to-regorus']}, "
        f"durable-rules {versions['durable-rules']}"
    )
    print(
        f"rulebook {generated['rulebook']['version']}: {len(formulary.rulebook.rules)} rules -> "
        f"{len(compiled.verdicts)} compiled rules in {len(compiled.rulesets)} rulesets / {len(compiled.routes)} categories; "
        f"ZEN {sum(rows['ruleset'].values())} table rows (largest table: {max(rows['ruleset'].values())} rows by ruleset, "
        f"{max(rows['category'].values())} by category)"
    )
    print(
        f"cold: {args.count:,} distinct requests ({kinds['code']:,} by code, {kinds['text']:,} by text), "
        f"{results['cold']['engine']['n']:,} reach an engine; warm: {WARM_DISTINCT} requests repeated to "
        f"{args.count:,} ({results['warm']['engine']['n']:,} engine calls); calls interleaved (but * : its own pass "
        f"after them); GC off while timing"
    )
    print(
        f"load average (1 min) before/after timing: {load_before[0]:.2f} / {load_after[0]:.2f} on {os.cpu_count()} "
        f"cores: other work on the machine shifts absolute times; the interleaved ratios hold up better\n"
    )

    print(f"{'':40} {'cold':>35}   {'warm':>35}")
    print(
        f"{'':40} {'median us':>10} {'p99 us':>10} {'decisions/s':>13}   {'median us':>10} {'p99 us':>10} {'decisions/s':>13}"
    )
    for key in ROWS:
        c, w = results["cold"][key], results["warm"][key]
        print(
            f"{LABELS[key]:40} {c['median_us']:10.1f} {c['p99_us']:10.1f} {c['decisions_per_s']:13,.0f}   "
            f"{w['median_us']:10.1f} {w['p99_us']:10.1f} {w['decisions_per_s']:13,.0f}"
        )
    print("(wall clock; decisions/s = calls / their total wall time on one thread, so it reflects the mean)\n")
    print("the same calls in thread CPU time (leaves out time the OS gave to other processes; * also leaves out its")
    print("own helper threads), and how many wall-clock samples exceeded 1 ms:")
    print(f"{'':40} {'cold':>31}   {'warm':>31}")
    print(f"{'':40} {'median us':>10} {'p99 us':>10} {'>1 ms':>9}   {'median us':>10} {'p99 us':>10} {'>1 ms':>9}")
    for key in ROWS:
        c, w = results["cold"][key], results["warm"][key]
        print(
            f"{LABELS[key]:40} {c['cpu_median_us']:10.1f} {c['cpu_p99_us']:10.1f} {c['over_1ms_wall']:9,}   "
            f"{w['cpu_median_us']:10.1f} {w['cpu_p99_us']:10.1f} {w['over_1ms_wall']:9,}"
        )
    print()

    ratios = {}
    for run in ("cold", "warm"):
        ours = results[run]["engine"]
        ratios[run] = {
            peer: {
                "median": results[run][peer]["median_us"] / ours["median_us"],
                "p99": results[run][peer]["p99_us"] / ours["p99_us"],
                "throughput": ours["decisions_per_s"] / results[run][peer]["decisions_per_s"],
                "cpu_median": results[run][peer]["cpu_median_us"] / ours["cpu_median_us"],
                "cpu_p99": results[run][peer]["cpu_p99_us"] / ours["cpu_p99_us"],
            }
            for peer in PEER_ROWS
        }
    print("peer time / our engine.evaluate time (above 1: ours is faster; below 1: the peer is faster)")
    print(
        f"{'':40} {'cold: median':>12} {'p99':>6} {'mean':>6} {'cpu p99':>8}   {'warm: median':>12} {'p99':>6} {'mean':>6} {'cpu p99':>8}"
    )
    for peer in PEER_ROWS:
        c, w = ratios["cold"][peer], ratios["warm"][peer]
        print(
            f"{LABELS[peer]:40} {c['median']:12.2f} {c['p99']:6.2f} {c['throughput']:6.2f} {c['cpu_p99']:8.2f}   "
            f"{w['median']:12.2f} {w['p99']:6.2f} {w['throughput']:6.2f} {w['cpu_p99']:8.2f}"
        )

    print("\nload/compile, ms (first decision after load in brackets):")
    print(
        f"  ours: Formulary.load {ours_total * 1e3:.1f} = YAML {ours_steps['load_yaml_s'] * 1e3:.1f} + lint "
        f"{ours_steps['lint_s'] * 1e3:.1f} + compile {ours_steps['compile_s'] * 1e3:.1f} + durable-rules load "
        f"{ours_steps['engine_load_s'] * 1e3:.1f} (+ other) [{first['engine'] * 1e3:.2f}]"
    )
    print(f"  translating our compiled rules to ZEN and Rego, both layouts: {generated['translate_seconds'] * 1e3:.1f}")
    for key in PEER_ROWS:
        print(f"  {LABELS[key]:40} load {peers.load[key] * 1e3:7.1f} [{first[key] * 1e3:.2f}]")
    print(f"  terminology text indexes (full path only, built once per process): {terminology_warm * 1e3:.0f}")

    report = {
        "command": " ".join(["bench/.venv-peers/bin/python", "bench/peers.py"] + sys.argv[1:]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "arch": platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_before_after": [load_before, load_after],
        },
        "versions": versions,
        "rulebook": generated["rulebook"],
        "sizes": {
            "rules": len(formulary.rulebook.rules),
            "compiled_rules": len(compiled.verdicts),
            "rulesets": len(compiled.rulesets),
            "categories": len(compiled.routes),
            "zen_rows": {k: sum(v.values()) for k, v in rows.items()},
            "zen_largest_table": {k: max(v.values()) for k, v in rows.items()},
        },
        "requests": {
            "count": args.count,
            "seed": args.seed,
            "warm_distinct": WARM_DISTINCT,
            **kinds,
            "agreement": counts,
            "agreement_targeted": targeted,
            "disagreements": len(problems) + len(targeted_problems),
        },
        "labels": LABELS,
        "timings_us": results,
        "ratios_peer_over_ours_engine": ratios,
        "loads_s": {
            "ours": {"Formulary.load": ours_total, **ours_steps, "first_decision": first["engine"]},
            "translate_both_layouts": generated["translate_seconds"],
            **{k: {"load": peers.load[k], "first_decision": first[k]} for k in PEER_ROWS},
            "terminology_indexes": terminology_warm,
        },
    }
    (PEERS / "last-run.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {(PEERS / 'last-run.json').relative_to(ROOT)} and {GENERATED.relative_to(ROOT)}/")
    formulary.close()


if __name__ == "__main__":
    main()
