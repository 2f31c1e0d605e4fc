"""The durable-rules 2.0.28 hazards that service/rulebook/ designs out, shown and measured here.

    .venv/bin/python bench/durable_rules_hazards.py [--theft-seconds 15] [--hang-timeout 10] [--count 2000]

Every hazard is numbered as in docs/DURABLE_RULES.md. Each line says what durable-rules did and
whether that is what the document says ("as documented") or not ("DIFFERS": the exit status is
then 1, and the document or the code that relies on it needs another look).

Safety: anything that can crash or freeze a process runs in a child process of this script
(`--child NAME`) with a hard timeout, never in this one:
- the compile hang (more than 512 distinct tests under one node) spins forever holding the GIL,
  so it cannot even be interrupted from inside; the child is killed after --hang-timeout seconds;
- the `$nex` hang (an action loop that never ends) likewise;
- the `delete_state` crash (a segmentation fault) and the 1,024-session cap (1.3 GB of memory);
- the background-thread theft (a stock `Host`, whose timer threads are never stopped).
Takes about 85 s on 2 cores (most of it the theft run and the five killed hangs).
"""

import argparse
import gc
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import threading
import time

import durable_rules_engine
from durable.engine import Host, MessageNotHandledException, MessageObservedException

DIFFERENCES: list[str] = []


class QuietHost(Host):
    """A durable-rules Host without its background dispatch timers (used wherever the timers are not the point)."""

    def _run(self):
        pass


def rss_kb() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() // 1024


def report(number: int, title: str, observed: str, as_documented: bool | None):
    """One hazard's line. as_documented None: nothing to compare (a figure, or not shown this run)."""
    mark = {True: "as documented", False: "DIFFERS", None: "measured"}[as_documented]
    print(f"[{number:>2}] {title}\n     {observed}\n     -> {mark}", flush=True)
    if as_documented is False:
        DIFFERENCES.append(f"[{number}] {title}")


_names = iter(range(10**9))


def recorder(fired: list[str], rule: str):
    """An action that records the name of the rule it belongs to."""
    return lambda c: fired.append(rule)


def fire(rules: dict, message: dict) -> list[str] | None:
    """Post one event to a fresh ruleset of `rules` (name -> {"all": ..., "pri": ...});
    the names of the rules whose actions ran, or None when durable-rules raised MessageNotHandled."""
    name, fired = f"probe{next(_names)}", []
    definition = {rule: dict(spec, run=recorder(fired, rule)) for rule, spec in rules.items()}
    host = QuietHost({name: definition})
    try:
        host.post(name, message)
    except MessageNotHandledException:
        return None
    finally:
        for ruleset in host._ruleset_list:
            durable_rules_engine.delete_ruleset(ruleset._handle)
    return fired


def compiles(definition: dict) -> str:
    """'ok', or durable-rules' error message, for a ruleset definition (no actions)."""
    try:
        handle = durable_rules_engine.create_ruleset(f"probe{next(_names)}", json.dumps(definition))
    except Exception as error:
        return str(error)
    durable_rules_engine.delete_ruleset(handle)
    return "ok"


