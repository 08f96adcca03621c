"""Draw the report's figures from its study_table.csv (and one condition's aligned images).

    python scripts/plot_report.py --table REPORT/study_table.csv --out REPORT/plots \
        [--summary REPORT/study_summary.csv] \
        [--montage-npz OUT/reconstructions_aligned.npz --montage-title dose_100000/dense/test]

One PNG per metric: the metric against dose (log axis), one line per model, one panel per view
and split, amplitude on the top row and phase below. With --summary (study_summary.csv: the mean
and 95% interval over replicate seeds), those lines are the default training set's means with the
intervals as error bars, and train_size.png shows MS-SSIM against the number of training patterns.
The montage shows the ground truth and every model's aligned amplitude and phase; beside it, one
FRC plot per model of the same condition (montage_frc_<model>.png), drawn from the `*_frc_curves.csv` and comparison_metrics.csv that the
comparison wrote next to the NPZ (or in --frc-dir). Prints the path of each PNG it writes; exit 1
with one line when an input cannot be read. `runner report` runs this script, so the runner itself never imports
matplotlib or numpy.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

if __package__ in (None, ""):  # run as a file: make the checkout importable (ptychokit)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

matplotlib.use("Agg")  # no display on compute nodes
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

MODELS = ("PtychoPINN", "Baseline", "PtyChi")
TRAINED = ("PtychoPINN", "Baseline")  # the arms whose quality depends on the training set's size
COLOURS = {"PtychoPINN": "C0", "Baseline": "C1", "PtyChi": "C2"}
FLOOR = "FlatFloor"  # the trivial predictor: drawn as a grey dashed line, the level of no learning
FRC_FILES = {"PtychoPINN": "pinn_frc_curves.csv", "Baseline": "baseline_frc_curves.csv",
             "PtyChi": "ptychi_frc_curves.csv"}
METRIC_ORDER = ("ms_ssim", "ssim", "psnr", "mae", "mse", "frc50", "frc1over7")
PARTS = ("amplitude", "phase")


def _cell(value: str) -> float:
    return float(value) if value else np.nan


def read_table(path: Path) -> list[dict]:
    """study_table.csv's rows in the summary's shape (one attempt: a mean without interval)."""
    with open(path, newline="") as f:
        return [dict(metric=row["metric"], view=row["view"], split=row["split"], model=row["model"],
                     dose=int(row["dose"]), train_size=None, amplitude_mean=_cell(row["amplitude"]),
                     phase_mean=_cell(row["phase"])) for row in csv.DictReader(f)]


def read_summary(path: Path) -> list[dict]:
    """study_summary.csv's rows: numbers as floats (NaN where empty), train_size None for the default
    training set."""
    numbers = [f"{part}_{stat}" for part in PARTS for stat in ("mean", "ci_low", "ci_high")] + ["n_train"]
    with open(path, newline="") as f:
        return [dict(row, dose=int(row["dose"]), train_size=int(row["train_size"]) if row["train_size"] else None,
                     **{key: _cell(row[key]) for key in numbers}) for row in csv.DictReader(f)]


def by_panel(rows: list[dict]) -> dict:
    """{metric: {(view, split): {model: [row]}}}"""
    data: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for row in rows:
        data[row["metric"]][(row["view"], row["split"])][row["model"]].append(row)
    return data


def summary_series(rows: list[dict], part: str, x: str = "dose") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One line's points sorted by x: x, the mean, and the error bars as a (2, n) array of the distances
    down to ci_low and up to ci_high; NaN where there is no interval, which matplotlib draws as no bar."""
    rows = sorted(rows, key=lambda r: r[x])
    mean = np.array([r[f"{part}_mean"] for r in rows], dtype=float)
    low, high = (np.array([r.get(f"{part}_{bound}", np.nan) for r in rows], dtype=float)
                 for bound in ("ci_low", "ci_high"))
    return np.array([r[x] for r in rows], dtype=float), mean, np.vstack([mean - low, high - mean])


