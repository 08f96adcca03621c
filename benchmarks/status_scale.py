"""Status at scale: a ledger of 100,000 attempts over 10,000 jobs; `status` and `run` start-up.

    python benchmarks/status_scale.py [--jobs 10000] [--attempts-per-job 10] [--repeat 5]

Generates a study of JOBS/4 dose folders and fills its ledger through the ledger's own API, as
ten runs would: every job gets one attempt per run, the first nine runs a mix of failures and
successes (a later success supersedes an earlier one), the last run a success with the job's
current fingerprint and 12 metric rows. Then times whole commands (Python start-up included):
  status          `python -m runner status --ledger L`
  status --json   `python -m runner status --ledger L --json`
  run start-up    `python -m runner run ...` on that ledger with every job already succeeded:
                  lock, plan, reconcile, sync of the plan, selection, manifest; nothing launched
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import REPO, machine, make_tree, measure, median, runner_cmd, runner_env  # noqa: E402
from runner.app import planned  # noqa: E402
from runner.config import load  # noqa: E402
from runner.jobs import AttemptStart, FailureClass, Outcome  # noqa: E402
from runner.ledger import Ledger  # noqa: E402
from runner.ptycho import STUDY  # noqa: E402
from runner.results import MetricRow  # noqa: E402

FLAGS = ["--compare-cmd", "true", "--success", "exit-code", "--gpus", "none", "--max-parallel", "4"]
METRICS = tuple(MetricRow(model, metric, 0.5, 0.4, None) for model in ("PtychoPINN", "Baseline", "PtyChi")
                for metric in ("mae", "mse", "psnr", "ms_ssim"))


async def fill(ledger_path: Path, study: Path, runs: int, seed: int) -> None:
    _, settings = load({"study_root": str(study), "compare_cmd": "true", "success": "exit-code", "gpus": "none"},
                       STUDY, Path.cwd())
    jobs = planned(STUDY, settings)
    rng = random.Random(seed)
    ledger = await Ledger.open(ledger_path, STUDY.views)
    try:
        for run in range(1, runs + 1):
            run_id = await ledger.begin_run("bench", "bench", 1, ["runner", "run"], "bench", None, [],
                                            STUDY.describe(settings))
            rows = await ledger.sync_jobs(jobs, run_id, STUDY.kinds)
            last = run == runs

            async def one(job):
                job_id = rows[job.key].job_id
                attempt = await ledger.start_attempt(
                    AttemptStart(job_id, job.key, run_id, job.argv, job.fingerprint, "cpu0", "", None,
                                 f"{run}-{job_id}", "local"),
                    lambda n, j=job: (j.output_dir / f"logs/attempt-{n}.stdout.log",
                                      j.output_dir / f"logs/attempt-{n}.stderr.log"))
                attempt_id = attempt.attempt_id
                ok = last or rng.random() < 0.7
                outcome = (Outcome(True, metrics=METRICS if last else (), exit_code=0) if ok else
                           Outcome(False, exit_code=1, failure_class=FailureClass.EXIT_CODE, detail="exit code 1"))
                await ledger.finish_attempt(attempt_id, job_id, outcome, round(rng.uniform(5, 600), 3))
            for start in range(0, len(jobs), 500):
                await asyncio.gather(*(one(job) for job in jobs[start:start + 500]))
            await ledger.end_run(run_id, "completed")
    finally:
        await ledger.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--attempts-per-job", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="runner-status-"))
    try:
        started = time.perf_counter()
        study = make_tree(work / "study", list(range(1000, 1000 + args.jobs // 4)))
        ledger = study / "analysis" / "ledger.db"
        ledger.parent.mkdir()
        asyncio.run(fill(ledger, study, args.attempts_per_job, args.seed))
        print(f"built a ledger of {args.jobs * args.attempts_per_job} attempts over {args.jobs} jobs "
              f"({ledger.stat().st_size / 2**20:.0f} MB) in {time.perf_counter() - started:.0f} s", flush=True)
        env = runner_env()
        timings = {}
        for name, argv in [("status", runner_cmd("status", "--ledger", str(ledger))),
                           ("status --json", runner_cmd("status", "--ledger", str(ledger), "--json")),
                           ("run start-up", runner_cmd("run", "--study-root", str(study), *FLAGS))]:
            walls = []
            for _ in range(args.repeat):
                result = measure(argv, env=env, cwd=REPO, stdout_to=work / "out.txt")
                if result.returncode != 0:
                    print(f"{name} exited {result.returncode}")
                    return 1
                walls.append(result.wall_s)
            timings[name] = walls
        text = (work / "out.txt").read_text()
        assert f"{args.jobs} succeeded" in text, text[-500:]  # the run found nothing to do
        python = median([measure([sys.executable, "-c", "pass"]).wall_s for _ in range(args.repeat)])
        print(f"\n{args.jobs} jobs, {args.jobs * args.attempts_per_job} attempts, {machine()}; "
              f"median (min) of {args.repeat} whole commands")
        for name, target in [("status", 0.150), ("status --json", 0.150), ("run start-up", 1.0)]:
            walls = timings[name]
            print(f"  {name:14s} {median(walls) * 1000:6.0f} ms ({min(walls) * 1000:.0f})  "
                  f"(target < {target * 1000:.0f} ms)")
        print(f"  python -c pass {python * 1000:6.0f} ms  (interpreter start-up alone)")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
