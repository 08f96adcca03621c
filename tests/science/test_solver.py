"""Phase F's solver on noiseless tiny data."""

from __future__ import annotations

import numpy as np
import torch

from ptychokit.forward import dose_scaled_probe, expected_counts
from ptychokit.metrics import relative_error
from ptychokit.scan import patch_corners
from ptychokit.solver import SolverSettings, reconstruct

ERROR_BOUND = 0.15  # the flat starting guess is at about 0.23 on this object


def _lit_centres(scene, shape) -> np.ndarray:
    """Pixels under the central half of some patch: where the probe is strong enough to judge."""
    size = scene.probe.shape[0]
    mask = np.zeros(shape, dtype=bool)
    top, left = patch_corners(scene.xcoords, scene.ycoords, size)
    for row, col in zip(top, left):
        mask[row + size // 4: row + 3 * size // 4, col + size // 4: col + 3 * size // 4] = True
    return mask


def test_solver_brings_the_object_error_below_the_bound_on_noiseless_data(tiny_scene):
    probe = dose_scaled_probe(tiny_scene.probe, tiny_scene.patches, 1e6)
    with torch.no_grad():
        counts = expected_counts(torch.from_numpy(probe), torch.from_numpy(tiny_scene.patches))
    amplitudes = counts.sqrt().numpy().astype(np.float32)  # noiseless: exact moduli
    shape = tiny_scene.object.shape
    mask = _lit_centres(tiny_scene, shape)
    start_error = relative_error(np.ones(shape)[mask], tiny_scene.object[mask])

    result = reconstruct(amplitudes, probe, tiny_scene.xcoords, tiny_scene.ycoords, shape,
                         SolverSettings(iterations=20, batch_size=16))

    final_error = relative_error(result.object[mask], tiny_scene.object[mask])
    assert start_error > 0.2
    assert final_error < ERROR_BOUND
    assert result.cost_history[-1] < 0.01 * result.cost_history[0]
    assert result.object.shape == shape and result.object.dtype == np.complex64


def test_solver_is_deterministic_for_a_seed(tiny_train):
    data = tiny_train.subset(np.arange(40))
    run = lambda: reconstruct(data.diffraction, data.probe, data.xcoords, data.ycoords,  # noqa: E731
                              data.object.shape, SolverSettings(iterations=3, batch_size=8, seed=5))
    assert np.array_equal(run().object, run().object)
