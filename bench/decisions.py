"""In-process decision cost on the shipped rulebook: our full path and engine vs durable-rules itself.

    .venv/bin/python bench/decisions.py [--count 10000]

Prints median and p99 microseconds per decision for:
- full:   Formulary.decide(payload): validation, code lookup, facts, engine (answer cache on, as
          served), decision object;
- engine: Engine.evaluate(code, facts) with the answer cache off: every request reaches durable-rules;
- raw:    durable-rules' C calls alone (assert_event, start_action_for_state,
          complete_and_start_action) on the event text our engine posts: the floor under `engine`;
- host:   durable-rules' Python API, Host.post of the full message (what service/engine.py
          called until it drove the C extension directly), with a no-op action;
- dict:   a plain-Python dict lookup of a precomputed answer (the floor).
The five run interleaved over the same requests, so machine noise hits them alike.
"""

import argparse
import itertools
import platform
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import durable_rules_engine  # noqa: E402
from durable.engine import Host, MessageNotHandledException  # noqa: E402

from service.decide.formulary import Formulary  # noqa: E402
from service.decide.request import parse_request  # noqa: E402
from service.rulebook.engine import _ENGINE_LOCK, Engine  # noqa: E402

AGES = [1, 8, 17, 18, 45, 80, None]


def request_mix(formulary: Formulary, count: int, seed: int = 1) -> list[dict]:
    """Requests on every code of the shipped rulebook, with and without patient facts."""
    rng = random.Random(seed)
    codes = [code for dx in formulary.rulebook.diagnoses.values() for code in dx.codes]
    therapies = sorted(formulary.rulebook.therapies)
    requests = []
    for _ in range(count):
        payload = {"diagnosis": {"code": rng.choice(codes)}}
        age = rng.choice(AGES)
        if age is not None:
            payload["patient"] = {"age_years": age, "sex": rng.choice(["female", "male"])}
        if rng.random() < 0.5:
            payload["therapies"] = {
                "concurrent": rng.sample(therapies, rng.randrange(0, 3)),
                "failed": rng.sample(therapies, rng.randrange(0, 2)),
            }
        if rng.random() < 0.3:
            payload["severity"] = rng.choice(["mild", "moderate", "severe"])
        if rng.random() < 0.3:
            payload["product"] = rng.choice(sorted(formulary.rulebook.products))
        requests.append(payload)
    return requests


def summary(name: str, seconds: list[float]) -> str:
    ordered = sorted(seconds)
    median = statistics.median(ordered) * 1e6
    p99 = ordered[int(len(ordered) * 0.99)] * 1e6
    return f"{name:<6} median {median:8.1f} us   p99 {p99:8.1f} us   {1e6 / median:10,.0f} decisions/s (single thread, by median)"


class _QuietHost(Host):
    """durable-rules' Host without its background dispatch timers (docs/DURABLE_RULES.md, hazard 1)."""

    def _run(self):
        pass


def _no_op(c):
    pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    args = parser.parse_args()
    started = time.perf_counter()
    formulary = Formulary.load()
    load_seconds = time.perf_counter() - started
    compiled = formulary.engine._compiled
    engine = Engine(compiled, cache_size=0)
    with _ENGINE_LOCK:
        host = _QuietHost()
        host.register_rulesets(
            {
                name: {rule: dict(body, run=_no_op) for rule, body in rules.items()}
                for name, rules in compiled.rulesets.items()
            }
        )
    payloads = request_mix(formulary, args.count)
    parsed = [parse_request(p, formulary.vocabulary) for p in payloads]
    routed = []
    for request in parsed:
        code = formulary.terminology.resolve(request.code, request.text).plain_code
        routed.append((compiled.routes.get(code[:3]), code, request.facts))
    answers = {i: formulary.decide(p).outcome for i, p in enumerate(payloads)}
    rid = itertools.count(10**9)
    assert_event = durable_rules_engine.assert_event
    start_action = durable_rules_engine.start_action_for_state
    complete_action = durable_rules_engine.complete_and_start_action

    def run_full(payload, ruleset, code, facts):
        formulary.decide(payload)

    def run_engine(payload, ruleset, code, facts):
        engine.evaluate(code, facts)

    def run_raw(payload, ruleset, code, facts):
        with _ENGINE_LOCK:
            handle = engine._handles[ruleset]
            event = compiled.message_json(next(rid), code, facts, engine._plans[ruleset])
            t0 = time.perf_counter()
            status, state = assert_event(handle, event)
            if status == 0:
                start_action(handle, state)
                assert complete_action(handle, state) is None
            return time.perf_counter() - t0

    def run_host(payload, ruleset, code, facts):
        with _ENGINE_LOCK:
            message = compiled.message(next(rid), code, facts)
            t0 = time.perf_counter()
            try:
                host.post(ruleset, message)
            except MessageNotHandledException:
                pass
            return time.perf_counter() - t0

    def run_dict(payload, ruleset, code, facts):
        answers[i]

    # The order rotates from one request to the next, so no path always runs right after another.
    paths = {"full": run_full, "engine": run_engine, "raw": run_raw, "host": run_host, "dict": run_dict}
    needs_engine = {"engine", "raw", "host"}
    samples = {name: [] for name in paths}
    names = list(paths)
    for i, payload in enumerate(payloads):
        ruleset, code, facts = routed[i]
        k = i % len(names)
        for name in names[k:] + names[:k]:
            if ruleset is None and name in needs_engine:
                continue
            t0 = time.perf_counter()
            inner = paths[name](payload, ruleset, code, facts)
            t1 = time.perf_counter()
            samples[name].append(t1 - t0 if inner is None else inner)
    full, ours, raw, stock, floor = (samples[name] for name in names)

    print(
        f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"{len(formulary.rulebook.rules)} rules in {len(compiled.rulesets)} rulesets, "
        f"rulebook load+lint+compile {load_seconds * 1000:.0f} ms"
    )
    print(
        f"{args.count:,} decisions, request mix over {len({m[1] for m in routed})} distinct codes; "
        f"{len(ours):,} reach durable-rules"
    )
    print(summary("full", full))
    print(summary("engine", ours))
    print(summary("raw", raw))
    print(summary("host", stock))
    print(summary("dict", floor))
    with _ENGINE_LOCK:
        for ruleset in host._ruleset_list:
            durable_rules_engine.delete_ruleset(ruleset._handle)
    engine.close()
    formulary.close()


if __name__ == "__main__":
    main()
