"""CLI and worker start-up: wall and CPU time of `formulary` commands and of a worker's first answer.

    .venv/bin/python bench/cli_startup.py [--runs 5] [--before /path/to/a/checkout/of/main]

Each command runs as its own process, `--runs` times, and the median wall and CPU (user + system,
of the process and its children) is printed: with a cold cache (a new empty cache folder each run,
as on the first use after an install or a package upgrade) and with a warm one (the folder the
previous run wrote). `--before` runs the same commands with another checkout's .venv (say main
before this change) in the same run, for the side-by-side figures. The worker's start-up is
create_app() (a worker's import and warm-up: the rulebook, the code set and both text indexes)
and its first answer, GET /healthz, on an instance folder migrated beforehand.
The issue's goals: a code check under 0.5 s wall, a text check under 1 s, lint under 1 s.
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKER = (
    "from service.web.app import create_app; "
    "response = create_app().test_client().get('/healthz'); assert response.status_code == 200, response.data"
)
COMMANDS = [
    ("check --code G61.0 --age 8", ["formulary", "check", "--code", "G61.0", "--age", "8"]),
    ("check --text 'guillain barre' --age 40", ["formulary", "check", "--text", "guillain barre", "--age", "40"]),
    ("check --text 'guilain bare' --age 40 (typo)", ["formulary", "check", "--text", "guilain bare", "--age", "40"]),
    ("lint rules/", ["formulary", "lint", "rules/"]),
    ("worker: create_app() + GET /healthz", ["python", "-c", WORKER]),
]


def run_once(tree: Path, args: list[str], env: dict) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [str(tree / ".venv/bin" / args[0]), *args[1:]], cwd=tree, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed in {tree}:\n{done.stdout}{done.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def median(times: list[tuple[float, float]]) -> str:
    return f"{statistics.median(w for w, _ in times):6.2f} s {statistics.median(c for _, c in times):6.2f} s"


def measure(tree: Path, runs: int, scratch: Path) -> dict[str, dict[str, str]]:
    env = {**os.environ, "FORMULARY_INSTANCE_PATH": str(scratch / f"instance-{tree.name}")}
    env.pop("FORMULARY_RULEBOOK", None)
    env.pop("FORMULARY_DATABASE_URL", None)
    env["FORMULARY_RULEBOOK_APPROVALS"] = "0"
    run_once(tree, ["formulary", "tokens", "list"], env)  # the instance created and migrated
    figures: dict[str, dict[str, str]] = {}
    for name, args in COMMANDS:
        cold, warm = [], []
        for run in range(runs):
            folder = scratch / f"cache-{tree.name}-{name.split()[0]}-{run}"
            cold.append(run_once(tree, args, {**env, "FORMULARY_CACHE_DIR": str(folder)}))
            warm.append(run_once(tree, args, {**env, "FORMULARY_CACHE_DIR": str(folder)}))
        figures[name] = {"cold": median(cold), "warm": median(warm)}
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--before", type=Path, help="another checkout with its .venv, measured in the same run")
    options = parser.parse_args()
    trees = [("before", options.before.resolve())] if options.before else []
    trees.append(("this tree", ROOT))
    with tempfile.TemporaryDirectory(prefix="cli-startup-") as scratch:
        results = {label: measure(tree, options.runs, Path(scratch)) for label, tree in trees}
    print(f"CLI and worker start-up, median of {options.runs} runs each; wall and CPU (user + system)")
    print(f"{'command':45} {'tree':10} {'cold cache: wall    CPU':>24} {'warm cache: wall    CPU':>24}")
    for name, _ in COMMANDS:
        for label, _ in trees:
            found = results[label][name]
            print(f"{name:45} {label:10} {found['cold']:>24} {found['warm']:>24}")


if __name__ == "__main__":
    main()
