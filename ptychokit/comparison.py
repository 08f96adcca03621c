"""One comparison of a study condition: the PINN, the baseline and the iterative reconstruction
against the ground truth, with the outputs of STUDY.md §5.

`compare()` does the work; scripts/compare_models.py is its command line. Steps: predict object
patches with both networks, stitch them on the scan grid, crop every arm to the scanned region,
register (sub-pixel), scale amplitude to the target's mean, remove the phase plane or mean, score.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ptychokit.alignment import (aligned_phase, border, register, remove_phase_offset, scale_amplitude,
                                 scanned_box)
from ptychokit.atomic_write import write_atomically
from ptychokit.image_metrics import all_metrics, frc_curve

log = logging.getLogger("compare_models")
METRICS = ("mae", "mse", "psnr", "ssim", "ms_ssim", "frc50", "frc1over7")
FRC_CURVE_FILES = {"PtychoPINN": "pinn_frc_curves.csv", "Baseline": "baseline_frc_curves.csv",
                   "PtyChi": "ptychi_frc_curves.csv"}
# The trivial predictor scored beside the arms: a flat phase and a constant amplitude (which the
# amplitude scaling every arm gets turns into the target's mean). An arm that learned nothing scores
# about this. It has its own file because comparison_metrics.csv must hold exactly the reference
# script's three models.
FLOOR_MODEL = "FlatFloor"
FLOOR_FILE = "floor_metrics.csv"


class ComparisonError(Exception):
    """The comparison cannot be made or scored (exit 1)."""


class BadArgument(Exception):
    """An argument that contradicts the data (exit 2)."""


@dataclass(frozen=True)
class Options:
    pinn_dir: Path
    baseline_dir: Path
    test_data: Path
    output_dir: Path
    tike_recon_path: Path | None = None
    ms_ssim_sigma: float = 1.0
    frc_sigma: float = 0.0
    register_ptychi_only: bool = False
    skip_registration: bool = False
    n_test_groups: int | None = None
    n_test_subsample: int | None = None
    test_subsample_seed: int = 0
    stitch_crop_size: int = 20
    phase_align_method: str = "plane"
    save_npz: bool = True
    save_npz_aligned: bool = True
    pinn_chunk_size: int | None = None
    baseline_chunk_size: int | None = None
    pinn_batch_size: int = 32
    baseline_batch_size: int = 32
    device: str = "cpu"


@dataclass
class Arm:
    """One method's object image and what it cost."""

    name: str
    obj: np.ndarray  # complex, full object frame
    seconds: float
    coverage: np.ndarray | None = None
    shift: tuple[float, float] = (0.0, 0.0)
    amplitude: np.ndarray | None = None  # aligned, cropped
    phase: np.ndarray | None = None
    metrics: dict[str, tuple[float, float]] | None = None
    error: str | None = None
    method: str | None = None  # what made it: the reconstruction NPZ's `algorithm`


def _load_test_data(opts: Options):
    from ptychokit.npz_io import READ_ERRORS, read_error_line, read_ptycho_npz

    try:
        data = read_ptycho_npz(opts.test_data)
    except READ_ERRORS as exc:
        raise ComparisonError(read_error_line("test data", opts.test_data, exc)) from None
    if data.object is None:
        raise ComparisonError(f"test data {opts.test_data} has no ground truth (objectGuess): "
                              "no metrics can be computed")
    if not 0 < opts.stitch_crop_size <= data.patch_size:
        raise BadArgument(f"--stitch-crop-size {opts.stitch_crop_size} must satisfy "
                          f"0 < M <= {data.patch_size} (the patch size)")
    n = data.diffraction.shape[0]
    keep = np.arange(n)
    if opts.n_test_subsample and opts.n_test_subsample < n:
        keep = np.sort(np.random.default_rng(opts.test_subsample_seed).choice(n, opts.n_test_subsample, replace=False))
    if opts.n_test_groups and opts.n_test_groups < keep.size:
        keep = keep[:opts.n_test_groups]
    return data.subset(keep) if keep.size < n else data


