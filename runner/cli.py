"""Command line: `python -m runner run|status|report`. Parses arguments, calls the command (a run
is wired in `app`), prints, and turns user errors into one `runner: error: ...` line and an exit code.
This is where the engine meets its study: `runner.ptycho`, the ptychography study, adds its
options and receives its settings; nothing else of the engine imports it.

Exit codes of `run`: 0 every planned job has succeeded (now or in an earlier run); 1 some job
failed, was interrupted or is blocked; 2 bad input, nothing launched; 128+N stopped by signal N.

Each command imports what it needs when it runs: `status` must start in a few tens of
milliseconds and never loads asyncio, the planner or the study.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from pathlib import Path

from runner import __version__

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from runner.config import Settings
    from runner.study import Study, StudySettings


def the_study() -> Study:
    from runner.ptycho import STUDY

    return STUDY


class UsageError(Exception):
    pass


def user_errors() -> tuple[type[Exception], ...]:
    """The exceptions that carry a message for the user (evaluated only when one is raised)."""
    from runner.config import ConfigError
    from runner.executors.slurm import ClusterUnavailable
    from runner.graph import GraphError
    from runner.ledger import LedgerError
    from runner.lock import LockError
    from runner.slots import SlotError
    from runner.study import PlanError
    return UsageError, ConfigError, PlanError, GraphError, LedgerError, LockError, SlotError, ClusterUnavailable


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other user error
        raise UsageError(message)


def build_parser(study: Study | None = None) -> argparse.ArgumentParser:
    """The parser of every command; `study` adds its options to `run` and `report`."""
    parser = Parser(prog="runner", description="Run the GPU jobs of a ptychography study (training, "
                    "Pty-Chi reconstruction, comparison) on GPU slots, with a SQLite ledger you can "
                    "resume from and query.")
    parser.add_argument("--version", action="version", version=f"runner {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    run = commands.add_parser("run", help="run the jobs of the study")
    run.add_argument("--config", help="TOML file: the run's keys under [run], the study's under [study], "
                                      "each a flag's name with underscores (flags win)")
    if study is not None:
        study.add_run_options(run)
    pick = run.add_argument_group("what to run")
    pick.add_argument("--force", action="store_true", help="rerun jobs that already succeeded")
    pick.add_argument("--only-failed", action="store_true", help="rerun only failed or interrupted jobs")
    pick.add_argument("--dry-run", action="store_true",
                      help="write the plan and print the jobs in launch order with what each needs; launch nothing")
    pick.add_argument("--order", choices=("longest-first", "plan"),
                      help="launch order: longest-first (default; by critical path and the durations of "
                           "earlier successes, never-run jobs first) or the study's plan order")
    pick.add_argument("--ledger", help="ledger file (default <artifact-root>/ledger.db)")
    res = run.add_argument_group("resources")
    res.add_argument("--gpus", help="auto (default), none, or a list of indices / GPU UUIDs")
    res.add_argument("--jobs-per-gpu", help="concurrent jobs per GPU (default 1): one number, or per kind of "
                                            "job such as E=1,F=2,G=4 (a training then takes a whole GPU)")
    res.add_argument("--max-parallel", type=int, help="concurrent jobs without GPUs (default 1); a cap with GPUs")
    res.add_argument("--timeout", type=float, help="seconds per attempt before its group is killed")
    res.add_argument("--grace", type=float, help="seconds between SIGTERM and SIGKILL (default 30: a training saves its checkpoint)")
    res.add_argument("--retries", type=int, help="relaunches of a failed job per run (default 0)")
    cluster = run.add_argument_group("SLURM (with --backend slurm)")
    cluster.add_argument("--backend", help="local (default): child processes here; slurm: one sbatch job per attempt")
    cluster.add_argument("--partition", help="sbatch --partition")
    cluster.add_argument("--time", help="sbatch --time, SLURM's limit per attempt (e.g. 30, 1:00:00)")
    cluster.add_argument("--account", help="sbatch --account")
    cluster.add_argument("--cpus-per-task", type=int, help="sbatch --cpus-per-task (also OMP_NUM_THREADS)")
    cluster.add_argument("--mem", help="sbatch --mem (e.g. 16G)")
    cluster.add_argument("--sbatch-arg", action="append", dest="sbatch_args", metavar="ARG",
                         help="extra sbatch option (repeatable; write --sbatch-arg=--qos=high)")
    cluster.add_argument("--signal-before", type=int, metavar="SECONDS",
                         help="a resumable job (one that saves its work) gets SIGUSR1 this long before SLURM's "
                              "time limit, to save and be continued by the next attempt (default 120; 0: none)")
    cluster.add_argument("--on-interrupt", help="on Ctrl-C/SIGTERM: cancel (default) the SLURM jobs, or leave them "
                                                "running for the next run to re-attach")
    cluster.add_argument("--node-root", metavar="PATH",
                         help="where the study's root folder is on the compute nodes, when they mount it at "
                              "another path than this host (default: the same path)")

    stat = commands.add_parser("status", help="show where a study stands (also while it runs)")
    stat.add_argument("--ledger", help="ledger file")
    stat.add_argument("--artifact-root", help="folder holding ledger.db")
    stat.add_argument("--json", action="store_true", help="machine-readable output")
    stat.add_argument("--watch", nargs="?", type=float, const=2.0, metavar="SEC",
                      help="refresh every SEC seconds (default 2) until Ctrl-C")

    rep = commands.add_parser("report", help="write the study report (JSON, CSV, plots, HTML) from the ledger")
    rep.add_argument("--ledger", help="ledger file")
    rep.add_argument("--artifact-root", help="folder holding ledger.db")
    rep.add_argument("--out", help="report folder (default: report/ beside the ledger)")
    if study is not None:
        study.add_report_options(rep)
    return parser


def settings_from_args(args: argparse.Namespace, study: Study,
                       warn=lambda line: None) -> tuple[Settings, StudySettings]:
    """The engine's settings and the study's, from the config file (if any) and the flags."""
    from runner import config

    given = {key: value for key, value in vars(args).items() if key != "command"}
    return config.load(given, study, Path.cwd(), warn)


def command_run(args: argparse.Namespace, study: Study) -> int:
    import shlex

    from runner import app

    # Everything this run creates (ledger, logs, manifests, the folders holding them, and, through
    # the inherited umask, the commands' outputs) is readable by the user only.
    os.umask(0o077)
    warn = lambda line: print(f"runner: warning: {line}", file=sys.stderr)  # noqa: E731
    settings, study_settings = settings_from_args(args, study, warn)
    if settings.dry_run:
        plan = app.dry_run(settings, study, study_settings)
        count = {action: sum(c.action == action for c in plan.choices) for action in ("run", "skip", "block")}
        print(f"dry run: {len(plan.choices)} jobs planned, {count['run']} to run, {count['skip']} already done, "
              f"{count['block']} blocked; nothing launched or recorded")
        words = {"run": "run ", "skip": "done", "block": "blocked"}
        for number, choice in enumerate(plan.choices, 1):
            job = choice.job
            after = (f" (after {', '.join(job.needs)})" if job.needs else "") if plan.graph else ""
            kind = f"[{job.kind}] " if plan.graph else ""
            why = f": {choice.reason}" if choice.reason else ""
            print(f"{number:3d}. {words[choice.action]} {kind}{job.key}{after}{why}")
            if choice.action == "run":
                print(f"     {shlex.join(job.argv)}")
        print("plan in " + " and ".join(map(str, plan.written)))
        return 0
    summary = app.run(settings, study, study_settings, warn)
    states = summary.states
    stopped = summary.stop_signal
    print(f"run {summary.run_id} {'stopped by signal ' + str(stopped) if stopped else 'finished'}: "
          + ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))
          + (f"; manifest {summary.named_file}" if summary.named_file else "")
          + f"; see `python -m runner status --ledger {settings.ledger}`")
    if stopped:
        return 128 + stopped
    return 0 if all(state == "succeeded" for state in states) else 1


def ledger_from_args(args: argparse.Namespace) -> Path:
    if args.ledger:
        return Path(args.ledger).expanduser().resolve()
    if args.artifact_root:
        return Path(args.artifact_root).expanduser().resolve() / "ledger.db"
    return Path("ledger.db").resolve()


def command_report(args: argparse.Namespace, study: Study) -> int:
    from runner.app import ensure_writable

    ledger = ledger_from_args(args)
    out = Path(args.out).expanduser().resolve() if args.out else ledger.parent / "report"
    ensure_writable(out)
    options = {k: v for k, v in vars(args).items() if k not in ("command", "ledger", "artifact_root", "out")}
    report = study.report(ledger, out, options)
    if report.error:
        print(f"runner: error: {report.error}", file=sys.stderr)
        return 1
    for line in report.warnings:
        print(f"runner: warning: {line}", file=sys.stderr)
    for line in report.lines:
        print(line)
    return 0


def command_status(args: argparse.Namespace) -> int:
    from runner import status

    ledger = ledger_from_args(args)

    def show(ledger: Path) -> str:
        return status.as_json(ledger) if args.json else status.text(ledger)
    if args.watch is None:
        print(show(ledger))
        return 0
    if args.watch <= 0:
        raise UsageError("--watch needs a positive number of seconds")
    try:
        while True:
            text = show(ledger)
            if sys.stdout.isatty():
                sys.stdout.write("\x1b[H\x1b[2J")
            print(text, flush=True)
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


def main(argv: list[str] | None = None) -> int:
    try:
        words = sys.argv[1:] if argv is None else argv
        command = next((word for word in words if not word.startswith("-")), None)
        # `status` never loads the study; `run` and `report` take its options.
        study = the_study() if command in ("run", "report") else None
        args = build_parser(study).parse_args(words)
        if args.command == "run":
            return command_run(args, study)
        if args.command == "report":
            return command_report(args, study)
        return command_status(args)
    except user_errors() as exc:
        print(f"runner: error: {exc}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:  # e.g. the ledger's disk filled up during a run
        print(f"runner: error: writing the ledger failed ({exc}); running attempts were stopped, "
              "the next `run` resumes", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("runner: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of the output left (`| head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
