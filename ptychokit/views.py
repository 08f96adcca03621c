"""Phase D's overlap views: keep the positions whose spacing matches a view's target overlap.

A view with target overlap f wants neighbours at least (1 - f) x N apart. The direct test keeps
every position whose nearest neighbour is that far; on a dense raster almost none pass, so a
deterministic greedy pass (scan order, accept a position when it is far enough from all accepted
ones) picks a well-spread subset instead. The metadata recorded is the STUDY.md §3 set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ptychokit.scan import nearest_neighbour_spacing

MIN_ACCEPTANCE = 0.1  # below this share of passing positions, the direct test is not trusted
MIN_POSITIONS = 4  # a gridsize-2 group needs 4 patterns


@dataclass(frozen=True)
class ViewSelection:
    """The kept positions (indices into the input, ascending) and the Phase D metadata."""

    indices: np.ndarray
    metadata: dict[str, Any]


def spacing_threshold(overlap: float, patch_size: int) -> float:
    return (1.0 - overlap) * patch_size


def geometry_acceptance_bound(xcoords: np.ndarray, ycoords: np.ndarray, threshold: float) -> float:
    """The largest share of positions that could be `threshold` apart inside the scanned box.

    Discs of diameter `threshold` packed hexagonally in the box grown by one threshold; an upper
    bound, so a target above it can never be met by any selection.
    """
    n = xcoords.size
    if n == 0:
        return 0.0
    width = np.ptp(xcoords) + threshold
    height = np.ptp(ycoords) + threshold
    capacity = width * height / (threshold**2 * np.sqrt(3) / 2)
    return float(min(1.0, capacity / n))


def greedy_min_spacing(xcoords: np.ndarray, ycoords: np.ndarray, threshold: float) -> np.ndarray:
    """Positions, in scan order, each at least `threshold` from every earlier accepted one."""
    order = np.lexsort((xcoords, ycoords))  # row by row, like the raster scan
    kept_x = np.empty(xcoords.size)
    kept_y = np.empty(ycoords.size)
    kept: list[int] = []
    limit = threshold**2
    for index in order:
        k = len(kept)
        if k and np.min((kept_x[:k] - xcoords[index]) ** 2 + (kept_y[:k] - ycoords[index]) ** 2) < limit:
            continue
        kept_x[k], kept_y[k] = xcoords[index], ycoords[index]
        kept.append(int(index))
    return np.sort(np.asarray(kept, dtype=np.int64))


def select_view(xcoords: np.ndarray, ycoords: np.ndarray, view: str, overlap: float,
                patch_size: int) -> ViewSelection:
    """The positions of one view, direct when enough pass the spacing test, greedy otherwise."""
    n = xcoords.size
    threshold = spacing_threshold(overlap, patch_size)
    bound = geometry_acceptance_bound(xcoords, ycoords, threshold)
    effective_min = min(MIN_ACCEPTANCE, bound)
    passing = np.flatnonzero(nearest_neighbour_spacing(xcoords, ycoords) >= threshold)
    if n and passing.size >= MIN_POSITIONS and passing.size / n >= effective_min:
        strategy, indices = "direct", passing
    else:
        strategy, indices = "greedy", greedy_min_spacing(xcoords, ycoords, threshold)
    metadata = {
        "overlap_view": view,
        "target_overlap": overlap,
        "spacing_threshold": float(threshold),
        "n_positions": int(n),
        "n_accepted": int(indices.size),
        "n_rejected": int(n - indices.size),
        "acceptance_rate": float(indices.size / n) if n else 0.0,
        "selection_strategy": strategy,
        "geometry_acceptance_bound": bound,
        "effective_min_acceptance": float(effective_min),
    }
    return ViewSelection(indices=indices, metadata=metadata)
