"""Gridsize-2 groups: each position with C - 1 partners drawn from its K nearest neighbours."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def _nearest(points: np.ndarray, k: int, min_distance: float) -> list[np.ndarray]:
    """Per position, its k - 1 nearest other positions at least `min_distance` away (fewer where
    there are not so many)."""
    n = points.shape[0]
    tree = cKDTree(points)
    found: list[np.ndarray | None] = [None] * n
    todo, reach = np.arange(n), min(n, 4 * k)
    while todo.size:  # widen the search for the positions that lack far-enough neighbours
        distances, indices = tree.query(points[todo], k=reach)
        distances, indices = distances.reshape(todo.size, -1), indices.reshape(todo.size, -1)
        short = []
        for row, i in enumerate(todo):
            keep = indices[row][(distances[row] >= min_distance) & (indices[row] != i)]
            if keep.size >= k - 1 or reach == n:
                found[i] = keep[:k - 1]
            else:
                short.append(i)
        todo, reach = np.asarray(short, dtype=np.int64), min(n, 4 * reach)
    return found


def neighbour_groups(xcoords: np.ndarray, ycoords: np.ndarray, channels: int, neighbours: int,
                     seed: int, min_distance: float = 0.0) -> np.ndarray:
    """(n, C) position indices: row i is position i (the anchor, column 0) and C - 1 partners.

    Partners are a seeded random choice among the anchor's K - 1 nearest other positions, so the
    groups are reproducible and the same rule serves training and inference. `min_distance`
    keeps partners at least that far from the anchor: a network trained on a view's groups is
    given groups of the same geometry when the test data are a denser scan (PtychoPINN's Phase G
    tests on every position of the split). With fewer than C positions in all, partners repeat (a
    view of a tiny scan can keep only two or three).
    """
    n = xcoords.size
    if n == 0:
        raise ValueError("no positions to group")
    k = min(max(neighbours, channels), n)
    candidates_of = _nearest(np.column_stack([xcoords, ycoords]), k, min_distance)
    return _draw_groups(np.arange(n), candidates_of, channels, np.random.default_rng(seed))


def _draw_groups(anchors: np.ndarray, candidates_of: list[np.ndarray], channels: int,
                 rng: np.random.Generator) -> np.ndarray:
    """One group per anchor: the anchor (column 0) and C - 1 partners drawn from its candidates,
    repeated where there are fewer than C - 1 (the anchor itself where there are none)."""
    groups = np.empty((anchors.size, channels), dtype=np.int64)
    for row, anchor in enumerate(anchors):
        candidates = candidates_of[anchor]
        if candidates.size == 0:
            candidates = np.array([anchor])
        partners = rng.choice(candidates, size=channels - 1, replace=candidates.size < channels - 1)
        groups[row] = np.concatenate([[anchor], partners])
    return groups


def group_offsets(xcoords: np.ndarray, ycoords: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(g, C, 2) whole-pixel (dy, dx) of every member relative to its group's anchor."""
    dy = np.rint(ycoords[groups] - ycoords[groups[:, :1]])
    dx = np.rint(xcoords[groups] - xcoords[groups[:, :1]])
    return np.stack([dy, dx], axis=-1).astype(np.int64)


def partner_min_distance(xcoords: np.ndarray, ycoords: np.ndarray, groups: np.ndarray) -> float:
    """The shortest anchor-to-partner distance among the groups: what inference keeps to."""
    distances = np.hypot(xcoords[groups[:, 1:]] - xcoords[groups[:, :1]],
                         ycoords[groups[:, 1:]] - ycoords[groups[:, :1]])
    distances = distances[distances > 0]  # repeated partners of a tiny scan
    return float(distances.min()) if distances.size else 0.0


def training_groups(xcoords: np.ndarray, ycoords: np.ndarray, n_groups: int, channels: int,
                    neighbours: int, seed: int) -> np.ndarray:
    """(n_groups, C) groups for training, as PtychoPINN forms them: each anchored at a position
    with C - 1 partners drawn from its K nearest, their number chosen independently of the number
    of positions (oversampling: a position anchors several groups, each with other partners).

    Anchors go round the positions in seeded random order, so every position anchors
    n_groups / n groups, give or take one; column 0 is the anchor, as at inference.
    """
    n = xcoords.size
    if n == 0:
        raise ValueError("no positions to group")
    k = min(max(neighbours, channels), n)
    points = np.column_stack([xcoords, ycoords])
    nearest = cKDTree(points).query(points, k=k)[1].reshape(n, k)
    candidates_of = [row[row != anchor] for anchor, row in enumerate(nearest)]
    rng = np.random.default_rng(seed)
    rounds = -(-n_groups // n)
    anchors = np.concatenate([rng.permutation(n) for _ in range(rounds)])[:n_groups]
    return _draw_groups(anchors, candidates_of, channels, rng)