def _predict(folder: Path, data, batch: int, chunk: int | None, opts: Options, label: str) -> Arm:
    from ptychokit.checkpoint import load_model
    from ptychokit.inference import predict_patches
    from ptychokit.stitching import stitch_patches

    if not folder.is_dir():
        raise ComparisonError(f"{label} model folder {folder} does not exist")
    try:
        model, info = load_model(folder, device=opts.device)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ComparisonError(f"{label} model in {folder} cannot be loaded ({exc})") from None
    started = time.perf_counter()
    # A chunk caps how many positions are on the device at once, so it bounds the batch.
    try:
        patches = predict_patches(model, info, data, batch_size=min(batch, chunk or batch), device=opts.device)
    except ValueError as exc:
        raise ComparisonError(f"{label} model in {folder} does not fit the test data ({exc})") from None
    seconds = time.perf_counter() - started
    image, coverage = stitch_patches(patches, data.xcoords, data.ycoords, data.object.shape,
                                     crop=opts.stitch_crop_size)
    return Arm(label, image, seconds=seconds, coverage=coverage)


def _score(arms: list[Arm], target: np.ndarray, opts: Options) -> tuple[np.ndarray, np.ndarray]:
    """Align every arm to the target in place; return the target's amplitude and phase."""
    for arm in arms:
        if not np.all(np.isfinite(arm.obj)):
            arm.error = "its image holds NaN or infinite values"
        elif arm.name == FLOOR_MODEL:
            continue  # a flat image has nothing to register
        elif not (opts.skip_registration or (opts.register_ptychi_only and arm.name != "PtyChi")):
            try:
                arm.obj, arm.shift = register(arm.obj, target)
            except ValueError as exc:
                arm.error = f"registration failed: {exc}"
    trims = [border(target.shape, arm.shift) for arm in arms]
    rows = slice(max(t[0].start for t in trims), min(t[0].stop for t in trims))
    cols = slice(max(t[1].start for t in trims), min(t[1].stop for t in trims))
    target = target[rows, cols]
    target_amplitude = np.abs(target)
    target_phase = remove_phase_offset(np.angle(target), opts.phase_align_method)
    for arm in arms:
        if arm.error:
            continue  # scored as NaN: empty cells, and exit 1 naming the arm
        obj = arm.obj[rows, cols]
        arm.amplitude = scale_amplitude(np.abs(obj), target_amplitude)
        arm.phase = aligned_phase(obj, target, opts.phase_align_method)
        try:
            amp = all_metrics(arm.amplitude, target_amplitude, opts.ms_ssim_sigma, opts.frc_sigma)
            # MS-SSIM smoothing is for amplitude (noise there is photon noise), as in the reference.
            ph = all_metrics(arm.phase, target_phase, 0.0, opts.frc_sigma)
            arm.metrics = {m: (amp[m], ph[m]) for m in METRICS}
        except (ValueError, RuntimeError, FloatingPointError) as exc:
            arm.error = str(exc)
        if arm.metrics and not any(math.isfinite(v) for pair in arm.metrics.values() for v in pair):
            arm.error = "every metric is NaN"
    return target_amplitude, target_phase


