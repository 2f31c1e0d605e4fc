"""Diagnosis terminology: start-up cost and per-request cost.

    .venv/bin/python bench/terminology.py [--repeat 200]

Start-up, once per process: importing the ICD-10-CM code set, building the text index over
every description and inclusion term, and the rulebook's synonym index. Per request (median and
p99 microseconds): a code, an exact text (a rulebook synonym and an ICD-10-CM description), and
a misspelt text matched approximately over the whole code set; "cold" clears the text cache
before every call, "warm" is the same text asked again.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

started = time.perf_counter()
import simple_icd_10_cm  # noqa: E402,F401  (the code set loads at import)

code_set_seconds = time.perf_counter() - started
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.decide.terminology import Terminology, icd_text_index  # noqa: E402
from service.rulebook.reader import load_rulebook  # noqa: E402
from service.rulebook.shipped import default_rulebook_path  # noqa: E402

KINDS = {
    "code": [("G61.0", None), ("m3130", None), ("D69.3", None), ("T86.11", None)],
    "exact text": [
        (None, "GBS"),
        (None, "Wegener's granulomatosis"),
        (None, "Essential (primary) hypertension"),
        (None, "Plaque psoriasis"),
    ],
    "misspelt text": [
        (None, "guillian bare syndrom"),
        (None, "kawasaky disease"),
        (None, "multiple sclerosys"),
        (None, "bullous pemphigoyd"),
        (None, "chronic fatigue"),
        (None, "asdf qwerty"),
    ],
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    t0 = time.perf_counter()
    index = icd_text_index()
    t1 = time.perf_counter()
    terminology = Terminology(load_rulebook(default_rulebook_path()))
    terminology.warm()
    t2 = time.perf_counter()
    print(
        f"start-up: ICD-10-CM code set import {code_set_seconds * 1000:.0f} ms; text index over "
        f"{len(index.texts):,} texts opened {(t1 - t0) * 1000:.0f} ms (its parts are read when first used); "
        f"the rulebook's terminology built and warmed, reading every part {(t2 - t1) * 1000:.0f} ms"
    )
    for kind, inputs in KINDS.items():
        for warmth in ("cold", "warm"):
            timings = []
            for _ in range(args.repeat):
                for code, text in inputs:
                    if warmth == "cold":
                        terminology.resolve_text.cache_clear()
                    start = time.perf_counter()
                    terminology.resolve(code, text)
                    timings.append(time.perf_counter() - start)
            timings.sort()
            print(
                f"{kind:<14} {warmth}  median {statistics.median(timings) * 1e6:9.1f} us   "
                f"p99 {timings[int(len(timings) * 0.99)] * 1e6:9.1f} us   ({len(inputs)} inputs x {args.repeat})"
            )


if __name__ == "__main__":
    main()
