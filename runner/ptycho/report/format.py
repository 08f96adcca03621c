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


HEADLINE_TITLE = ("MS-SSIM {part}, {split} split: the mean over the replicate seeds ± the half-width of its "
                  "95 % Student-t interval (seeds: how many; PtyChi and FlatFloor have no training seed, one "
                  "value). FlatFloor is a flat phase and constant amplitude, the score of an arm that learned "
                  "nothing")


def headline(summary: dict, part: str = "phase") -> tuple[str, list[tuple[int, str, int | None, dict]]]:
    """MS-SSIM per view, dose (and training-set size when the study has no whole-split rows) and
    model, of the held-out split when there is one: (split, rows of (dose, view, size, {model:
    study_summary row})). The views differ too much to be averaged; the floor beside the arms
    shows whether each learned anything."""
    rows = [r for r in summary["study_summary"] if r["metric"] == "ms_ssim" and r[f"{part}_mean"] is not None]
    splits = sorted({r["split"] for r in rows})
    split = "test" if "test" in splits else (splits[0] if splits else "test")
    rows = [r for r in rows if r["split"] == split]
    rows = [r for r in rows if r["train_size"] is None] or rows
    cells: dict = defaultdict(dict)
    for r in rows:
        cells[(r["view"] != "dense", r["view"], r["dose"], r["train_size"] or 0)][r["model"]] = r
    return split, [(dose, view, size or None, models) for (_, view, dose, size), models in sorted(cells.items())]


def with_interval(row: dict | None, part: str) -> str:
    """'0.439 ± 0.008' (mean ± the 95 % half-width), or the mean alone when there is no interval."""
    if row is None or row[f"{part}_mean"] is None:
        return "n/a"
    low, high = row[f"{part}_ci_low"], row[f"{part}_ci_high"]
    return fmt(row[f"{part}_mean"]) if low is None else f"{fmt(row[f'{part}_mean'])} ± {(high - low) / 2:.3f}"


def seeds(models: dict) -> int:
    """How many seeds a headline row's networks have (the most of any arm)."""
    return max((r["n"] for r in models.values()), default=0)


def verdict(row: dict, part: str) -> str:
    """A paired difference called only when its 95 % interval excludes 0."""
    low, high = row[f"{part}_ci_low"], row[f"{part}_ci_high"]
    if row[f"{part}_mean"] is None:
        return "n/a"
    if low is None:
        return "one seed: no interval, no call"
    if low > 0:
        return "PtychoPINN higher"
    if high < 0:
        return "PtychoPINN lower"
    return "no difference (the interval holds 0)"


def paired_cell(row: dict, part: str) -> str:
    mean, low, high = row[f"{part}_mean"], row[f"{part}_ci_low"], row[f"{part}_ci_high"]
    shown = fmt(mean, True) if low is None else f"{fmt(mean, True)} [{fmt(low, True)}, {fmt(high, True)}]"
    return f"{shown} (n={row['n']}): {verdict(row, part)}"


PAIRED_SEEDS_NOTE = ("Differences over seeds: PtychoPINN minus the other arm, paired within each seed's "
                     "comparison, the mean over the seeds with its 95 % Student-t interval. A difference is "
                     "called (higher, lower) only when its interval excludes 0; an interval that holds 0 is "
                     "no difference at this number of seeds, and one seed gives no interval and no call. "
                     "MS-SSIM: higher is better; MAE: lower is better.")


def replicate_label(row: dict) -> str:
    """A condition and its training-set size, as the deltas list them."""
    size = f" train_size={row['train_size']}" if row.get("train_size") is not None else ""
    return f"dose_{row['dose']}/{row['view']}/{row['split']}{size}"
