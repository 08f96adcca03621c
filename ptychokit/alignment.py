"""Bringing a reconstruction onto the ground truth before it is scored: crop to the scanned
region, sub-pixel registration, amplitude scaled to the target's mean, phase ramp removed.

Ptychography cannot see a global phase offset (nor, in practice, a linear phase ramp) or the
absolute amplitude scale, so these are fitted out; what remains is the error a method owns.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import fourier_shift
from skimage.registration import phase_cross_correlation

UPSAMPLE = 50  # registration precision: 1/50 px


def scanned_box(coverage: np.ndarray) -> tuple[slice, slice]:
    """A rectangle of the scanned region with no uncovered pixel in it: the bounding box of the
    covered pixels, shrunk edge by edge (the edge with the most holes first) until no hole is left,
    so that gaps between patches at the scan's rim are not scored as errors."""
    rows, cols = np.nonzero(coverage)
    if rows.size == 0:
        raise ValueError("no pixel of the object was covered by a patch")
    holes = coverage == 0
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    while top < bottom and left < right and holes[top:bottom, left:right].any():
        edges = {"top": holes[top, left:right].sum(), "bottom": holes[bottom - 1, left:right].sum(),
                 "left": holes[top:bottom, left].sum(), "right": holes[top:bottom, right - 1].sum()}
        worst = max(edges, key=edges.get)
        if edges[worst] == 0:  # a hole inside the region, not on its rim: keep the box
            break
        top, bottom = top + (worst == "top"), bottom - (worst == "bottom")
        left, right = left + (worst == "left"), right - (worst == "right")
    if top >= bottom or left >= right:
        raise ValueError("the scanned region has no rectangle without holes")
    return slice(top, bottom), slice(left, right)


def register(moving: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """`moving` (complex) shifted onto `reference` with sub-pixel precision, and the shift (dy, dx)
    that was applied."""
    shift, _, _ = phase_cross_correlation(np.abs(reference), np.abs(moving), upsample_factor=UPSAMPLE,
                                          normalization=None)
    shifted = np.fft.ifft2(fourier_shift(np.fft.fft2(moving), shift))
    return shifted.astype(np.complex64), (float(shift[0]), float(shift[1]))


def border(shape: tuple[int, int], shift: tuple[float, float]) -> tuple[slice, slice]:
    """The part of an image that a shift did not wrap around."""
    dy, dx = (int(np.ceil(abs(s))) for s in shift)
    return slice(dy, shape[0] - dy), slice(dx, shape[1] - dx)


def scale_amplitude(amplitude: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Amplitude scaled so that its mean equals the target's."""
    mean = float(np.mean(amplitude))
    return amplitude * (float(np.mean(target)) / mean) if mean > 0 else amplitude


def remove_phase_offset(phase: np.ndarray, method: str = "plane") -> np.ndarray:
    """Phase minus its least-squares plane (`plane`) or its mean (`mean`)."""
    if method == "mean":
        return phase - float(np.mean(phase))
    if method != "plane":
        raise ValueError(f"unknown phase alignment {method!r}")
    rows, cols = np.indices(phase.shape)
    design = np.column_stack([rows.ravel(), cols.ravel(), np.ones(phase.size)])
    coeffs, *_ = np.linalg.lstsq(design, phase.ravel(), rcond=None)
    return phase - (design @ coeffs).reshape(phase.shape)


def aligned_phase(obj: np.ndarray, target: np.ndarray, method: str) -> np.ndarray:
    """Phase of `obj` with the global phase of `target` divided out first (so that wrapping does
    not depend on an arbitrary offset), then the offset or plane removed."""
    global_phase = np.angle(np.vdot(obj, target))  # best complex factor's phase
    return remove_phase_offset(np.angle(obj * np.exp(1j * global_phase)), method)