def _cell(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else repr(float(value))


def _write_atomic_csv(path: Path, header: list[str], rows: list[list]) -> None:
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    write_atomically(path, text.getvalue().encode("utf-8"))  # the runner never sees half a table


def _metric_rows(arms: list[Arm]) -> list[list]:
    rows = []
    for arm in arms:
        for metric in METRICS:
            amp, ph = (arm.metrics or {}).get(metric, (math.nan, math.nan))
            rows.append([arm.name, metric, _cell(amp), _cell(ph), ""])
        shift = (math.nan, math.nan) if arm.error else arm.shift
        rows.append([arm.name, "registration_offset_dy", "", "", _cell(shift[0])])
        rows.append([arm.name, "registration_offset_dx", "", "", _cell(shift[1])])
        rows.append([arm.name, "computation_time_s", "", "", _cell(arm.seconds)])
    return rows


def _write_outputs(arms: list[Arm], floor: Arm, target_amplitude, target_phase, ground_truth,
                   opts: Options) -> None:
    out = opts.output_dir
    # The floor first: a reader that finds a fresh comparison_metrics.csv finds this run's floor.
    _write_atomic_csv(out / FLOOR_FILE, ["model", "metric", "amplitude", "phase", "value"], _metric_rows([floor]))
    for arm in arms:
        if arm.amplitude is None:
            continue
        # The curves that frc50 and frc1over7 were read from: same function, same smoothing.
        _, amp_frc = frc_curve(arm.amplitude, target_amplitude, opts.frc_sigma)
        _, ph_frc = frc_curve(arm.phase, target_phase, opts.frc_sigma)
        _write_atomic_csv(out / FRC_CURVE_FILES[arm.name], ["model", "frequency_bin", "amplitude_frc", "phase_frc"],
                          [[arm.name, i, _cell(a), _cell(p)] for i, (a, p) in enumerate(zip(amp_frc, ph_frc))])
    if opts.save_npz:
        np.savez(out / "reconstructions.npz", ground_truth=ground_truth,
                 **{f"{arm.name.lower()}_object": arm.obj for arm in arms})
    if opts.save_npz_aligned:
        np.savez(out / "reconstructions_aligned.npz", ground_truth_amplitude=target_amplitude,
                 ground_truth_phase=target_phase,
                 **{f"{arm.name.lower()}_{part}": getattr(arm, part) for arm in arms
                    for part in ("amplitude", "phase") if getattr(arm, part) is not None})
    _plot(arms, target_amplitude, target_phase, out / "comparison_plot.png")
    _write_atomic_csv(out / "comparison_metrics.csv", ["model", "metric", "amplitude", "phase", "value"],
                      _metric_rows(arms))


def _plot(arms: list[Arm], target_amplitude, target_phase, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("Ground truth", target_amplitude, target_phase)] + [
        (arm.name, arm.amplitude, arm.phase) for arm in arms if arm.amplitude is not None]
    fig, axes = plt.subplots(2, len(panels), figsize=(3 * len(panels), 6), squeeze=False)
    # Every panel of a row shares the ground truth's colour scale, so the eye compares like with like.
    limits = [(float(np.min(t)), float(np.max(t))) for t in (target_amplitude, target_phase)]
    for col, (name, amplitude, phase) in enumerate(panels):
        for row, (image, label, cmap) in enumerate(((amplitude, "amplitude", "gray"), (phase, "phase", "twilight"))):
            ax = axes[row][col]
            shown = ax.imshow(image, cmap=cmap, vmin=limits[row][0], vmax=limits[row][1])
            ax.set_title(f"{name} {label}", fontsize=9)
            ax.axis("off")
            fig.colorbar(shown, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def compare(opts: Options) -> list[Arm]:
    """Run the comparison and write every output; raises ComparisonError when an arm cannot be
    scored (after writing what could be written, NaN as empty cells)."""
    from ptychokit.npz_io import read_error_line, read_reconstruction

    data = _load_test_data(opts)
    log.info("test data %s: %d positions, object %s", opts.test_data, data.diffraction.shape[0], data.object.shape)
    arms = [_predict(opts.pinn_dir, data, opts.pinn_batch_size, opts.pinn_chunk_size, opts, "PtychoPINN"),
            _predict(opts.baseline_dir, data, opts.baseline_batch_size, opts.baseline_chunk_size, opts, "Baseline")]
    if opts.tike_recon_path is not None:
        try:
            recon = read_reconstruction(opts.tike_recon_path)
        except (FileNotFoundError, KeyError) as exc:
            raise ComparisonError(read_error_line("reconstruction", opts.tike_recon_path, exc)) from None
        if recon.object.shape != data.object.shape:
            raise ComparisonError(f"reconstruction {opts.tike_recon_path} is {recon.object.shape}, "
                                  f"the ground truth {data.object.shape}")
        # The arm is PtyChi whatever the NPZ says; PtychoPINN's script calls it Tike when the NPZ
        # says tike or nothing, so such a file is named in a warning rather than renamed.
        if recon.algorithm.lower() in ("tike", "unknown"):
            log.warning("reconstruction %s says its algorithm is %r; it is scored as the PtyChi arm "
                        "(PtychoPINN's script would name it Tike)", opts.tike_recon_path, recon.algorithm)
        log.info("PtyChi arm: %s", recon.algorithm)
        arms.append(Arm("PtyChi", recon.object, seconds=recon.elapsed_s if recon.elapsed_s is not None else math.nan,
                        method=recon.algorithm))
    box = scanned_box(arms[0].coverage)
    ground_truth = data.object
    target = ground_truth[box]
    for arm in arms:
        arm.obj = arm.obj[box]
    floor = Arm(FLOOR_MODEL, np.ones(target.shape, dtype=np.complex64), seconds=0.0)
    target_amplitude, target_phase = _score(arms + [floor], target, opts)
    opts.output_dir.mkdir(parents=True, exist_ok=True)
    _write_outputs(arms, floor, target_amplitude, target_phase, ground_truth, opts)
    failed = [f"{arm.name} ({arm.error})" for arm in arms if arm.error]
    if failed:
        raise ComparisonError(f"metrics could not be computed for {', '.join(failed)}")
    return arms
