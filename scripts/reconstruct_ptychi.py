"""Reconstruct one ptychography NPZ with Pty-Chi (Phase F): PtychoPINN's Phase F command line.

    python scripts/reconstruct_ptychi.py --input-npz NPZ --output-dir DIR [--algorithm LSQML|PIE|ePIE|DM]
        [--num-epochs 200] [--n-images N] [--batch-size 96] [--noise-model gaussian|poisson]
        [--refine-probe | --no-refine-probe] [--step-size 0.1] [--seed 0] [--device auto|cpu|cuda]

Writes DIR/ptychi_reconstruction.npz (`reconstructed_object`, `reconstructed_probe`, `algorithm`,
`timestamp`, `computation_time_s`, `n_iterations`, `cost_history`, `xcoords`, `ycoords`) and
DIR/reconstruction_visualization.png. Also runnable as `python -m scripts.reconstruct_ptychi`.
Exit codes: 0 ok, 1 bad input or a failed reconstruction (one line naming it), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ptychokit.cli_args import OneLineParser, UsageError, positive  # noqa: E402

PROG = "reconstruct_ptychi"
EXIT_ERROR, EXIT_USAGE = 1, 2
ALGORITHM_CHOICES = ("LSQML", "PIE", "ePIE", "DM")  # ptychokit.ptychi_recon.ALGORITHMS


class InputError(Exception):
    pass


def _algorithm(text: str) -> str:
    for name in ALGORITHM_CHOICES:
        if name.lower() == text.lower():
            return name
    raise argparse.ArgumentTypeError(f"unknown algorithm {text!r} (choose {', '.join(ALGORITHM_CHOICES)})")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--input-npz", required=True, type=Path,
                   help="NPZ with diffraction (or diff3d) amplitudes, probeGuess, xcoords, ycoords")
    p.add_argument("--output-dir", required=True, type=Path, help="where the NPZ and the picture go")
    p.add_argument("--algorithm", type=_algorithm, default="LSQML",
                   help=f"{', '.join(ALGORITHM_CHOICES)} (case does not matter; default LSQML)")
    p.add_argument("--num-epochs", type=positive(int), default=200, help="epochs (default 200)")
    p.add_argument("--n-images", type=positive(int),
                   help="use only the first N patterns (default: all of them)")
    p.add_argument("--batch-size", type=positive(int), default=96, help="patterns per update (default 96)")
    p.add_argument("--noise-model", choices=("gaussian", "poisson"), default="gaussian",
                   help="LSQML's noise model (default gaussian; poisson is better at low dose)")
    p.add_argument("--refine-probe", action=argparse.BooleanOptionalAction, default=False,
                   help="refine the probe too (default: keep probeGuess fixed)")
    p.add_argument("--step-size", type=positive(float), default=0.1,
                   help="PIE/ePIE object and probe step, alpha (default 0.1, as in Pty-Chi)")
    p.add_argument("--seed", type=int, default=0, help="seed of the batch order (default 0)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CUDA when torch sees a GPU (default)")
    loud = p.add_mutually_exclusive_group()
    loud.add_argument("--quiet", action="store_true", help="print errors only")
    loud.add_argument("--verbose", action="store_true", help="also Pty-Chi's loss at every epoch")
    return p


def _object_shape(data, path: Path) -> tuple[int, int]:
    """The frame of the result: objectGuess's when there is one, else what the scan covers."""
    if data.object is not None:
        return tuple(data.object.shape)
    half = data.patch_size // 2
    if data.xcoords.min() < half or data.ycoords.min() < half:
        raise InputError(f"{path}: without objectGuess the positions must be patch centres in "
                         "object pixels (at least N/2 from the top-left corner)")
    return (int(data.ycoords.max()) + half, int(data.xcoords.max()) + half)


def _load(path: Path, n_images: int | None):
    import numpy as np

    from ptychokit.npz_io import READ_ERRORS, read_error_line, read_ptycho_npz

    try:
        data = read_ptycho_npz(path)
    except READ_ERRORS as exc:
        raise InputError(read_error_line("input", path, exc)) from None
    n = data.diffraction.shape[0]
    if data.diffraction.ndim != 3 or data.diffraction.shape[1:] != data.probe.shape:
        raise InputError(f"input {path}: diffraction {data.diffraction.shape} does not match the "
                         f"probe {data.probe.shape} (expected (n, N, N) and (N, N))")
    if data.xcoords.shape != (n,) or data.ycoords.shape != (n,):
        raise InputError(f"input {path}: {n} patterns but {data.xcoords.size} x and "
                         f"{data.ycoords.size} y positions")
    if n == 0 or not (np.isfinite(data.diffraction).all() and (data.diffraction >= 0).all()):
        raise InputError(f"input {path}: the diffraction is empty, negative or not finite")
    if n_images is not None and n_images < n:
        data = data.subset(np.arange(n_images))
    return data


