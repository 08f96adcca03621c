"""Stitching patches back into one object image by averaging them at their scan positions."""

from __future__ import annotations

import numpy as np

from ptychokit.scan import patch_corners


def stitch_patches(patches: np.ndarray, xcoords: np.ndarray, ycoords: np.ndarray,
                   object_shape: tuple[int, int], crop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(image, coverage): the mean of the central `crop` x `crop` of every patch at its position.

    A crop (the compare script's --stitch-crop-size) keeps only the well-lit centre of each patch,
    whose edges the probe barely touched. `coverage` counts the patches behind every pixel; pixels
    with coverage 0 are 0 in the image.
    """
    n, size, _ = patches.shape
    crop = size if crop is None else int(crop)
    if not 0 < crop <= size:
        raise ValueError(f"crop {crop} must satisfy 0 < crop <= {size}")
    margin = (size - crop) // 2
    top, left = patch_corners(xcoords, ycoords, size)
    rows = top[:, None, None] + margin + np.arange(crop)[None, :, None]
    cols = left[:, None, None] + margin + np.arange(crop)[None, None, :]
    rows, cols = np.broadcast_arrays(rows, cols)
    inside = (rows >= 0) & (rows < object_shape[0]) & (cols >= 0) & (cols < object_shape[1])
    values = patches[:, margin:margin + crop, margin:margin + crop]
    total = np.zeros(object_shape, dtype=np.complex128)
    coverage = np.zeros(object_shape, dtype=np.int64)
    np.add.at(total, (rows[inside], cols[inside]), values[inside])
    np.add.at(coverage, (rows[inside], cols[inside]), 1)
    image = np.where(coverage > 0, total / np.maximum(coverage, 1), 0)
    return image.astype(np.complex64), coverage
