"""Generate the synthetic ptychography study (Phases C-F) as PtychoPINN's hub in one folder:
DIR/data/phase_c .. phase_f, DIR/analysis (the runner's ledger, logs and comparisons), DIR/cli.

    python scripts/make_synthetic_study.py --out DIR [--preset tiny|demo|full] [--doses 1000 ...]
        [--seed 42] [--replicates N|dense=3,sparse=1] [--train-sizes 256,1024,all]
        [--device auto|cpu|cuda] [--phases C,D,E,F] [--overwrite]

Phases C and D (the data) are made here, with `runner.toml`, the runner's settings for the rest of
this study. Phases E and F are run by the runner itself (`python -m runner run --config
DIR/runner.toml --phases E,F`): the trainings and reconstructions are jobs in the study's ledger
(DIR/analysis/ledger.db), as they are when `make demo` runs them, so a later `runner run` finds
them done. `--phases C,D` makes only the data; a later call with `--phases E,F` (or E, or F) adds
the models or reconstructions to that study, with its preset, seed and doses.

Also runnable as `python -m scripts.make_synthetic_study`. Bad arguments print one line,
`make_synthetic_study: error: ...`, and exit 2; when a training or reconstruction fails, one such
line says so after the other jobs' files are written, exit 1 (`runner status` says which and why).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ptychokit.cli_args import OneLineParser, UsageError  # noqa: E402

PROG = "make_synthetic_study"
REPO = Path(__file__).resolve().parent.parent
PHASE_FOLDERS = {"C": "data/phase_c", "D": "data/phase_d", "E": "data/phase_e", "F": "data/phase_f"}
RESULTS_FOLDER = "analysis"  # the runner's artifact root: its ledger, logs and comparisons
CLI_FOLDER = "cli"  # the commands' logs
NEEDS = {"D": "C", "E": "D", "F": "D"}  # the phase whose files a phase reads


def _dose(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"dose {text!r} is not a number") from None
    if not value > 0 or value != int(value):
        raise argparse.ArgumentTypeError(f"dose {text!r} must be a positive whole number of photons")
    return int(value)


def parse_args(argv: list[str]) -> argparse.Namespace:
    from ptychokit.presets import PRESETS

    parser = OneLineParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output folder of the study")
    parser.add_argument("--preset", default="demo", help=f"one of {', '.join(PRESETS)} (default demo)")
    parser.add_argument("--doses", nargs="+", type=_dose, help="photons per pattern (default: the preset's)")
    parser.add_argument("--seed", type=int, default=42, help="simulation and training seed (default 42)")
    parser.add_argument("--replicates", type=_replicates,
                        help="training seeds per view, counted from --seed: N or e.g. dense=3,sparse=1 "
                             "(default: the preset's; demo dense=3,sparse=1)")
    parser.add_argument("--train-sizes", type=_train_sizes,
                        help="training-set sizes in patterns, e.g. 256,1024,all (default: all, the whole split)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--phases", type=_phases, default=tuple(PHASE_FOLDERS),
                        help="the phases to run, e.g. C,D (default: all of C,D,E,F)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing study in --out")
    args = parser.parse_args(argv)
    if args.preset not in PRESETS:
        raise UsageError(f"unknown preset {args.preset!r} (choose {', '.join(PRESETS)})")
    if args.doses and len(set(args.doses)) != len(args.doses):
        raise UsageError("--doses lists a dose twice")
    out: Path = args.out.resolve()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    args.out = out
    if "C" in args.phases:
        if out.is_dir() and any(out.iterdir()) and not args.overwrite:
            raise UsageError(f"--out {out} already exists and is not empty; pass --overwrite to replace it")
        return args
    _continue_study(args)
    return args


def _replicates(text: str) -> str:
    for item in text.split(","):
        view, _, count = item.rpartition("=")
        if view not in ("", "dense", "sparse") or not count.strip().isdigit() or int(count) < 1:
            raise argparse.ArgumentTypeError(f"{text!r}: give a number of seeds (3) or per view (dense=3,sparse=1)")
    return text


def _train_sizes(text: str) -> str:
    for item in text.split(","):
        if item.strip() != "all" and not (item.strip().isdigit() and int(item) > 0):
            raise argparse.ArgumentTypeError(f"{text!r}: give training-set sizes in patterns, e.g. 256,1024,all")
    return text


def _phases(text: str) -> tuple[str, ...]:
    chosen = [p.strip().upper() for p in text.replace(",", " ").split()]
    unknown = [p for p in chosen if p not in PHASE_FOLDERS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"{text!r}: choose among {', '.join(PHASE_FOLDERS)}, e.g. C,D")
    return tuple(p for p in PHASE_FOLDERS if p in chosen)


def _continue_study(args: argparse.Namespace) -> None:
    """Later phases of an existing study: its preset and seed, the files they read, and no
    finished phase replaced without --overwrite."""
    record = args.out / "study.json"
    if not record.is_file():
        raise UsageError(f"--phases {','.join(args.phases)} adds to a study, but {args.out} holds none "
                         "(no study.json); run its Phase C first (--phases C,D)")
    made = json.loads(record.read_text(encoding="utf-8"))
    if made["preset"]["name"] != args.preset or made["seed"] != args.seed:
        raise UsageError(f"the study in {args.out} was made with preset {made['preset']['name']} and seed "
                         f"{made['seed']}; give the same --preset and --seed")
    if args.doses and tuple(sorted(args.doses)) != tuple(made["preset"]["doses"]):
        raise UsageError(f"the study in {args.out} has doses {made['preset']['doses']}; leave out --doses")
    args.doses = list(made["preset"]["doses"])
    for phase in args.phases:
        needed = NEEDS[phase]
        if needed not in args.phases and not (args.out / PHASE_FOLDERS[needed]).is_dir():
            raise UsageError(f"phase {phase} reads {args.out / PHASE_FOLDERS[needed]}, which does not exist: "
                             f"run phase {needed} first")
        folder = args.out / PHASE_FOLDERS[phase]
        if folder.is_dir() and any(folder.iterdir()) and not args.overwrite:
            raise UsageError(f"{folder} already exists; pass --overwrite to replace it")


def _prepare(out: Path, phases: tuple[str, ...]) -> None:
    """Remove what an earlier study left in the folders these phases write (only those), so no
    stale file survives; a run from Phase C starts a new study.json."""
    out.mkdir(parents=True, exist_ok=True)
    if "C" in phases:  # a new study: the old one's results (and ledger) describe other data
        (out / "study.json").unlink(missing_ok=True)
        (out / "runner.toml").unlink(missing_ok=True)
        shutil.rmtree(out / RESULTS_FOLDER, ignore_errors=True)
        shutil.rmtree(out / CLI_FOLDER, ignore_errors=True)
    for phase in (PHASE_FOLDERS if "C" in phases else phases):
        shutil.rmtree(out / PHASE_FOLDERS[phase], ignore_errors=True)


def run_jobs(out: Path, phases: tuple[str, ...], device: str, threads: int) -> int:
    """Phases E and/or F of the study by the runner, as one graph of jobs on the study's ledger:
    on the CPU one job per core, one thread each; on a GPU as runner.toml's jobs_per_gpu says.
    Returns the runner's exit status; its lines go to our stdout as they come."""
    gpus = ["--gpus", "none", "--max-parallel", str(threads)] if device == "cpu" else ["--gpus", "auto"]
    argv = [sys.executable, "-m", "runner", "run", "--config", str(out / "runner.toml"),
            "--phases", ",".join(phases), *gpus]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("OMP_NUM_THREADS", None)  # the runner gives each job its share of the cores
    return subprocess.run(argv, cwd=REPO, env=env).returncode


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        from ptychokit.device import configure_threads, resolve_device

        device = resolve_device(args.device)
    except (UsageError, ValueError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    from ptychokit.pipeline import record_timings, run_data
    from ptychokit.presets import PRESETS

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout, force=True)
    preset = PRESETS[args.preset]
    if args.doses:
        preset = preset.with_doses(tuple(sorted(args.doses)))
    threads = configure_threads()
    print(f"{PROG}: preset {preset.name}, doses {', '.join(map(str, preset.doses))}, seed {args.seed}, "
          f"phases {','.join(args.phases)}, device {device} ({threads} CPU threads) -> {args.out}", flush=True)
    start = time.perf_counter()
    _prepare(args.out, args.phases)
    run_data(args.out, preset, args.seed, tuple(p for p in args.phases if p in "CD"), args.replicates,
             args.train_sizes)
    jobs = tuple(p for p in args.phases if p in "EF")
    if jobs:
        began = time.perf_counter()
        status = run_jobs(args.out, jobs, device, threads)
        record_timings(args.out, preset, args.seed, {",".join(jobs): round(time.perf_counter() - began, 2)})
        if status != 0:
            print(f"{PROG}: error: the runner did not make every job of phases {','.join(jobs)} (exit {status}); "
                  f"see `python -m runner status --artifact-root {args.out / RESULTS_FOLDER}`", file=sys.stderr)
            return 1
    print(f"{PROG}: done in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
