"""Compare a physics-informed network, a baseline network and an iterative reconstruction of one
study condition against the ground truth (STUDY.md section 5).

    python -m scripts.compare_models --pinn_dir DIR --baseline_dir DIR --test_data NPZ \
        --output_dir DIR [--tike_recon_path NPZ] [--register-ptychi-only] ...

Writes comparison_metrics.csv, the FRC curves, reconstructions(_aligned).npz, comparison_plot.png
and a debug log into --output_dir (never into the current folder). Exit codes: 0 ok, 1 error,
2 bad arguments, 3 out of GPU memory.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ptychokit.cli_args import OneLineParser, UsageError, positive  # noqa: E402

PROG = "compare_models"
EXIT_ERROR, EXIT_USAGE, EXIT_OOM = 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--pinn_dir", required=True, type=Path, help="gridsize-2 PINN checkpoint folder (Phase E)")
    p.add_argument("--baseline_dir", required=True, type=Path, help="gridsize-1 baseline checkpoint folder")
    p.add_argument("--test_data", required=True, type=Path, help="test NPZ with objectGuess (Phase C or D)")
    p.add_argument("--output_dir", required=True, type=Path, help="where every output goes")
    p.add_argument("--tike_recon_path", type=Path, help="iterative reconstruction NPZ (Phase F): the PtyChi arm")
    p.add_argument("--ms-ssim-sigma", type=float, default=1.0,
                   help="Gaussian smoothing (px) of amplitude before MS-SSIM (default 1.0; 0 = none)")
    p.add_argument("--frc-sigma", type=float, default=0.0,
                   help="Gaussian smoothing of the FRC curve, in rings, before its crossings are read (default 0)")
    reg = p.add_mutually_exclusive_group()
    reg.add_argument("--register-ptychi-only", action="store_true",
                     help="register only the reconstruction arm to the ground truth")
    reg.add_argument("--skip-registration", action="store_true", help="register no arm")
    p.add_argument("--n-test-groups", type=positive(int), help="use only the first N positions (groups)")
    p.add_argument("--n-test-subsample", type=positive(int), help="use a random subset of N positions")
    p.add_argument("--test-subsample-seed", type=int, default=0, help="seed of --n-test-subsample (default 0)")
    p.add_argument("--stitch-crop-size", type=int, default=20,
                   help="central M x M of each patch used for stitching, 0 < M <= N (default 20)")
    p.add_argument("--phase-align-method", choices=("plane", "mean"), default="plane",
                   help="remove a fitted phase plane (default) or the mean phase before scoring")
    p.add_argument("--save-npz", action=argparse.BooleanOptionalAction, default=True,
                   help="write reconstructions.npz (default on)")
    p.add_argument("--save-npz-aligned", action=argparse.BooleanOptionalAction, default=True,
                   help="write reconstructions_aligned.npz (default on)")
    p.add_argument("--pinn-chunk-size", type=positive(int), help="positions of the PINN on the device at once")
    p.add_argument("--baseline-chunk-size", type=positive(int), help="positions of the baseline on the device at once")
    p.add_argument("--pinn-predict-batch-size", type=positive(int), default=32, help="PINN inference batch (32)")
    p.add_argument("--baseline-predict-batch-size", type=positive(int), default=32, help="baseline inference batch (32)")
    loud = p.add_mutually_exclusive_group()
    loud.add_argument("--quiet", action="store_true", help="console: warnings and errors only")
    loud.add_argument("--verbose", action="store_true", help="console: debug messages too")
    p.add_argument("--console-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                   help="console log level (overrides --quiet/--verbose)")
    return p


def _setup_logging(args: argparse.Namespace) -> Path:
    """Console per the flags; a debug log in the output folder, a new file per run."""
    level = args.console_level or ("WARNING" if args.quiet else "DEBUG" if args.verbose else "INFO")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    log_path = args.output_dir / f"compare_models_{stamp}_{os.getpid()}.log"
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(level)
    debug = logging.FileHandler(log_path, encoding="utf-8")
    debug.setLevel(logging.DEBUG)
    logging.basicConfig(level=logging.DEBUG, handlers=[console, debug],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return log_path


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    log_path = _setup_logging(args)
    import torch

    from ptychokit.comparison import BadArgument, ComparisonError, Options, compare
    from ptychokit.device import configure_threads

    configure_threads()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    opts = Options(
        pinn_dir=args.pinn_dir, baseline_dir=args.baseline_dir, test_data=args.test_data,
        output_dir=args.output_dir, tike_recon_path=args.tike_recon_path,
        ms_ssim_sigma=args.ms_ssim_sigma, frc_sigma=args.frc_sigma,
        register_ptychi_only=args.register_ptychi_only, skip_registration=args.skip_registration,
        n_test_groups=args.n_test_groups, n_test_subsample=args.n_test_subsample,
        test_subsample_seed=args.test_subsample_seed, stitch_crop_size=args.stitch_crop_size,
        phase_align_method=args.phase_align_method, save_npz=args.save_npz,
        save_npz_aligned=args.save_npz_aligned, pinn_chunk_size=args.pinn_chunk_size,
        baseline_chunk_size=args.baseline_chunk_size, pinn_batch_size=args.pinn_predict_batch_size,
        baseline_batch_size=args.baseline_predict_batch_size, device=device)
    logging.getLogger(PROG).info("device %s; debug log %s", device, log_path)
    try:
        arms = compare(opts)
    except BadArgument as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ComparisonError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except torch.cuda.OutOfMemoryError:
        print(f"{PROG}: error: out of GPU memory; lower --pinn-chunk-size and --baseline-chunk-size "
              "(or the predict batch sizes)", file=sys.stderr)
        return EXIT_OOM
    for arm in arms:
        ms = arm.metrics["ms_ssim"]
        name = f"{arm.name} ({arm.method})" if arm.method else arm.name
        logging.getLogger(PROG).info("%s: ms_ssim amplitude %.4f phase %.4f (%.2fs)", name, ms[0], ms[1], arm.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
