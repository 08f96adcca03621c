"""Object error up to the ambiguities ptychography cannot resolve (a global complex factor)."""

from __future__ import annotations

import numpy as np


def relative_error(estimate: np.ndarray, truth: np.ndarray, weight: np.ndarray | None = None) -> float:
    """||c * estimate - truth|| / ||truth|| with the complex c that minimises it, over `weight`.

    Amplitude scale and global phase are unobservable from diffraction alone, so they are fitted
    out; what remains is the error a reconstruction can actually be blamed for.
    """
    w = np.ones(truth.shape) if weight is None else np.broadcast_to(weight, truth.shape)
    e, t = estimate.astype(np.complex128) * np.sqrt(w), truth.astype(np.complex128) * np.sqrt(w)
    c = np.vdot(e, t) / max(np.vdot(e, e).real, 1e-30)
    return float(np.linalg.norm(c * e - t) / max(np.linalg.norm(t), 1e-30))
