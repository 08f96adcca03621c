"""The simulated sample and illumination: a multi-scale complex object and a focused probe."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter


def _normalised_field(rng: np.random.Generator, size: int, sigmas: tuple[float, ...]) -> np.ndarray:
    """Smooth random structure at several length scales, scaled to [-1, 1]."""
    field = np.zeros((size, size))
    for sigma in sigmas:
        layer = gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap")
        field += layer / (np.abs(layer).max() + 1e-12)
    return field / (np.abs(field).max() + 1e-12)


def _sharp_features(rng: np.random.Generator, size: int, count: int, scale: float) -> np.ndarray:
    """Discs and bars with hard edges: fine detail that tells a sharp reconstruction from a blurred one."""
    yy, xx = np.mgrid[0:size, 0:size]
    canvas = np.zeros((size, size))
    for _ in range(count):
        cy, cx = rng.uniform(0, size, 2)
        height = rng.uniform(-1.0, 1.0)
        if rng.random() < 0.5:
            radius = rng.uniform(2.0, scale / 12)
            canvas += height * ((yy - cy) ** 2 + (xx - cx) ** 2 < radius**2)
        else:
            half_w, half_h = rng.uniform(1.0, 3.0), rng.uniform(4.0, scale / 8)
            canvas += height * ((np.abs(xx - cx) < half_w) & (np.abs(yy - cy) < half_h))
    return np.clip(canvas, -1.0, 1.0)


SCENE_SCALE_PATCHES = 13  # the longest length scales of the object, in patch widths


def make_object(size: int, seed: int, patch_size: int = 32) -> np.ndarray:
    """An M x M complex transmission: amplitude in [0.3, 1], phase within about +-1.2 rad.

    Amplitude and phase get independent structure so that a method which only recovers one of them
    scores differently on the two. Length scales and the density of features are set by the patch
    size, not by M: a larger object is more of the same scene (more positions to learn from), not
    a magnified one.
    """
    rng = np.random.default_rng(seed)
    scale = SCENE_SCALE_PATCHES * patch_size
    n_features = max(8, round(size**2 / (6 * scale)))
    amp_field = 0.6 * _normalised_field(rng, size, (2.5, 6.0, scale / 10)) \
        + 0.4 * _sharp_features(rng, size, n_features, scale)
    phase_field = 0.6 * _normalised_field(rng, size, (3.0, 8.0, scale / 8)) \
        + 0.4 * _sharp_features(rng, size, n_features, scale)
    amplitude = np.clip(0.65 + 0.35 * amp_field, 0.3, 1.0)
    phase = 1.2 * phase_field
    return (amplitude * np.exp(1j * phase)).astype(np.complex64)


def make_probe(size: int, radius_fraction: float = 0.4, defocus_cycles: float = 1.5) -> np.ndarray:
    """An N x N probe: a soft-edged circular aperture carrying a defocus (quadratic) phase.

    The aperture spans most of the window because the study's spacing thresholds, (1 - overlap) x N,
    treat the probe as about N wide. `defocus_cycles` is the phase (in waves) at the aperture edge;
    a curved wavefront spreads the diffraction over the detector and breaks the twin-image symmetry.
    The returned probe has unit peak amplitude; the dose scaling is applied by the simulation.
    """
    centre = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size] - centre
    radius = radius_fraction * size
    r2 = (xx**2 + yy**2) / radius**2
    aperture = gaussian_filter((r2 < 1.0).astype(float), sigma=max(size / 64, 0.75))
    # A small off-axis tilt of the defocus centre makes the probe non-centrosymmetric.
    r2_phase = ((xx - 0.07 * size) ** 2 + (yy + 0.05 * size) ** 2) / radius**2
    probe = aperture * np.exp(2j * np.pi * defocus_cycles * r2_phase)
    return (probe / np.abs(probe).max()).astype(np.complex64)
