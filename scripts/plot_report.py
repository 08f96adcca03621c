"""Draw the report's figures from its study_table.csv (and one condition's aligned images).

    python scripts/plot_report.py --table REPORT/study_table.csv --out REPORT/plots \
        [--montage-npz OUT/reconstructions_aligned.npz --montage-title dose_100000/dense/test]

One PNG per metric: the metric against dose (log axis), one line per model, one panel per view
and split, amplitude on the top row and phase below. The montage shows the ground truth and every
model's aligned amplitude and phase. Prints the path of each PNG it writes; exit 1 with one line
when an input cannot be read. `runner report` runs this script, so the runner itself never imports
matplotlib or numpy.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on compute nodes
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

MODELS = ("PtychoPINN", "Baseline", "PtyChi")
METRIC_ORDER = ("ms_ssim", "ssim", "psnr", "mae", "mse", "frc50", "frc1over7")
PARTS = ("amplitude", "phase")


def read_table(path: Path) -> dict:
    """{metric: {(view, split): {model: [(dose, amplitude, phase)]}}}"""
    data: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            cell = lambda v: float(v) if v else np.nan  # noqa: E731
            data[row["metric"]][(row["view"], row["split"])][row["model"]].append(
                (int(row["dose"]), cell(row["amplitude"]), cell(row["phase"])))
    return data


def plot_metric(metric: str, panels: dict, out: Path) -> Path:
    keys = sorted(panels, key=lambda k: (k[0] != "dense", k[1] != "train", k))
    fig, axes = plt.subplots(2, len(keys), figsize=(3.4 * len(keys), 5.4), squeeze=False,
                             sharex=True, constrained_layout=True)
    for col, key in enumerate(keys):
        for row, part in enumerate(PARTS):
            ax = axes[row][col]
            models = sorted(panels[key], key=lambda m: (MODELS.index(m) if m in MODELS else 9, m))
            for model in models:
                points = sorted(panels[key][model])
                ax.plot([p[0] for p in points], [p[1 + row] for p in points], marker="o", label=model)
            ax.set_xscale("log")
            ax.set_title(f"{key[0]} {key[1]}: {part}", fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            if row == 1:
                ax.set_xlabel("dose (photons)")
            if col == 0:
                ax.set_ylabel(metric)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{metric} against dose")
    path = out / f"{metric}.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


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
    path = out / "montage.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--montage-npz", type=Path)
    parser.add_argument("--montage-title", default="")
    args = parser.parse_args(argv)
    try:
        data = read_table(args.table)
    except (OSError, KeyError, ValueError) as exc:
        print(f"plot_report: error: cannot read {args.table}: {exc}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for metric in sorted(data, key=lambda m: (METRIC_ORDER.index(m) if m in METRIC_ORDER else 99, m)):
        print(plot_metric(metric, data[metric], args.out), flush=True)
    if args.montage_npz:
        try:
            print(plot_montage(args.montage_npz, args.montage_title, args.out), flush=True)
        except (OSError, KeyError, ValueError) as exc:
            print(f"plot_report: error: no montage from {args.montage_npz}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
