"""Dispatch overhead: 2000 trivial jobs on 4 slots, the runner against GNU parallel.

    python benchmarks/dispatch.py [--jobs 2000] [--slots 4] [--rounds 3]

Two workloads: `true` judged by its exit code alone (`--success exit-code`), and the honest
stand-in `tests/quick_compare.sh`, which writes a valid comparison_metrics.csv and is judged by
the default check (the CSV is new and parses). Generates a study of JOBS/4 dose folders, then in
each round and for each workload runs, on the same machine:
  runner    `python -m runner run --compare-cmd CMD [--success exit-code] --gpus none
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

from benchmarks.common import REPO, machine, make_tree, measure, median, runner_cmd, runner_env  # noqa: E402

# (label, compare command, extra runner flags)
WORKLOADS = (
    ("`true`, exit code", ["true"], ["--success", "exit-code"]),
    ("quick_compare.sh, metrics check", ["sh", str(REPO / "tests/quick_compare.sh")], []),
)


def commands_of(ledger: Path) -> list[list[str]]:
    """The argv of every job, exactly as the runner launched them."""
    conn = sqlite3.connect(ledger)
    try:
        return [json.loads(argv) for (argv,) in conn.execute("SELECT argv FROM attempts ORDER BY attempt_id")]
    finally:
        conn.close()


def run_round(work: Path, study: Path, name: str, compare: list[str], flags: list[str], slots: int,
              jobs: int) -> tuple | None:
    """One round of one workload: the runner, GNU parallel and xargs on the same commands."""
    artifacts = work / f"artifacts-{name}"
    runner = measure(runner_cmd("run", "--study-root", str(study), "--artifact-root", str(artifacts),
                                "--compare-cmd", shlex.join(compare), *flags, "--gpus", "none",
                                "--max-parallel", str(slots)),
                     env=runner_env(), stdout_to=work / f"runner-{name}.out")
    if runner.returncode != 0:
        print(f"runner failed (exit {runner.returncode}); see {work}")
        return None
    commands = commands_of(artifacts / "ledger.db")
    assert len(commands) == jobs, len(commands)
    command_file = work / "commands.txt"
    command_file.write_text("".join(shlex.join(c) + "\n" for c in commands))
    gnu = measure([shutil.which("parallel"), "-j", str(slots), "--joblog", str(work / f"joblog-{name}"),
                   "::::", str(command_file)], stdout_to=Path("/dev/null"))
    argument_file = work / "arguments.txt"
    fixed = len(compare)  # xargs gets the command's own words, then each job's arguments
    argument_file.write_text("".join(shlex.join(c[fixed:]) + "\n" for c in commands))
    floor = measure(["xargs", "-P", str(slots), "-L", "1", "-a", str(argument_file), *compare])
    shutil.rmtree(artifacts, ignore_errors=True)
    return runner, gnu, floor


def report(label: str, rows: list[tuple], n: int, slots: int, rounds: int) -> None:
    runner_wall = median([r.wall_s for r, _, _ in rows])
    gnu_wall = median([g.wall_s for _, g, _ in rows])
    ratio = median([g.wall_s / r.wall_s for r, g, _ in rows])
    overhead = median([(r.wall_s - f.wall_s) / n * 1000 for r, _, f in rows])
    cpu = median([(r.cpu_s - f.cpu_s) / n * 1000 for r, _, f in rows])
    rss = max(r.max_rss_mb for r, _, _ in rows)
    print(f"\n{n} jobs of {label}, {slots} slots, {rounds} rounds on {machine()} (medians)")
    print(f"  runner        {n / runner_wall:7.0f} jobs/s  ({runner_wall:.2f} s, ledger + 2 log files per job)")
    print(f"  GNU parallel  {n / gnu_wall:7.0f} jobs/s  ({gnu_wall:.2f} s, --joblog)")
    print(f"  ratio         {ratio:7.2f} x GNU parallel  (target >= 3)")
    print(f"  overhead      {overhead:7.2f} ms/job  (runner wall - xargs wall) / jobs  (target <= 1)")
    print(f"  runner CPU    {cpu:7.2f} ms/job  (runner CPU - xargs CPU) / jobs")
    print(f"  peak RSS      {rss:7.0f} MB  (runner process; target <= 100)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the generated folders")
    args = parser.parse_args()
    if shutil.which("parallel") is None:
        print("GNU parallel is missing (apt-get install -y parallel): the comparison cannot run")
        return 2
    work = Path(tempfile.mkdtemp(prefix="runner-dispatch-"))
    try:
        study = make_tree(work / "study", list(range(1000, 1000 + args.jobs // 4)))
        rows: dict[str, list[tuple]] = {label: [] for label, _, _ in WORKLOADS}
        for round_ in range(1, args.rounds + 1):
            for number, (label, compare, flags) in enumerate(WORKLOADS):
                row = run_round(work, study, f"{round_}-{number}", compare, flags, args.slots, args.jobs)
                if row is None:
                    return 1
                runner, gnu, floor = row
                rows[label].append(row)
                print(f"round {round_}, {label}: runner {runner.wall_s:.2f} s, GNU parallel {gnu.wall_s:.2f} s, "
                      f"xargs {floor.wall_s:.2f} s; runner {gnu.wall_s / runner.wall_s:.2f}x parallel, "
                      f"overhead {(runner.wall_s - floor.wall_s) / args.jobs * 1000:.2f} ms/job, "
                      f"peak RSS {runner.max_rss_mb:.0f} MB", flush=True)
        for label, found in rows.items():
            report(label, found, args.jobs, args.slots, args.rounds)
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


if __name__ == "__main__":
    sys.exit(main())
