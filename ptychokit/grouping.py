"""Gridsize-2 groups: each position with C - 1 partners drawn from its K nearest neighbours."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def neighbour_groups(xcoords: np.ndarray, ycoords: np.ndarray, channels: int, neighbours: int,
                     seed: int) -> np.ndarray:
    """(n, C) position indices: row i is position i (the anchor, column 0) and C - 1 partners.

    Partners are a seeded random choice among the anchor's K nearest neighbours, so the groups
    are reproducible and the same rule serves training and inference. With fewer than C positions
    in all, partners repeat (a view of a tiny scan can keep only two or three).
    """
    n = xcoords.size
    if n == 0:
        raise ValueError("no positions to group")
    k = min(max(neighbours, channels), n)
    points = np.column_stack([xcoords, ycoords])
    _, nearest = cKDTree(points).query(points, k=k)
    nearest = nearest.reshape(n, k)
    rng = np.random.default_rng(seed)
    groups = np.empty((n, channels), dtype=np.int64)
    for anchor in range(n):
        candidates = nearest[anchor][nearest[anchor] != anchor]
        if candidates.size == 0:
            candidates = np.array([anchor])
        partners = rng.choice(candidates, size=channels - 1, replace=candidates.size < channels - 1)
        groups[anchor] = np.concatenate([[anchor], partners])
    return groups


def group_offsets(xcoords: np.ndarray, ycoords: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(g, C, 2) whole-pixel (dy, dx) of every member relative to its group's anchor."""
    dy = np.rint(ycoords[groups] - ycoords[groups[:, :1]])
    dx = np.rint(xcoords[groups] - xcoords[groups[:, :1]])
    return np.stack([dy, dx], axis=-1).astype(np.int64)
