"""Phase D's spacing selection on hand-built grids."""

from __future__ import annotations

import numpy as np

from ptychokit.scan import nearest_neighbour_spacing
from ptychokit.views import select_view


def _grid(step: float, count: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.meshgrid(np.arange(count) * step, np.arange(count) * step, indexing="ij")
    return xs.ravel().astype(float), ys.ravel().astype(float)


def test_a_grid_wider_than_the_threshold_is_kept_whole_by_direct_selection():
    xs, ys = _grid(step=10.0, count=5)  # threshold (1 - 0.6) * 20 = 8 px < 10 px pitch
    chosen = select_view(xs, ys, "dense", overlap=0.6, patch_size=20)
    assert chosen.metadata["selection_strategy"] == "direct"
    assert chosen.metadata["spacing_threshold"] == 8.0
    assert chosen.metadata["n_accepted"] == 25 and chosen.metadata["n_rejected"] == 0
    assert chosen.metadata["acceptance_rate"] == 1.0
    assert np.array_equal(chosen.indices, np.arange(25))


def test_a_grid_finer_than_the_threshold_needs_the_greedy_pass():
    xs, ys = _grid(step=5.0, count=9)  # no position has a neighbour 8 px away
    chosen = select_view(xs, ys, "dense", overlap=0.6, patch_size=20)
    kept_x, kept_y = xs[chosen.indices], ys[chosen.indices]
    assert chosen.metadata["selection_strategy"] == "greedy"
    assert 0 < chosen.indices.size < xs.size
    assert nearest_neighbour_spacing(kept_x, kept_y).min() >= 8.0
    # Scan-order greedy on a 5 px raster keeps every other row and column: 5 x 5 of 9 x 9.
    assert chosen.indices.size == 25


def test_acceptance_rate_is_accepted_over_all_positions():
    xs, ys = _grid(step=5.0, count=9)
    meta = select_view(xs, ys, "sparse", overlap=0.2, patch_size=20).metadata
    assert meta["n_accepted"] + meta["n_rejected"] == 81
    assert meta["acceptance_rate"] == meta["n_accepted"] / 81
    assert meta["spacing_threshold"] == 16.0
    assert set(meta) >= {"overlap_view", "geometry_acceptance_bound", "effective_min_acceptance"}


def test_selection_is_deterministic():
    rng = np.random.default_rng(7)
    xs, ys = rng.uniform(0, 100, 300), rng.uniform(0, 100, 300)
    first = select_view(xs, ys, "dense", 0.7, 32)
    second = select_view(xs, ys, "dense", 0.7, 32)
    assert np.array_equal(first.indices, second.indices) and first.metadata == second.metadata
