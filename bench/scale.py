"""Decision cost and load time as the rulebook grows: the shipped one, then synthetic 1,000 and 10,000 rules.

    .venv/bin/python bench/scale.py [--count 5000]

Synthetic rulebooks put two age-split rules on each of many real ICD-10-CM codes spread over
every category (tests/synthetic.py); requests hit random codes of the rulebook at hand.
"""

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.decide.formulary import Formulary  # noqa: E402
from tests.synthetic import write_synthetic_rulebook  # noqa: E402


def measure(label: str, path, codes: list[str], count: int):
    started = time.perf_counter()
    formulary = Formulary.load(path)
    load = time.perf_counter() - started
    rng = random.Random(5)
    timings = []
    for _ in range(count):
        payload = {"diagnosis": {"code": rng.choice(codes)}, "patient": {"age_years": rng.choice([4, 17, 18, 60])}}
        t0 = time.perf_counter()
        formulary.decide(payload)
        timings.append(time.perf_counter() - t0)
    timings.sort()
    rulesets = len(formulary.engine._compiled.rulesets)
    print(
        f"{label:<22} {len(formulary.rulebook.rules):>6} rules {rulesets:>4} rulesets   load+lint+compile {load:6.2f} s   "
        f"decision median {statistics.median(timings) * 1e6:6.1f} us  p99 {timings[int(count * 0.99)] * 1e6:6.1f} us"
    )
    formulary.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    args = parser.parse_args()
    shipped = Formulary.load()
    codes = [code for dx in shipped.rulebook.diagnoses.values() for code in dx.codes]
    path = shipped.rulebook.path
    shipped.close()
    measure("shipped rulebook", path, codes, args.count)
    with tempfile.TemporaryDirectory() as folder:
        for size in (1_000, 10_000):
            synthetic, synthetic_codes = write_synthetic_rulebook(Path(folder) / str(size), size)
            measure(f"synthetic {size:,}", synthetic, synthetic_codes, args.count)


if __name__ == "__main__":
    main()
