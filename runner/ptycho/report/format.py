"""How the report shows numbers: the helpers the text files and the HTML page share (neither
renderer imports the other)."""

from __future__ import annotations

from collections import defaultdict
from statistics import fmean

from runner.ptycho.arms import EXPECTED_MODELS

COMPONENTS = ("amplitude", "phase")


def mean(values: list[float]) -> float | None:
    return fmean(values) if values else None


def model_order(model: str) -> tuple:
    """The study's arms first, in its order; any other model (e.g. a floor) after them."""
    return (EXPECTED_MODELS.index(model) if model in EXPECTED_MODELS else len(EXPECTED_MODELS), model)


def fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def short(value: float | None) -> str:
    """A loss or cost in four significant digits: they span orders of magnitude."""
    return "n/a" if value is None else f"{value:.4g}"


def seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def count(value: int | None) -> str:
    return "n/a" if value is None else str(value)


PAIRED_NOTE = ("Paired differences, PtychoPINN minus the other arm, over the conditions where both "
               "have a value (MS-SSIM: positive = PINN better; MAE: negative = PINN better). "
               "PtychoPINN's own delta files (metrics_delta_summary.json) hold the difference of the "
               "arms' means instead, each mean over every condition where that arm has a value; the two "
               "differ only when a cell is empty, and then both are shown.")


def delta_cell(entry: dict, part: str) -> str:
    """The paired delta, and the difference of means beside it where the two differ."""
    paired, of_means = entry[part], entry[f"difference_of_means_{part}"]
    if paired == of_means or (paired is not None and of_means is not None and abs(paired - of_means) < 1e-12):
        return fmt(paired, True)
    return f"{fmt(paired, True)} (difference of means {fmt(of_means, True)})"


HEADLINE_TITLE = ("MS-SSIM {part} by dose, view and model (mean over the splits; FlatFloor is a flat "
                  "phase and constant amplitude, the score of an arm that learned nothing)")


def headline(summary: dict, part: str = "phase") -> list[tuple[int, str, dict]]:
    """MS-SSIM per view, dose and model (mean over the splits): the views differ too much to be
    averaged, and the floor beside the arms shows whether each learned anything."""
    cells: dict = defaultdict(lambda: defaultdict(list))
    for job in summary["jobs"]:
        for model, metrics in job["metrics"].items():
            value = metrics.get("ms_ssim", {}).get(part)
            if value is not None:
                cells[(job["view"], job["dose"])][model].append(value)
    return [(dose, view, {m: mean(v) for m, v in cells[(view, dose)].items()})
            for view, dose in sorted(cells, key=lambda k: (k[0] != "dense", k[0], k[1]))]
