"""Dispatch overhead: 2000 trivial jobs on 4 slots, the runner against GNU parallel.

    python benchmarks/dispatch.py [--jobs 2000] [--slots 4] [--rounds 3]

Generates a study of JOBS/4 dose folders, then in each round runs, on the same machine:
  runner    `python -m runner run --compare-cmd true --success exit-code --gpus none
             --max-parallel SLOTS` (full ledger, two log files per job), fresh artifact root;
  parallel  the same commands through `parallel -j SLOTS --joblog FILE` (Debian's GNU parallel);
  xargs     the same commands through `xargs -P SLOTS` (C, no bookkeeping): the children's own
            run time at that parallelism.
Runner overhead per job = (runner wall - xargs wall) / jobs: what the runner adds to the time the
children themselves take. Walls are of whole commands (start-up and planning included). The
order inside a round is fixed (runner first: ext4 allocates inodes slowly right after many files
were deleted, which GNU parallel's temporary files are); ratios are per round, figures medians.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine, make_tree, measure, median, runner_cmd, runner_env  # noqa: E402


def commands_of(ledger: Path) -> list[list[str]]:
    """The argv of every job, exactly as the runner launched them."""
    conn = sqlite3.connect(ledger)
    try:
        return [json.loads(argv) for (argv,) in conn.execute("SELECT argv FROM attempts ORDER BY attempt_id")]
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the generated folders")
    args = parser.parse_args()
    parallel = shutil.which("parallel")
    if parallel is None:
        print("GNU parallel is missing (apt-get install -y parallel): the comparison cannot run")
        return 2
    work = Path(tempfile.mkdtemp(prefix="runner-dispatch-"))
    try:
        study = make_tree(work / "study", list(range(1000, 1000 + args.jobs // 4)))
        rows = []
        for round_ in range(1, args.rounds + 1):
            artifacts = work / f"artifacts-{round_}"
            runner = measure(runner_cmd("run", "--study-root", str(study), "--artifact-root", str(artifacts),
                                        "--compare-cmd", "true", "--success", "exit-code", "--gpus", "none",
                                        "--max-parallel", str(args.slots)),
                             env=runner_env(), stdout_to=work / f"runner-{round_}.out")
            if runner.returncode != 0:
                print(f"runner failed (exit {runner.returncode}); see {work}")
                return 1
            commands = commands_of(artifacts / "ledger.db")
            assert len(commands) == args.jobs, len(commands)
            command_file = work / "commands.txt"
            command_file.write_text("".join(shlex.join(c) + "\n" for c in commands))
            gnu = measure([parallel, "-j", str(args.slots), "--joblog", str(work / f"joblog-{round_}"),
                           "::::", str(command_file)], stdout_to=Path("/dev/null"))
            argument_file = work / "arguments.txt"
            argument_file.write_text("".join(shlex.join(c[1:]) + "\n" for c in commands))
            floor = measure(["xargs", "-P", str(args.slots), "-L", "1", "-a", str(argument_file), "true"])
            rows.append((runner, gnu, floor))
            print(f"round {round_}: runner {runner.wall_s:.2f} s, GNU parallel {gnu.wall_s:.2f} s, "
                  f"xargs {floor.wall_s:.2f} s; runner {gnu.wall_s / runner.wall_s:.2f}x parallel, "
                  f"overhead {(runner.wall_s - floor.wall_s) / args.jobs * 1000:.2f} ms/job, "
                  f"peak RSS {runner.max_rss_mb:.0f} MB", flush=True)
        n = args.jobs
        runner_wall = median([r.wall_s for r, _, _ in rows])
        gnu_wall = median([g.wall_s for _, g, _ in rows])
        ratio = median([g.wall_s / r.wall_s for r, g, _ in rows])
        overhead = median([(r.wall_s - f.wall_s) / n * 1000 for r, _, f in rows])
        cpu = median([(r.cpu_s - f.cpu_s) / n * 1000 for r, _, f in rows])
        rss = max(r.max_rss_mb for r, _, _ in rows)
        print(f"\n{n} jobs of `true`, {args.slots} slots, {args.rounds} rounds on {machine()} (medians)")
        print(f"  runner        {n / runner_wall:7.0f} jobs/s  ({runner_wall:.2f} s, ledger + 2 log files per job)")
        print(f"  GNU parallel  {n / gnu_wall:7.0f} jobs/s  ({gnu_wall:.2f} s, --joblog)")
        print(f"  ratio         {ratio:7.2f} x GNU parallel  (target >= 3)")
        print(f"  overhead      {overhead:7.2f} ms/job  (runner wall - xargs wall) / jobs  (target <= 1)")
        print(f"  runner CPU    {cpu:7.2f} ms/job  (runner CPU - xargs CPU) / jobs")
        print(f"  peak RSS      {rss:7.0f} MB  (runner process; target <= 100)")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


if __name__ == "__main__":
    sys.exit(main())
