"""Train one Phase E model into a checkpoint folder: the gridsize-1 baseline or a gridsize-2
physics-informed network. PtychoPINN's training flag spellings where they exist.

    python scripts/train_model.py --train_data_file NPZ --output_dir DIR --gridsize 1|2
        [--test_data_file NPZ] [--preset demo] [--nphotons D] [--n_groups G] [--n_subsample N] [--neighbor_count 7]
        [--steps S | --nepochs E] [--seed 42] [--device auto|cpu|cuda] [--checkpoint_every 180] [--quiet]

Gridsize 1 trains the supervised baseline on the NPZ's ground-truth patches (Y); gridsize 2 the
PINN on the Poisson likelihood of its counts. Sizes and the schedule come from --preset; the flags
override them. Also runnable as `python -m scripts.train_model`.

Writes into DIR: training_log.csv (the training curve, a row appended per log row as it trains),
training_progress.json (for the job runner: {"token": $RUNNER_ATTEMPT_TOKEN, "start_step", "step"
saved on disk, "planned_steps", "complete"}), training_state.pt while unfinished (saved every
--checkpoint_every seconds and on a stop signal), and at the end model.pt and model.json, deleting
training_state.pt. The same command run again resumes a stopped training from training_state.pt to
bitwise the weights an unstopped one ends with; with other inputs or flags it starts afresh (one
line says which of them changed).

SIGTERM, SIGINT and SIGUSR1 (SLURM's warning before its time limit: sbatch --signal=B:USR1@120) stop
the training after its current step, with its state saved. Exit codes: 0 ok, 1 bad input (one
line naming it), 2 bad arguments, 128 + the signal's number when stopped by one (SIGTERM 143,
SIGINT 130, SIGUSR1 138; one line on stderr).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ptychokit.cli_args import OneLineParser, UsageError, non_negative, positive  # noqa: E402

PROG = "train_model"
EXIT_ERROR, EXIT_USAGE = 1, 2
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class StopFlag:
    """The first stop signal received; the training checks it between steps. Installed before
    torch is imported, so that no signal of the set-up kills the process unannounced."""

    def __init__(self) -> None:
        self.signum: int | None = None
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._received)

    def _received(self, signum: int, frame: object) -> None:
        self.signum = self.signum or signum

    def __call__(self) -> int | None:
        return self.signum

    def ignore_from_now(self) -> None:
        """The work is saved (or nothing is left to save): a late signal changes nothing. Ignored
        rather than left to Python, which puts back the default action, death by the signal, while
        the interpreter shuts down: a time-limit warning then would turn a finished training into
        one killed by SIGUSR1."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--train_data_file", required=True, type=Path, help="training NPZ (Phase C, or a Phase D view)")
    p.add_argument("--test_data_file", type=Path,
                   help="held-out NPZ: its NLL excess (PINN) or loss (baseline) is recorded, never trained on")
    p.add_argument("--output_dir", required=True, type=Path, help="the checkpoint folder")
    p.add_argument("--gridsize", required=True, type=int, choices=(1, 2),
                   help="1: the supervised baseline; 2: the physics-informed network (groups of 4)")
    p.add_argument("--preset", default="demo", help="sizes and schedule (tiny, demo, full; default demo)")
    p.add_argument("--nphotons", type=positive(float),
                   help="the data's dose, photons per pattern (checked against the NPZ's metadata)")
    p.add_argument("--n_groups", type=positive(int), help="gridsize-2 groups drawn for training (oversampled)")
    p.add_argument("--n_subsample", type=positive(int),
                   help="train on this many positions of the file (a fixed subset; smaller ones nest in larger)")
    p.add_argument("--neighbor_count", type=positive(int), default=7,
                   help="K: a group's members are drawn from a position's K nearest (default 7)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=positive(int), help="optimizer steps (default: the preset's)")
    length.add_argument("--nepochs", type=positive(int), help="passes over the groups instead of --steps")
    p.add_argument("--seed", type=int, default=42, help="training seed (default 42)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--checkpoint_every", type=non_negative(float), default=180.0, metavar="SECONDS",
                   help="save the training state this often (default 180; 0: only when stopped by a signal)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        stop = StopFlag()
        from ptychokit.presets import PRESETS

        if args.preset not in PRESETS:
            raise UsageError(f"unknown preset {args.preset!r} (choose {', '.join(PRESETS)})")
        if args.neighbor_count < 4 and args.gridsize == 2:
            raise UsageError("--neighbor_count must be at least 4 (a group has 4 members)")
        from ptychokit.device import configure_threads, resolve_device

        device = resolve_device(args.device)
    except (UsageError, ValueError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s",
                        stream=sys.stdout, force=True)
    configure_threads()
    from ptychokit.phase_e import TrainingInputError, train_and_save
    from ptychokit.resume import TrainingStopped

    preset = PRESETS[args.preset]
    try:
        train_and_save(args.train_data_file, args.output_dir, args.gridsize, preset, args.seed, device,
                       test_file=args.test_data_file, dose=args.nphotons, n_groups=args.n_groups,
                       neighbours=args.neighbor_count, steps=args.steps, epochs=args.nepochs,
                       n_subsample=args.n_subsample, checkpoint_every=args.checkpoint_every, stop=stop)
    except TrainingInputError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except TrainingStopped as stopped:
        print(f"{PROG}: {stopped}", file=sys.stderr)
        return 128 + stopped.signum
    finally:
        stop.ignore_from_now()
    return 0


if __name__ == "__main__":
    sys.exit(main())
