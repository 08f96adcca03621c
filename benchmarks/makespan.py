"""Makespan on GPU slots: 48 jobs of 0.2 to 3 s on 4 fake GPUs, plan order against longest first.

    python benchmarks/makespan.py [--doses 12] [--gpus 4]

Each job runs the tests' fake compare script, which sleeps a per-condition time (evenly spaced
from 0.2 to 3 s, shuffled over the conditions with a fixed seed) and writes a metrics file; the
GPUs are the indices 0..N-1 given to --gpus (no GPU is touched). Three runs on one ledger:
  1. a first run, which learns every job's duration;
  2. `--force --order plan`: first in, first out, in the study's order;
  3. `--force` (longest first, by the durations the ledger holds).
Makespan = last end - first start of the run's attempts. Lower bound = max(sum of the run's
attempt durations / GPUs, longest attempt), from the same run's own durations.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import sys
import tempfile
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import REPO, SPLITS, VIEWS, machine, make_tree, measure, runner_cmd, runner_env  # noqa: E402

FAKE_COMPARE = REPO / "tests" / "fake_compare.py"


def run_figures(ledger: Path, run_id: int, gpus: int) -> tuple[float, float]:
    conn = sqlite3.connect(ledger)
    try:
        rows = conn.execute("SELECT started_at, ended_at, duration_s FROM attempts WHERE run_id = ?",
                            (run_id,)).fetchall()
    finally:
        conn.close()
    start = min(datetime.fromisoformat(r[0]) for r in rows)
    end = max(datetime.fromisoformat(r[1]) for r in rows)
    durations = [r[2] for r in rows]
    return (end - start).total_seconds(), max(sum(durations) / gpus, max(durations))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--doses", type=int, default=12, help="4 jobs per dose (default 12: 48 jobs)")
    parser.add_argument("--gpus", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="runner-makespan-"))
    try:
        doses = [1000 * (d + 1) for d in range(args.doses)]
        study = make_tree(work / "study", doses)
        conditions = [f"dose_{d}/{v}/{s}" for d in doses for v in VIEWS for s in SPLITS]
        n = len(conditions)
        durations = [round(0.2 + 2.8 * i / (n - 1), 3) for i in range(n)]
        random.Random(args.seed).shuffle(durations)
        behaviour = {c: {"sleep": t} for c, t in zip(conditions, durations)}
        env = runner_env(FAKE_COMPARE_BEHAVIOUR=json.dumps(behaviour))
        base = ["run", "--study-root", str(study), "--compare-cmd", f"{sys.executable} {FAKE_COMPARE}",
                "--gpus", ",".join(str(g) for g in range(args.gpus))]
        ledger = study / "analysis" / "ledger.db"
        results = {}
        for run_id, (name, extra) in enumerate([("learning run", ["--order", "plan"]),
                                                ("plan order (FIFO)", ["--force", "--order", "plan"]),
                                                ("longest first", ["--force"])], 1):
            result = measure(runner_cmd(*base, *extra), env=env, cwd=REPO)
            if result.returncode != 0:
                print(f"{name}: runner exited {result.returncode}")
                return 1
            makespan, bound = run_figures(ledger, run_id, args.gpus)
            results[name] = (makespan, bound)
            print(f"{name:18s} makespan {makespan:6.2f} s, lower bound {bound:6.2f} s, "
                  f"ratio {makespan / bound:.3f}", flush=True)
        fifo, lpt = results["plan order (FIFO)"], results["longest first"]
        print(f"\n{n} jobs of {min(durations)}..{max(durations)} s (total {sum(durations):.1f} s) on "
              f"{args.gpus} fake GPUs, {machine()}")
        print(f"  longest first   {lpt[0] / lpt[1]:.3f} x lower bound  (target <= 1.05)")
        print(f"  plan order      {fifo[0] / fifo[1]:.3f} x lower bound  (same benchmark, same durations)")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
