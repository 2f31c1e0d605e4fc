"""Replay speed: recorded decisions decided again on a candidate rulebook (formulary replay).

    .venv/bin/python bench/replay.py [--records 100000]

Builds a valid signed chain of decision records directly in a fresh SQLite database (as
bench/audit_scale.py does, for set-up speed only), then times service.workflow.replay.replay on
the shipped rulebook: reading the records a batch at a time, each request decided as of its day.
The issue's goal: 100,000 recorded decisions in under 10 s.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from audit_scale import build_chain  # noqa: E402

from service.decide.formulary import Formulary  # noqa: E402
from service.rulebook.shipped import SHIPPED_RULEBOOK  # noqa: E402
from service.web.app import create_app  # noqa: E402
from service.workflow import replay, usage  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        app = create_app({"INSTANCE_PATH": folder, "WARM": False})
        started = time.perf_counter()
        build_chain(app, args.records)
        print(f"build a signed chain of {args.records:,} decision records   {time.perf_counter() - started:8.1f} s")
        candidate = Formulary.load(SHIPPED_RULEBOOK)
        candidate.terminology.warm()
        started = time.perf_counter()
        report = replay.replay(app.extensions["instance"], candidate, usage.Window())
        elapsed = time.perf_counter() - started
        print(
            f"replay {report['replayed']:,} decisions on {candidate.rulebook.version}"
            f"{'':<14} {elapsed:8.1f} s  ({report['replayed'] / elapsed:,.0f} a second; "
            f"{report['changed_total']:,} would change)"
        )
        candidate.close()
        app.extensions["active_rulebook"].close()


if __name__ == "__main__":
    main()