def plot_metric(metric: str, panels: dict, out: Path) -> Path:
    keys = sorted(panels, key=lambda k: (k[0] != "dense", k[1] != "train", k))
    fig, axes = plt.subplots(2, len(keys), figsize=(3.4 * len(keys), 5.4), squeeze=False,
                             sharex=True, constrained_layout=True)
    legend = []  # the first panel's, in the models' order (matplotlib would list error-bar lines last)
    for col, key in enumerate(keys):
        for row, part in enumerate(PARTS):
            ax = axes[row][col]
            models = sorted(panels[key], key=lambda m: (MODELS.index(m) if m in MODELS else 9, m))
            for model in models:
                x, y, yerr = summary_series(panels[key][model], part)
                if model == FLOOR:
                    drawn = ax.plot(x, y, color="0.45", linestyle="--",
                                    label=f"{FLOOR} (flat phase, mean amplitude)")[0]
                elif np.isfinite(yerr).any():
                    drawn = ax.errorbar(x, y, yerr=yerr, marker="o", capsize=3, label=model)
                else:
                    drawn = ax.plot(x, y, marker="o", label=model)[0]
                if row == col == 0:
                    legend.append(drawn)
            ax.set_xscale("log")
            _label(ax, f"{key[0]} {key[1]}: {part}", "dose (photons)" if row == 1 else None,
                   metric if col == 0 else None)
    axes[0][0].legend(handles=legend, fontsize=8)
    fig.suptitle(f"{metric} against dose")
    return _save(fig, out / f"{metric}.png")


def _label(ax, title: str, xlabel: str | None, ylabel: str | None) -> None:
    """A panel's title, grid, and its axis labels where the grid of panels shows them."""
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _patterns(row: dict) -> float | None:
    """The training patterns a row stands for: those its models trained on, else those requested."""
    return row["n_train"] if np.isfinite(row["n_train"]) else row["train_size"]


def plot_train_size(rows: list[dict], out: Path, metric: str = "ms_ssim") -> Path | None:
    """The metric against the number of training patterns, one panel per dose and part, for the dense
    test condition (else the first one with sized rows); None when no row has a train_size."""
    rows = [r for r in rows if r["metric"] == metric]
    conditions = list(dict.fromkeys((r["view"], r["split"]) for r in rows if r["train_size"] is not None))
    if not conditions:
        return None
    view, split = ("dense", "test") if ("dense", "test") in conditions else conditions[0]
    rows = [r for r in rows if (r["view"], r["split"]) == (view, split)]
    doses = sorted({r["dose"] for r in rows if r["train_size"] is not None})
    fig, axes = plt.subplots(2, len(doses), figsize=(max(3.4 * len(doses), 5.0), 5.4), squeeze=False,
                             sharex=True, constrained_layout=True)
    for col, dose in enumerate(doses):
        here = [r for r in rows if r["dose"] == dose]
        for row, part in enumerate(PARTS):
            ax = axes[row][col]
            drawn = []  # for the legend: trained arms first (matplotlib would list error-bar lines last)
            for model in TRAINED:
                # The default training set is one more point wherever its size is known.
                line = [dict(r, patterns=_patterns(r)) for r in here
                        if r["model"] == model and _patterns(r) is not None]
                if line:
                    x, y, yerr = summary_series(line, part, x="patterns")
                    drawn.append(ax.errorbar(x, y, yerr=yerr, marker="o", capsize=3, color=COLOURS[model],
                                             label=model))
            # Arms without training do not depend on its size: a level at this dose.
            for model, style in (("PtyChi", dict(color=COLOURS["PtyChi"], linestyle=":")),
                                 (FLOOR, dict(color="0.45", linestyle="--"))):
                values = [r[f"{part}_mean"] for r in here if r["model"] == model and np.isfinite(r[f"{part}_mean"])]
                if values:
                    drawn.append(ax.axhline(np.mean(values), label=model, **style))
            if row == col == 0:
                ax.legend(handles=drawn, fontsize=8)
            ax.set_xscale("log", base=2)
            _label(ax, f"dose {dose:g}: {part}", "training patterns" if row == 1 else None,
                   metric if col == 0 else None)
    fig.suptitle(f"{metric} against training patterns ({view} {split})")
    return _save(fig, out / "train_size.png")


def plot_montage(npz: Path, title: str, out: Path) -> Path:
    with np.load(npz) as data:
        images = {key: data[key] for key in data.files}
    columns = [("ground_truth", "ground truth")] + [(m.lower(), m) for m in MODELS
                                                    if f"{m.lower()}_amplitude" in images]
    height, width = images["ground_truth_amplitude"].shape
    fig, axes = plt.subplots(2, len(columns), squeeze=False, constrained_layout=True,
                             figsize=(3.0 * len(columns), 2 * 3.0 * height / width + 0.9))
    for row, part in enumerate(PARTS):
        # One colour scale per row, the ground truth's, so the arms are compared on equal terms.
        low, high = np.nanpercentile(images[f"ground_truth_{part}"], [1, 99])
        for col, (prefix, label) in enumerate(columns):
            ax = axes[row][col]
            ax.imshow(images[f"{prefix}_{part}"], cmap="gray" if part == "amplitude" else "viridis",
                      vmin=low, vmax=high)
            ax.set_title(f"{label}: {part}", fontsize=10)
            ax.axis("off")
    fig.suptitle(title)
    return _save(fig, out / "montage.png")