PANEL = 256  # pixels per panel of the picture


def _picture(result, path: Path) -> None:
    """The object's and the probe's amplitude (grey, scaled to their range) and phase (hue round
    the colour circle, -pi to pi), 2 x 2 panels. Drawn with Pillow: matplotlib's import alone
    costs a second of every reconstruction's process."""
    import numpy as np
    from PIL import Image, ImageDraw

    def grey(values: np.ndarray) -> Image.Image:
        span = float(values.max() - values.min()) or 1.0
        return Image.fromarray(np.uint8(255 * (values - values.min()) / span), "L").convert("RGB")

    def hue(values: np.ndarray) -> Image.Image:
        h = np.uint8(255 * (values + np.pi) / (2 * np.pi) % 256)
        full = np.full(values.shape, 255, np.uint8)
        return Image.fromarray(np.stack([h, full, full], axis=-1), "HSV").convert("RGB")

    title = 16
    canvas = Image.new("RGB", (2 * PANEL, 2 * (PANEL + title) + title), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 2), f"{result.algorithm} reconstruction", fill="black")
    for row, (image, name) in enumerate(((result.object, "object"), (result.probe, "probe"))):
        for col, (panel, part) in enumerate(((grey(np.abs(image)), "amplitude"), (hue(np.angle(image)), "phase"))):
            top = title + row * (PANEL + title)
            draw.text((col * PANEL + 4, top + 2), f"{name} {part}", fill="black")
            canvas.paste(panel.resize((PANEL, PANEL), Image.NEAREST), (col * PANEL, top + title))
    canvas.save(path)


def write_outputs(result, data, output_dir: Path) -> Path:
    """ptychi_reconstruction.npz (and the picture) in `output_dir`; returns the NPZ's path."""
    import numpy as np

    from ptychokit.npz_io import Reconstruction, write_reconstruction

    npz = output_dir / "ptychi_reconstruction.npz"
    write_reconstruction(npz, Reconstruction(result.object, result.probe, result.algorithm,
                                             result.elapsed_s, len(result.cost_history)),
                         {"timestamp": np.array(datetime.now(timezone.utc).isoformat(timespec="seconds")),
                          "cost_history": np.asarray(result.cost_history, dtype=np.float64),
                          "xcoords": data.xcoords, "ycoords": data.ycoords})
    _picture(result, output_dir / "reconstruction_visualization.png")
    return npz


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        from ptychokit.device import configure_threads, resolve_device

        device = resolve_device(args.device)
    except (UsageError, ValueError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s", stream=sys.stdout, force=True)
    # Pty-Chi logs every epoch at INFO (and shows a progress bar then): only with --verbose.
    logging.getLogger("ptychi").setLevel(logging.INFO if args.verbose else logging.WARNING)
    # Pty-Chi reads a loss tensor that still requires grad as a number, harmlessly, every run.
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True")
    say = (lambda *a, **k: None) if args.quiet else print  # noqa: E731
    from ptychokit.ptychi_recon import PtychiSettings, PtychiUnavailable, load_ptychi, reconstruct

    threads = configure_threads()
    try:
        data = _load(args.input_npz, args.n_images)
        shape = _object_shape(data, args.input_npz)
        load_ptychi()
    except (InputError, PtychiUnavailable) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    settings = PtychiSettings(algorithm=args.algorithm, num_epochs=args.num_epochs,
                              batch_size=args.batch_size, noise_model=args.noise_model,
                              refine_probe=args.refine_probe, step_size=args.step_size,
                              seed=args.seed, device=device)
    say(f"{PROG}: {settings.label}, {data.diffraction.shape[0]} patterns of "
        f"{data.patch_size}x{data.patch_size}, object {shape[0]}x{shape[1]}, device {device} "
        f"({threads} CPU threads)", flush=True)
    started = time.perf_counter()
    try:
        result = reconstruct(data, shape, settings)
    except (RuntimeError, ValueError) as exc:  # torch's errors, out of memory included
        print(f"{PROG}: error: the reconstruction of {args.input_npz} failed ({exc})", file=sys.stderr)
        return EXIT_ERROR
    try:
        npz = write_outputs(result, data, args.output_dir)
    except OSError as exc:
        print(f"{PROG}: error: cannot write into {args.output_dir} ({exc})", file=sys.stderr)
        return EXIT_ERROR
    say(f"{PROG}: loss {result.cost_history[0]:.4g} -> {result.cost_history[-1]:.4g} in "
        f"{time.perf_counter() - started:.1f} s; wrote {npz}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
