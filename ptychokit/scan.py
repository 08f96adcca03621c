"""Scan geometry: jittered-grid positions, the y split and nearest-neighbour spacings."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def jittered_grid(object_size: int, patch_size: int, step: float, jitter: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Centre coordinates (x, y) of a raster scan with whole-pixel jitter, kept inside the object.

    Positions are whole pixels so that patch extraction is exact in both the simulation and the
    reconstruction; a sub-pixel scan would need interpolation the two sides must agree on.
    """
    half = patch_size // 2
    lo, hi = half, object_size - patch_size + half  # every patch lies fully inside the object
    axis = np.arange(lo, hi + 1e-9, step)
    ys, xs = np.meshgrid(axis, axis, indexing="ij")
    xs = xs.ravel() + rng.uniform(-jitter, jitter, xs.size)
    ys = ys.ravel() + rng.uniform(-jitter, jitter, ys.size)
    xs = np.clip(np.rint(xs), lo, hi)
    ys = np.clip(np.rint(ys), lo, hi)
    return xs.astype(np.float64), ys.astype(np.float64)


def split_masks(ycoords: np.ndarray, object_size: int) -> dict[str, np.ndarray]:
    """The spatial train/test split: train above y = 0.5 M, test below, so no position leaks."""
    boundary = 0.5 * object_size
    return {"train": ycoords < boundary, "test": ycoords >= boundary}


def nearest_neighbour_spacing(xcoords: np.ndarray, ycoords: np.ndarray) -> np.ndarray:
    """Distance from every position to its nearest other position (inf when it is alone)."""
    if xcoords.size < 2:
        return np.full(xcoords.size, np.inf)
    points = np.column_stack([xcoords, ycoords])
    distances, _ = cKDTree(points).query(points, k=2)
    return distances[:, 1]


def patch_corners(xcoords: np.ndarray, ycoords: np.ndarray, patch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-left (row, column) of each N x N patch whose centre is (x, y)."""
    half = patch_size // 2
    top = np.rint(ycoords).astype(np.int64) - half
    left = np.rint(xcoords).astype(np.int64) - half
    return top, left
