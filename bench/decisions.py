"""In-process decision cost on the shipped rulebook: our full path vs a raw durable-rules post.

    .venv/bin/python bench/decisions.py [--count 10000]

Prints median and p99 microseconds per decision for:
- full:  Formulary.decide(payload): validation, code lookup, facts, engine, decision object;
- raw:   durable-rules Host.post of the same compiled message to the same ruleset, nothing else;
- dict:  a plain-Python dict lookup of a precomputed answer (the floor).
The three run interleaved over the same requests, so machine noise hits them alike.
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

from durable.engine import MessageNotHandledException  # noqa: E402

from service.engine import _ENGINE_LOCK  # noqa: E402
from service.formulary import Formulary  # noqa: E402
from service.request import parse_request  # noqa: E402

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
            payload["therapies"] = {"concurrent": rng.sample(therapies, rng.randrange(0, 3)),
                                    "failed": rng.sample(therapies, rng.randrange(0, 2))}
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    args = parser.parse_args()
    started = time.perf_counter()
    formulary = Formulary.load()
    load_seconds = time.perf_counter() - started
    engine, compiled = formulary.engine, formulary.engine._compiled
    payloads = request_mix(formulary, args.count)
    parsed = [parse_request(p, formulary.vocabulary) for p in payloads]
    raw_messages = []
    for request in parsed:
        code = formulary.terminology.resolve(request.code, request.text).plain_code
        raw_messages.append((compiled.routes.get(code[:3]), code, request.facts))
    answers = {i: formulary.decide(p).outcome for i, p in enumerate(payloads)}
    rid = itertools.count(10**9)

    full, raw, floor = [], [], []
    for i, payload in enumerate(payloads):
        t0 = time.perf_counter()
        formulary.decide(payload)
        t1 = time.perf_counter()
        ruleset, code, facts = raw_messages[i]
        if ruleset is not None:
            with _ENGINE_LOCK:
                message = compiled.message(next(rid), code, facts)
                t2 = time.perf_counter()
                try:
                    engine._host.post(ruleset, message)
                except MessageNotHandledException:
                    pass
                t3 = time.perf_counter()
            engine._fired.clear()
            raw.append(t3 - t2)
        t4 = time.perf_counter()
        answers[i]
        t5 = time.perf_counter()
        full.append(t1 - t0)
        floor.append(t5 - t4)

    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"{len(formulary.rulebook.rules)} rules in {len(compiled.rulesets)} rulesets, "
          f"rulebook load+lint+compile {load_seconds * 1000:.0f} ms")
    print(f"{args.count:,} decisions, request mix over {len({m[1] for m in raw_messages})} distinct codes")
    print(summary("full", full))
    print(summary("raw", raw))
    print(summary("dict", floor))
    formulary.close()


if __name__ == "__main__":
    main()