def _frc_table(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    cell = lambda v: float(v) if v else np.nan  # noqa: E731
    return (np.array([int(r["frequency_bin"]) for r in rows]),
            {part: np.array([cell(r[f"{part}_frc"]) for r in rows]) for part in PARTS})


def plot_frc(folder: Path, title: str, side: int, out: Path) -> list[Path]:
    """One plot per model: its amplitude and phase FRC against the ground truth, the 0.5 and 1/7
    thresholds, the resolutions the comparison reported, and the rings kept out of the search."""
    from ptychokit.image_metrics import LOWEST_SEARCHED, RING_WIDTH

    models = [m for m in MODELS if (folder / FRC_FILES[m]).is_file()]
    if not models:
        return []
    with open(folder / "comparison_metrics.csv", newline="") as f:
        reported = {(r["model"], r["metric"]): r for r in csv.DictReader(f)}
    paths = []
    for model in models:
        bins, curves = _frc_table(folder / FRC_FILES[model])
        rings = (side // 2) // RING_WIDTH + 1
        if len(bins) != rings:
            raise ValueError(f"{FRC_FILES[model]} has {len(bins)} rings, not the {rings} of today's FRC "
                             f"on {side} px: rerun the comparison")
        frequency = bins * RING_WIDTH / side
        fig, ax = plt.subplots(figsize=(6.0, 3.8), constrained_layout=True)
        ax.axvspan(0, (LOWEST_SEARCHED - 0.5) * RING_WIDTH / side, color="0.9", label="not searched")
        for part, colour in zip(PARTS, ("tab:blue", "tab:orange")):
            values = {m: reported.get((model, m), {}).get(part) for m in ("frc50", "frc1over7")}
            shown = ", ".join(f"{m} {float(v):.3f}" for m, v in values.items() if v)
            ax.plot(frequency, curves[part], color=colour, marker=".", label=f"{part} ({shown})" if shown else part)
            for metric, style in (("frc50", "--"), ("frc1over7", ":")):
                if values[metric]:
                    ax.axvline(float(values[metric]), color=colour, linestyle=style, linewidth=1)
        ax.axhline(0.5, color="0.3", linestyle="--", linewidth=0.8, label="0.5 (frc50)")
        ax.axhline(1 / 7, color="0.3", linestyle=":", linewidth=0.8, label="1/7 (frc1over7)")
        ax.set(xlim=(0, 0.5), ylim=(-0.2, 1.02), xlabel="spatial frequency (cycles/pixel)", ylabel="FRC",
               title=f"{model} against the ground truth: {title}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        paths.append(_save(fig, out / f"montage_frc_{model.lower()}.png"))
    return paths


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--summary", type=Path, help="study_summary.csv: draw means with 95%% intervals")
    parser.add_argument("--montage-npz", type=Path)
    parser.add_argument("--montage-title", default="")
    parser.add_argument("--frc-dir", type=Path,
                        help="folder of the montage condition's *_frc_curves.csv (default: the NPZ's folder)")
    args = parser.parse_args(argv)
    source = args.table
    try:
        rows = read_table(source)
        if args.summary:
            source = args.summary
            rows = read_summary(source)
    except (OSError, KeyError, ValueError) as exc:
        print(f"plot_report: error: cannot read {source}: {exc}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    data = by_panel([r for r in rows if r["train_size"] is None])  # against dose: the default training set
    for metric in sorted(data, key=lambda m: (METRIC_ORDER.index(m) if m in METRIC_ORDER else 99, m)):
        print(plot_metric(metric, data[metric], args.out), flush=True)
    sized = plot_train_size(rows, args.out)
    if sized:
        print(sized, flush=True)
    if args.montage_npz:
        try:
            print(plot_montage(args.montage_npz, args.montage_title, args.out), flush=True)
        except (OSError, KeyError, ValueError) as exc:
            print(f"plot_report: error: no montage from {args.montage_npz}: {exc}", file=sys.stderr)
            return 1
        folder = args.frc_dir or args.montage_npz.parent
        try:
            with np.load(args.montage_npz) as data:
                side = min(data["ground_truth_amplitude"].shape)
            for path in plot_frc(folder, args.montage_title, side, args.out):
                print(path, flush=True)
        except (OSError, KeyError, ValueError) as exc:
            print(f"plot_report: error: no FRC plots from {folder}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
