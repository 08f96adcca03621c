"""Draw the training curves of a study's Phase E models from their training_log.csv.

    python scripts/plot_training.py --study DIR --out PNG

One panel per kind of model: the PINNs' NLL excess (their Poisson NLL above that of the counts
themselves, which needs no ground truth) and the baselines' loss, against the step, one line per
dose and view. Prints the path it wrote; exit 1 with one line when no training log is found.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on compute nodes
import matplotlib.pyplot as plt  # noqa: E402


def read_curves(study: Path) -> list[dict]:
    """Per checkpoint folder under phase_e: its kind, dose, view and logged rows."""
    curves = []
    for config in sorted(study.glob("phase_e/dose_*/*/gs*/model.json")):
        info = json.loads(config.read_text(encoding="utf-8"))
        with open(config.parent / "training_log.csv", newline="", encoding="utf-8") as handle:
            rows = [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(handle)]
        prov = info.get("provenance", {})
        curves.append({"kind": info["kind"], "dose": prov.get("dose"), "view": prov.get("view") or "baseline",
                       "rows": rows})
    return curves


def plot(curves: list[dict], out: Path) -> Path:
    kinds = [("pinn", "nll_excess", "PINN: NLL excess (per pixel)"), ("baseline", "loss", "baseline: weighted error")]
    doses = sorted({c["dose"] for c in curves if c["dose"] is not None})
    colour = {dose: f"C{i}" for i, dose in enumerate(doses)}  # one colour per dose, a line style per view
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for ax, (kind, column, title) in zip(axes, kinds):
        for curve in (c for c in curves if c["kind"] == kind):
            rows = [r for r in curve["rows"] if column in r]
            style = "-" if curve["view"] in ("dense", "baseline") else "--"
            ax.plot([r["step"] for r in rows], [r[column] for r in rows], style, color=colour.get(curve["dose"]),
                    label=f"dose {curve['dose']:g} {curve['view']}")
        ax.set(title=title, xlabel="step", yscale="log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        curves = read_curves(args.study)
    except (OSError, KeyError, ValueError) as exc:
        print(f"plot_training: error: cannot read the training logs of {args.study}: {exc}", file=sys.stderr)
        return 1
    if not curves:
        print(f"plot_training: error: no phase_e/dose_*/*/gs*/model.json under {args.study}", file=sys.stderr)
        return 1
    print(plot(curves, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
