"""Phase E: a training step improves the loss; a checkpoint reloads to the same predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptychokit.checkpoint import CONFIG_FILE, LOG_FILE, WEIGHTS_FILE, load_model, save_model
from ptychokit.inference import predict_patches
from ptychokit.networks import Architecture, PatchNet
from ptychokit.training import (TrainingSettings, baseline_loss, illumination_weight, input_scale_for,
                                pinn_batches, pinn_loss, train_baseline, train_pinn, training_step)

SHORT = TrainingSettings(steps=4, batch_size=8, learning_rate=1e-3, max_patterns=32, seed=1)


def _baseline_batch(data):
    scale = input_scale_for(data.diffraction)
    inputs = torch.from_numpy(data.diffraction[:8] * scale)[:, None]
    targets = torch.from_numpy(data.patches[:8])[:, None]
    return inputs, targets, illumination_weight(torch.from_numpy(data.probe))


def _pinn_batch(data):
    per_group, probe = pinn_batches(data, input_scale_for(data.diffraction), "cpu", np.arange(8))
    return (*per_group, probe)


@pytest.mark.parametrize("channels, loss_fn, make_batch", [
    (1, baseline_loss, _baseline_batch), (4, pinn_loss, _pinn_batch)], ids=["baseline", "pinn"])
def test_one_training_step_lowers_the_loss(tiny_train, channels, loss_fn, make_batch):
    torch.manual_seed(0)
    model = PatchNet(Architecture(32, channels, 8, 32))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = make_batch(tiny_train)
    model.eval()  # judge the loss without dropout's randomness
    with torch.no_grad():
        before = float(loss_fn(model, batch))
    model.train()
    training_step(model, optimizer, loss_fn, batch)
    model.eval()
    with torch.no_grad():
        after = float(loss_fn(model, batch))
    assert after < before


def test_pinn_loss_is_lowest_for_the_true_patches(tiny_train):
    """The likelihood is the physics: the ground truth must beat a flat object on the same counts."""
    inputs, counts, offsets, probe = _pinn_batch(tiny_train)
    from ptychokit.forward import expected_counts, poisson_nll
    from ptychokit.grouping import neighbour_groups
    groups = neighbour_groups(tiny_train.xcoords, tiny_train.ycoords, 4, 7, 123)[:8]
    truth = torch.from_numpy(tiny_train.patches[groups])
    flat = torch.full_like(truth, 0.7)
    assert poisson_nll(expected_counts(probe, truth), counts) < poisson_nll(expected_counts(probe, flat), counts)


@pytest.mark.parametrize("kind", ["baseline", "pinn"])
def test_a_saved_checkpoint_reloads_and_predicts_the_same(tiny_train, tmp_path, kind):
    data = tiny_train.subset(np.arange(24))
    if kind == "baseline":
        trained = train_baseline(data, Architecture(32, 1, 8, 32), SHORT, "cpu")
        probe = None
    else:
        trained = train_pinn(data, Architecture(32, 4, 8, 32), SHORT, "cpu")
        probe = data.probe
    save_model(tmp_path / "ckpt", trained.model, kind, trained.preprocessing, probe, {"dose": 1}, trained.log)
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} == {WEIGHTS_FILE, CONFIG_FILE, LOG_FILE}

    model, info = load_model(tmp_path / "ckpt")
    reloaded = predict_patches(model, info, data)
    from ptychokit.checkpoint import CheckpointInfo
    original = predict_patches(trained.model, CheckpointInfo(kind, trained.model.arch, trained.preprocessing,
                                                             probe, {}), data)
    assert reloaded.shape == (24, 32, 32) and reloaded.dtype == np.complex64
    assert np.array_equal(reloaded, original)
    assert info.gridsize == (1 if kind == "baseline" else 2)
    assert len(trained.log) >= 1 and trained.log[-1]["step"] == SHORT.steps


def test_groups_are_anchored_neighbours_and_survive_a_tiny_view(tiny_train):
    from ptychokit.grouping import neighbour_groups
    groups = neighbour_groups(tiny_train.xcoords, tiny_train.ycoords, 4, 7, 123)
    assert groups.shape == (tiny_train.xcoords.size, 4)
    assert np.array_equal(groups[:, 0], np.arange(tiny_train.xcoords.size))
    assert all(len(set(row)) == 4 for row in groups)
    few = neighbour_groups(np.array([10.0, 20.0]), np.array([5.0, 5.0]), 4, 7, 123)
    assert few.shape == (2, 4) and set(few.ravel()) == {0, 1}
