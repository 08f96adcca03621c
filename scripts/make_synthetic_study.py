"""Generate the synthetic ptychography study (Phases C-F) into one output folder.

    python scripts/make_synthetic_study.py --out DIR [--preset tiny|demo|full] [--doses 1000 ...]
        [--seed 42] [--device auto|cpu|cuda] [--overwrite]

Also runnable as `python -m scripts.make_synthetic_study`. Bad arguments print one line,
`make_synthetic_study: error: ...`, and exit 2; a Phase F reconstruction that fails is named in
one such line after the other phases' files are written, exit 1.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROG = "make_synthetic_study"
PHASE_FOLDERS = ("phase_c", "phase_d", "phase_e", "phase_f")


class UsageError(Exception):
    """A bad argument: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block
        raise UsageError(message)


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

    parser = _Parser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output folder of the study")
    parser.add_argument("--preset", default="demo", help=f"one of {', '.join(PRESETS)} (default demo)")
    parser.add_argument("--doses", nargs="+", type=_dose, help="photons per pattern (default: the preset's)")
    parser.add_argument("--seed", type=int, default=42, help="simulation and training seed (default 42)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--overwrite", action="store_true", help="replace an existing study in --out")
    args = parser.parse_args(argv)
    if args.preset not in PRESETS:
        raise UsageError(f"unknown preset {args.preset!r} (choose {', '.join(PRESETS)})")
    if args.doses and len(set(args.doses)) != len(args.doses):
        raise UsageError("--doses lists a dose twice")
    out: Path = args.out.resolve()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise UsageError(f"--out {out} already exists and is not empty; pass --overwrite to replace it")
    args.out = out
    return args


def _prepare(out: Path) -> None:
    """Remove what an earlier study left (only its own folders), so no stale file survives."""
    out.mkdir(parents=True, exist_ok=True)
    for name in PHASE_FOLDERS:
        shutil.rmtree(out / name, ignore_errors=True)
    (out / "study.json").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        from ptychokit.device import configure_threads, resolve_device

        device = resolve_device(args.device)
    except (UsageError, ValueError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    from ptychokit.pipeline import PhaseFailed, run_study
    from ptychokit.presets import PRESETS

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout, force=True)
    preset = PRESETS[args.preset]
    if args.doses:
        preset = preset.with_doses(tuple(sorted(args.doses)))
    threads = configure_threads()
    print(f"{PROG}: preset {preset.name}, doses {', '.join(map(str, preset.doses))}, seed {args.seed}, "
          f"device {device} ({threads} CPU threads) -> {args.out}", flush=True)
    start = time.perf_counter()
    _prepare(args.out)
    try:
        run_study(args.out, preset, args.seed, device)
    except PhaseFailed as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    print(f"{PROG}: done in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