def child(name: str, *args: str, timeout: float) -> tuple[str, object]:
    """Run `--child name args` in a new interpreter; ("ok", its last JSON line), ("timeout", None)
    or ("signal N" / "exit N", None)."""
    command = [sys.executable, os.path.abspath(__file__), "--child", name, *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", None  # subprocess.run kills the child (SIGKILL) before raising
    if done.returncode < 0:
        return f"signal {-done.returncode}", None
    if done.returncode != 0:
        return f"exit {done.returncode}: {done.stderr.strip()[-300:]}", None
    return "ok", json.loads(done.stdout.strip().splitlines()[-1])


# --- the children: each prints one JSON line last ---------------------------------------------------


def child_theft(seconds: str):
    """A stock Host, one application thread: count posts whose result was taken by a timer thread."""
    ran_on: list[str] = []
    host = Host(
        {"theft": {"a": {"all": [{"m": {"x": 1}}], "run": lambda c: ran_on.append(threading.current_thread().name)}}}
    )
    time.sleep(0.3)  # let the timers start
    threads = threading.active_count()
    posts = stolen = 0
    started = time.perf_counter()
    while time.perf_counter() - started < float(seconds):
        if host.post("theft", {"x": 1}) is None:
            stolen += 1
        posts += 1
    elsewhere = sum(1 for n in ran_on if n != threading.main_thread().name)
    hosts = [Host({f"extra{i}": {"a": {"all": [{"m": {"x": 1}}], "run": lambda c: None}}}) for i in range(10)]
    del hosts
    gc.collect()
    time.sleep(0.5)
    print(
        json.dumps(
            {
                "posts": posts,
                "stolen": stolen,
                "ran_elsewhere": elsewhere,
                "actions": len(ran_on),
                "threads_with_one_host": threads,
                "threads_after_10_more_dropped": threading.active_count(),
            }
        )
    )


def child_sids(rules: str):
    """New session ids on one ruleset until durable-rules refuses one; RSS at that point."""
    count = int(rules)
    definition = {f"r{i}": {"all": [{"m": {"code": f"C{i}"}}], "pri": i, "run": lambda c: None} for i in range(count)}
    host = QuietHost({"sids": definition})
    before = rss_kb()
    started = time.perf_counter()
    for sid in range(1, 5000):
        try:
            host.post("sids", {"sid": str(sid), "code": "C0"})
        except MemoryError:
            seconds = time.perf_counter() - started
            print(
                json.dumps(
                    {
                        "refused_at": sid,
                        "error": "MemoryError",
                        "rss_mb": rss_kb() // 1024,
                        "grew_kb_per_sid": (rss_kb() - before) / (sid - 1),
                        "us_per_new_sid": seconds / (sid - 1) * 1e6,
                    }
                )
            )
            return
    print(json.dumps({"refused_at": None, "rss_mb": rss_kb() // 1024}))


def child_delete_state(kind: str, others: str = "0"):
    """delete_state on a session whose only post matched (kind 'matched') or matched nothing,
    after creating `others` unrelated rulesets (which changes what the freed memory holds)."""
    for i in range(int(others)):
        QuietHost({f"other{i}": {"a": {"all": [{"m": {"x": 1}}], "run": lambda c: None}}})
    host = QuietHost({"del": {"a": {"all": [{"m": {"x": 1}}], "run": lambda c: None}}})
    for sid in map(str, range(200)):
        try:
            host.post("del", {"sid": sid, "x": 1 if kind == "matched" else 2})
        except MessageNotHandledException:
            pass
        host.delete_state("del", sid)
    print(json.dumps({"survived": 200}))


def child_compile(shape: str, count: str):
    """Compile a ruleset whose root (or the node under a shared first test) has `count` distinct tests."""
    n = int(count)
    if shape == "rules":  # n rules, each testing a different code first
        definition = {f"r{i}": {"all": [{"m": {"code": f"C{i}"}}], "pri": i} for i in range(n)}
    elif shape == "or":  # one rule: an $or over n codes
        definition = {"r": {"all": [{"m": {"$or": [{"code": f"C{i}"} for i in range(n)]}}]}}
    elif shape == "two-fields":  # n // 2 + n - n // 2 rules over two different fields
        definition = {f"c{i}": {"all": [{"m": {"code": f"C{i}"}}], "pri": i} for i in range(n - n // 2)}
        definition.update({f"a{i}": {"all": [{"m": {"age": i}}], "pri": i} for i in range(n // 2)})
    else:  # "second": a shared first test, then n distinct second tests
        definition = {f"r{i}": {"all": [{"m": {"$and": [{"x": 1}, {"code": f"C{i}"}]}}], "pri": i} for i in range(n)}
    started = time.perf_counter()
    handle = durable_rules_engine.create_ruleset("hang", json.dumps(definition))
    seconds = time.perf_counter() - started
    durable_rules_engine.delete_ruleset(handle)
    print(json.dumps({"compiled_seconds": seconds}))


NEX = {
    "whole": {"$nex": {"f": 1}},
    "or": {"$or": [{"$nex": {"f": 1}}, {"g": 5}]},
    "and": {"$and": [{"g": 1}, {"$nex": {"f": 1}}]},
}


def child_nex(shape: str):
    """Host.post of an event without `f` to a rule using $nex on `f`."""
    host = QuietHost({"nex": {"r": {"all": [{"m": NEX[shape]}], "run": lambda c: None}}})
    started = time.perf_counter()
    host.post("nex", {"g": 1})
    print(json.dumps({"posted_seconds": time.perf_counter() - started}))


CHILDREN = {
    "theft": child_theft,
    "sids": child_sids,
    "delete_state": child_delete_state,
    "compile": child_compile,
    "nex": child_nex,
}


# --- the hazards, in the order of docs/DURABLE_RULES.md --------------------------------------------


def hazard_theft(seconds: float):
    status, out = child("theft", str(seconds), timeout=seconds + 30)
    if status != "ok":
        report(1, "background dispatch threads take results", f"the child ended with {status}", None)
        return
    observed = (
        f"stock Host, one application thread, {seconds:g} s: {out['posts']:,} posts, {out['stolen']} returned None "
        f"(1 in {out['posts'] // out['stolen']:,})"
        if out["stolen"]
        else f"stock Host, one application thread, {seconds:g} s: {out['posts']:,} posts, no theft in this run"
    )
    observed += (
        f"; {out['ran_elsewhere']} actions ran on a timer thread; threads: {out['threads_with_one_host']} with one "
        f"Host, {out['threads_after_10_more_dropped']} after 10 more Hosts were created and dropped"
    )
    report(1, "background dispatch threads take results", observed, (out["stolen"] > 0) or None)


def hazard_sids():
    figures = []
    ok = True
    for rules in (10, 100):
        status, out = child("sids", str(rules), timeout=120)
        if status != "ok" or out["refused_at"] is None:
            figures.append(f"{rules} rules: {status} {out}")
            ok = False
            continue
        figures.append(
            f"{rules} rules: session {out['refused_at']:,} refused ({out['error']}) at RSS {out['rss_mb']:,} MB, "
            f"{out['grew_kb_per_sid'] / rules:.1f} KB per session per rule, "
            f"{out['us_per_new_sid']:,.0f} us per new session"
        )
        ok = ok and out["refused_at"] == 1025
    report(4, "at most 1,024 live session ids per ruleset", "; ".join(figures), ok)


def hazard_fixed_sid_memory():
    rules = {f"r{i}": {"all": [{"m": {"code": f"C{i}"}}], "pri": i} for i in range(100)}
    handle = durable_rules_engine.create_ruleset("flat", json.dumps(rules))
    texts = [json.dumps({"code": f"C{i}"}) for i in range(100)] + ['{"code":"none"}']

    def post(text):
        status, state = durable_rules_engine.assert_event(handle, text)
        if status == 0:
            durable_rules_engine.start_action_for_state(handle, state)
            assert durable_rules_engine.complete_and_start_action(handle, state) is None

    for text in texts * 50:
        post(text)
    before = rss_kb()
    for i in range(200_000):
        post(texts[i % len(texts)])
    grew = rss_kb() - before
    durable_rules_engine.delete_ruleset(handle)
    report(
        4,
        "one fixed session id: memory stays flat",
        f"200,000 posts (1 in 101 matching nothing) on one session of a 100-rule ruleset: RSS grew {grew} KB",
        grew < 2_000,
    )


def hazard_delete_state():
    matched, _ = child("delete_state", "matched", timeout=30)
    unmatched, _ = child("delete_state", "unmatched", timeout=30)
    after_others, _ = child("delete_state", "unmatched", "5", timeout=30)
    report(
        5,
        "delete_state crashes on a session that only saw unmatched posts",
        f"200 sessions, each deleted after one post: when the post matched, {matched}; when it matched nothing, "
        f"{unmatched} (SIGSEGV is signal 11); the same after 5 other rulesets were created first, {after_others} "
        f"(what it frees is whatever the memory held: undefined behaviour)",
        matched == "ok" and unmatched.startswith("signal"),
    )


def hazard_state():
    def count(c):
        c.s.count = (c.s.count or 0) + 1
        if c.m.boom:
            raise ValueError("boom")

    host = QuietHost({"state": {"a": {"all": [{"m": {"x": 1}}], "run": count}}})
    states = [host.post("state", message) for message in ({"x": 1}, {"x": 1}, {"x": 1, "boom": 1}, {"x": 1})]
    counts = [s.get("count") for s in states]
    kept = ["exception" in s for s in states]
    report(
        6,
        "a fixed session keeps what actions write, and keeps their exceptions",
        f"four posts on one session return count {counts}; an action that raised returned normally, and "
        f"state['exception'] is present after posts {[i + 1 for i, k in enumerate(kept) if k]}",
        counts == [1, 2, 3, 4] and kept == [False, False, True, True],
    )


def hazard_compile_hang(timeout: float):
    results, ok = [], True
    for shape, label in (
        ("rules", "rules testing distinct codes first"),
        ("two-fields", "first tests over two fields"),
        ("second", "distinct tests under one shared first test"),
    ):
        status, out = child("compile", shape, "512", timeout=timeout)
        fine = (
            f"512 {label}: compiled in {out['compiled_seconds'] * 1000:.0f} ms"
            if status == "ok"
            else f"512 {label}: {status}"
        )
        hung, _ = child("compile", shape, "513", timeout=timeout)
        killed = f"still compiling after {timeout:g} s, killed" if hung == "timeout" else hung
        results.append(f"{fine}; 513: {killed}")
        ok = ok and status == "ok" and hung == "timeout"
    report(7, "compiling hangs past 512 distinct tests under one node", "\n     ".join(results), ok)


def hazard_limits():
    def many(n):  # 400 distinct first tests (under the 512 hang), then a shared one
        return {f"r{i}": {"all": [{"m": {"$and": [{"g": i % 400}, {"x": 1}]}}], "pri": i} for i in range(n)}

    def same(n):
        return {f"r{i}": {"all": [{"m": {"x": 1}}], "pri": i} for i in range(n)}

    same_256, same_257 = compiles(same(256)), compiles(same(257))
    or_257 = compiles({f"r{i}": {"all": [{"m": {"$or": [{"x": 1}, {"z": i}]}}], "pri": i} for i in range(257)})
    at, over = compiles(many(4096)), compiles(many(4097))
    same_257_after = compiles(same(257))  # the same check again, after the refused 4,097
    report(
        8,
        "4,096 rules per ruleset; 256 rules ending on one test",
        f"4,096 rules: {at}; 4,097: {over!r}; 256 rules with the same condition: {same_256}; 257: {same_257!r}; "
        f"257 rules sharing one $or branch: {or_257!r}; 257 with the same condition again, after the refused "
        f"4,097: {same_257_after!r}",
        at == "ok" and "106" in over and same_256 == "ok" and "108" in same_257 and "107" in or_257,
    )

    def and_of_ors(n):  # n $and/$or nodes in all: one $and holding n - 1 $or
        return {"$and": [{"$or": [{f"f{i}": 1}, {f"k{i}": 0}]} for i in range(n - 1)]}

    fifteen = compiles({"r": {"all": [{"m": and_of_ors(15)}]}})
    sixteen = compiles({"r": {"all": [{"m": and_of_ors(16)}]}})
    report(
        9,
        "at most 15 $and/$or nodes in one condition",
        f"15 nodes: {fifteen}; 16: {sixteen!r}",
        fifteen == "ok" and "113" in sixteen,
    )


def hazard_reload():
    def rules():
        return {f"r{i}": {"all": [{"m": {"code": f"C{i}"}}], "pri": i, "run": lambda c: None} for i in range(100)}

    host = QuietHost({"once": rules()})
    try:
        host.register_rulesets({"once": rules()})
        twice = "registered twice"
    except Exception as error:
        twice = str(error)
    second = QuietHost({"once": rules()})  # the same name on another Host is accepted
    for h in (host, second):
        for ruleset in h._ruleset_list:
            durable_rules_engine.delete_ruleset(ruleset._handle)

    def cycle(free: bool):
        h = QuietHost({"reload": rules()})
        h.post("reload", {"code": "C1"})
        if free:
            for ruleset in h._ruleset_list:
                durable_rules_engine.delete_state(ruleset._handle, "0")
                durable_rules_engine.delete_ruleset(ruleset._handle)

    grew = {}
    for free in (False, True):
        for _ in range(20):
            cycle(free)
        gc.collect()
        before = rss_kb()
        for _ in range(300):
            cycle(free)
        gc.collect()
        grew[free] = (rss_kb() - before) / 300
    report(
        10,
        "no reload; a dropped Host keeps its native rulesets",
        f"same name twice on one Host: {twice!r}; on a second Host: accepted. RSS per dropped 100-rule Host "
        f"(300 of them, one matching post each): {grew[False]:,.0f} KB kept; {grew[True]:,.1f} KB when its "
        f"session and rulesets are deleted first",
        "already registered" in twice and grew[False] > 100 * grew[True] + 500,
    )


def hazard_first_rule_only():
    both = {"a": {"all": [{"m": {"x": 1}}], "pri": 2}, "b": {"all": [{"m": {"x": 1}}], "pri": 1}}
    posted = fire(both, {"x": 1})
    fired: list[str] = []
    host = QuietHost({"facts": {rule: dict(spec, run=recorder(fired, rule)) for rule, spec in both.items()}})
    host.assert_fact("facts", {"x": 1})
    asserted = list(fired)
    try:
        host.assert_fact("facts", {"x": 1})
        again = "accepted"
    except MessageObservedException:
        again = "MessageObservedException"
    report(
        11,
        "an event fires only the lowest pri; a fact fires every match and stays",
        f"post: {posted}; assert_fact: {asserted}; the same fact again: {again}",
        posted == ["b"] and asserted == ["b", "a"] and again == "MessageObservedException",
    )


def hazard_pri():
    def winner(pri_a, pri_b):
        fired = fire(
            {"a": {"all": [{"m": {"x": 1}}], "pri": pri_a}, "b": {"all": [{"m": {"x": 1}}], "pri": pri_b}}, {"x": 1}
        )
        return fired[0]

    seen = {
        "65536 vs 1": winner(65536, 1),
        "-5 vs 100": winner(-5, 100),
        "2 vs 1.9": winner(2, 1.9),
        "1 vs 1.9": winner(1, 1.9),
    }
    report(
        12,
        "pri is an unsigned 16-bit integer",
        "winner of rule a vs rule b at pri "
        + ", ".join(f"{k}: {v}" for k, v in seen.items())
        + " (65536 is read as 0, -5 as 65531, 1.9 as 1, and a tie goes to the rule defined first)",
        seen == {"65536 vs 1": "a", "-5 vs 100": "b", "2 vs 1.9": "b", "1 vs 1.9": "a"},
    )


def hazard_not_handled():
    host = QuietHost({"nh": {"a": {"all": [{"m": {"x": 1}}], "run": lambda c: None}}})
    try:
        host.post("nh", {"x": 2})
        python_api = "returned"
    except MessageNotHandledException as error:
        python_api = f"MessageNotHandledException({error})"
    handle = host._ruleset_list[0]._handle
    status, _ = durable_rules_engine.assert_event(handle, '{"x":2}')
    durable_rules_engine.delete_ruleset(handle)
    report(
        13,
        "no matching rule is an exception",
        f"Host.post: {python_api}; the C call assert_event: status {status}",
        python_api.startswith("MessageNotHandled") and status == 1,
    )


def hazard_operators():
    no_in = compiles({"r": {"all": [{"m": {"$in": {"f": [1, 2]}}}]}})
    bad = {pattern: compiles({"r": {"all": [{"m": {"$mt": {"f": pattern}}}]}}) for pattern in ("((", "[a", "a**")}
    backslash = fire({"r": {"all": [{"m": {"$mt": {"f": "\\d+"}}}]}}, {"f": "5"})
    percent = fire({"r": {"all": [{"m": {"$mt": {"f": "%d+"}}}]}}, {"f": "5"})
    report(
        14,
        "no $in; terse errors; some bad patterns accepted",
        f"$in: {no_in!r}; malformed patterns: "
        + ", ".join(f"{p!r} {e!r}" for p, e in bad.items())
        + f"; '\\d+' compiles and does not match '5' ({backslash}); '%d+' matches it ({percent})",
        "202" in no_in and all(e != "ok" for e in bad.values()) and backslash is None and percent == ["r"],
    )


def hazard_mt():
    table = {}
    for pattern in ("E11", "E11.*", "E11%..*"):
        table[pattern] = [
            code
            for code in ("E11", "E11.9", "E119")
            if fire({"r": {"all": [{"m": {"$mt": {"code": pattern}}}]}}, {"code": code})
        ]
    report(
        15,
        "$mt must match the whole string and escapes with %",
        "codes matched among E11, E11.9, E119: " + "; ".join(f"{p!r}: {m}" for p, m in table.items()),
        table == {"E11": ["E11"], "E11.*": ["E11", "E11.9", "E119"], "E11%..*": ["E11.9"]},
    )


def hazard_nex(timeout: float):
    results, ok = [], True
    for shape in ("whole", "or", "and"):
        status, out = child("nex", shape, timeout=timeout)
        results.append(
            f"{json.dumps(NEX[shape])}: "
            + (
                f"returned in {out['posted_seconds'] * 1e6:.0f} us"
                if status == "ok"
                else f"{status} (killed after {timeout:g} s)"
                if status == "timeout"
                else status
            )
        )
        ok = ok and (status == "ok") == (shape == "and")
    # Why: the session's own state record has no `f` either, so the rule fires on it again each time
    # the Host writes the state back after an action.
    handle = durable_rules_engine.create_ruleset("nexwhy", json.dumps({"r": {"all": [{"m": NEX["whole"]}]}}))
    _, state = durable_rules_engine.assert_event(handle, '{"g":1}')
    first = durable_rules_engine.start_action_for_state(handle, state)[1]
    durable_rules_engine.complete_and_start_action(handle, state)
    durable_rules_engine.complete_and_start_action(handle, state)
    durable_rules_engine.update_state(handle, '{"sid":"0","id":"sid-0","$s":1}')
    again = durable_rules_engine.start_action_for_state(handle, state)
    durable_rules_engine.delete_ruleset(handle)
    results.append(
        f"the first action fired for the session state itself: {first}; "
        f"after update_state it fires again: {again is not None}"
    )
    report(16, "$nex can loop forever when the field is absent", "\n     ".join(results), ok and again is not None)


def hazard_missing():
    neq = fire({"r": {"all": [{"m": {"$neq": {"sex": "F"}}}]}}, {"age": 3})
    lt = fire({"r": {"all": [{"m": {"$lt": {"age": 18}}}]}}, {"sex": "F"})
    present = fire({"r": {"all": [{"m": {"$neq": {"sex": "F"}}}]}}, {"sex": "M"})
    report(
        17,
        "a missing field never matches, even under $neq",
        f"$neq sex F without sex: {neq}; $lt age 18 without age: {lt}; $neq sex F with sex M: {present}",
        neq is None and lt is None and present == ["r"],
    )


def hazard_coercion():
    def matches(condition, values):
        return [repr(v) for v in values if fire({"r": {"all": [{"m": condition}]}}, {"f": v})]

    true = matches({"f": True}, [True, 1, "true", "1", 0, False, "yes"])
    at_least = matches({"$gte": {"f": 18}}, [18, 5, "5", "18", "abc"])
    exists = matches({"$ex": {"f": 1}}, [None, False, 0, ""])
    report(
        18,
        "values are coerced",
        f"{{f: true}} matched {true}; {{$gte: {{f: 18}}}} matched {at_least}; {{$ex: {{f: 1}}}} matched {exists}",
        true == ["True", "1", "'true'"]
        and at_least == ["18", "'5'", "'18'", "'abc'"]
        and exists == ["None", "False", "0", "''"],
    )
    handle = durable_rules_engine.create_ruleset("exp", json.dumps({"r": {"all": [{"m": {"$lt": {"age": 18}}}]}}))
    try:
        durable_rules_engine.assert_event(handle, '{"age":1e-05}')
        exponent = "accepted"
    except Exception as error:
        exponent = str(error)
    durable_rules_engine.delete_ruleset(handle)
    report(19, "numbers in exponent notation are refused", f"an event with age 1e-05: {exponent!r}", "204" in exponent)


def costs(count: int):
    """Median µs per decision: Host.post on a fixed session, Host.post on a new session deleted after,
    the C calls alone on a fixed session (what service/rulebook/engine.py does), and a dict."""
    print("\nCost per decision (median µs, interleaved, every answer checked):")
    print(
        f"  {'rules':>6} {'Host.post fixed sid':>20} {'Host.post new sid+delete':>25} {'C calls fixed sid':>18} "
        f"{'C calls, no match':>18} {'dict':>6}"
    )
    rows = []
    for size in (10, 100, 500):
        conditions = {
            f"r{i}": {"all": [{"m": {"$and": [{"code": f"C{i}"}, {"$gte": {"age": 18}}]}}], "pri": i}
            for i in range(size)
        }
        fired: list[str] = []

        def with_actions(fired=fired, conditions=conditions):
            return {name: dict(spec, run=recorder(fired, name)) for name, spec in conditions.items()}

        fixed, fresh = QuietHost({"fixed": with_actions()}), QuietHost({"fresh": with_actions()})
        raw = durable_rules_engine.create_ruleset("raw", json.dumps(conditions))
        answers = {f"C{i}": f"r{i}" for i in range(size)}
        rng = random.Random(size)
        times: dict[str, list[float]] = {"fixed": [], "fresh": [], "raw": [], "nomatch": [], "dict": []}
        clock = time.perf_counter
        for sid in range(1, count + 1):
            code = f"C{rng.randrange(size)}"
            message, text, nomatch = (
                {"code": code, "age": 40},
                json.dumps({"code": code, "age": 40}),
                json.dumps({"code": code, "age": 4}),
            )
            fired.clear()
            t0 = clock()
            fixed.post("fixed", message)
            t1 = clock()
            fresh.post("fresh", dict(message, sid=str(sid)))
            fresh.delete_state("fresh", str(sid))
            t2 = clock()
            status, state = durable_rules_engine.assert_event(raw, text)
            started = durable_rules_engine.start_action_for_state(raw, state)
            more = durable_rules_engine.complete_and_start_action(raw, state)
            t3 = clock()
            missed, _ = durable_rules_engine.assert_event(raw, nomatch)
            t4 = clock()
            answer = answers[code]
            t5 = clock()
            if (
                fired != [answers[code]] * 2
                or status != 0
                or more is not None
                or not started[1].startswith(f'{{"{answer}"')
                or missed != 1
            ):
                raise SystemExit(f"wrong decision at {size} rules: {fired} {status} {started} {more} {missed}")
            for key, took in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                times[key].append(took * 1e6)
        medians = {key: statistics.median(values) for key, values in times.items()}
        rows.append((size, medians))
        print(
            f"  {size:>6} {medians['fixed']:>20.1f} {medians['fresh']:>25.1f} {medians['raw']:>18.1f} "
            f"{medians['nomatch']:>18.1f} {medians['dict']:>6.1f}",
            flush=True,
        )
        durable_rules_engine.delete_ruleset(raw)
        for host in (fixed, fresh):
            for ruleset in host._ruleset_list:
                durable_rules_engine.delete_ruleset(ruleset._handle)
    print(f"  ({count:,} decisions per size; no decision was wrong. The dict column includes the clock's own cost.)")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--theft-seconds", type=float, default=15)
    parser.add_argument("--hang-timeout", type=float, default=10)
    parser.add_argument("--count", type=int, default=2000, help="decisions per ruleset size in the cost table")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        CHILDREN[args.child[0]](*args.child[1:])
        return
    started = time.perf_counter()
    from importlib.metadata import version  # here, not at the top: the delete_state child must start small

    print(
        f"durable-rules {version('durable-rules')} on CPython {platform.python_version()}, {platform.machine()}, "
        f"nproc {len(os.sched_getaffinity(0))}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n"
    )
    hazard_theft(args.theft_seconds)
    print("[ 2] the C engine has no locks: not shown here (a crash under threads, not reproducible on demand)")
    print("[ 3] durable.lang.get_host() is an unlocked global: not shown here (a start-up race)")
    hazard_sids()
    hazard_fixed_sid_memory()
    hazard_delete_state()
    hazard_state()
    hazard_compile_hang(args.hang_timeout)
    hazard_limits()
    hazard_reload()
    hazard_first_rule_only()
    hazard_pri()
    hazard_not_handled()
    hazard_operators()
    hazard_mt()
    hazard_nex(args.hang_timeout)
    hazard_missing()
    hazard_coercion()
    print(
        "[20] CPython 3.12 warnings, 3.13 import failure: not shown here (this machine runs "
        f"{platform.python_version()} only)"
    )
    costs(args.count)
    print(f"\n{time.perf_counter() - started:.0f} s in all.")
    if DIFFERENCES:
        print("Behaviour that differs from docs/DURABLE_RULES.md:\n  " + "\n  ".join(DIFFERENCES))
        sys.exit(1)


if __name__ == "__main__":
    main()
