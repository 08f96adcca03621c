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


def test_training_groups_oversample_the_positions_from_their_nearest_neighbours(tiny_train):
    """PtychoPINN's grouping: C = 4 of a position's K = 7 nearest, as many groups as asked for
    whatever the number of positions, every position anchoring its share, reproducible by seed."""
    from scipy.spatial import cKDTree

    from ptychokit.grouping import training_groups
    xs, ys = tiny_train.xcoords, tiny_train.ycoords
    n = xs.size
    groups = training_groups(xs, ys, 5 * n + 3, 4, 7, 123)
    assert groups.shape == (5 * n + 3, 4)
    assert set(np.bincount(groups[:, 0], minlength=n)) <= {5, 6}  # each position anchors its share
    points = np.column_stack([xs, ys])
    _, nearest = cKDTree(points).query(points, k=7)
    assert all(set(row[1:]) <= set(nearest[row[0]]) - {row[0]} and len(set(row)) == 4 for row in groups)
    assert len({tuple(row) for row in groups}) > 2 * n  # other partners, not copies of one group each
    assert np.array_equal(groups, training_groups(xs, ys, 5 * n + 3, 4, 7, 123))
    assert not np.array_equal(groups, training_groups(xs, ys, 5 * n + 3, 4, 7, 124))


def test_the_nll_excess_is_zero_only_for_the_counts_themselves():
    from ptychokit.forward import poisson_nll
    from ptychokit.training import nll_excess
    counts = torch.tensor([[0.0, 1.0, 4.0, 9.0]])
    assert nll_excess(poisson_nll(counts, counts), counts) == pytest.approx(0.0, abs=1e-6)
    for wrong in (counts + 0.5, counts * 1.2, torch.full_like(counts, counts.mean())):
        assert nll_excess(poisson_nll(wrong, counts), counts) > 0.01


def test_the_learning_rate_warms_up_then_anneals_to_zero():
    from ptychokit.training import learning_rate_factor
    settings = TrainingSettings(steps=100, batch_size=8, learning_rate=1e-3, max_patterns=32, seed=1,
                                warmup_steps=10)
    factors = [learning_rate_factor(step, settings) for step in range(101)]
    assert factors[0] == pytest.approx(0.1, rel=0.01) and max(factors) == pytest.approx(factors[9], rel=0.02)
    assert all(a <= b for a, b in zip(factors[:9], factors[1:10]))  # rising during the warm-up
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))  # then falling
    assert factors[100] == pytest.approx(0.0, abs=1e-12)


def test_a_training_on_a_plateau_stops_early_and_says_so(tiny_train):
    """Identical patterns and no learning: every log row equals the first, so after `patience`
    rows without progress the training stops, long before its planned steps."""
    same = tiny_train.subset(np.zeros(64, dtype=np.int64))
    settings = TrainingSettings(steps=400, batch_size=8, learning_rate=0.0, max_patterns=64, seed=1,
                                log_every=4, patience=3)
    trained = train_baseline(same, Architecture(32, 1, 8, 32, dropout=0.0), settings, "cpu")
    assert trained.stopped_early
    assert len(trained.log) == 4 and trained.log[-1]["step"] == 16


def test_the_pinn_training_log_records_the_nll_excess_and_the_learning_rate(tiny_train):
    settings = TrainingSettings(steps=12, batch_size=8, learning_rate=1e-3, max_patterns=64, seed=1,
                                n_groups=40, warmup_steps=2, log_every=4)
    trained = train_pinn(tiny_train, Architecture(32, 4, 8, 32), settings, "cpu")
    assert [row["step"] for row in trained.log] == [4, 8, 12]
    assert all(row["nll_excess"] > 0 and row["learning_rate"] > 0 for row in trained.log)
    assert trained.preprocessing["training_groups"] == 40


def test_inference_groups_keep_the_training_groups_spacing_on_a_denser_scan(tiny_train):
    """A PINN trained on a view's groups (partners at least the view's spacing apart) is given
    groups of that geometry on the full scan of the split, which Phase G tests it on; on the
    view itself the rule changes nothing."""
    from ptychokit.grouping import neighbour_groups, partner_min_distance, training_groups
    from ptychokit.views import select_view
    xs, ys = tiny_train.xcoords, tiny_train.ycoords
    view = select_view(xs, ys, "dense", 0.7, 32).indices
    trained = training_groups(xs[view], ys[view], 200, 4, 7, 123)
    spacing = partner_min_distance(xs[view], ys[view], trained)
    assert spacing >= 9.6  # the dense view's threshold
    def partner_distances(groups):
        return np.hypot(xs[groups[:, 1:]] - xs[groups[:, :1]], ys[groups[:, 1:]] - ys[groups[:, :1]])

    full = neighbour_groups(xs, ys, 4, 7, 123, min_distance=spacing)
    assert partner_distances(full).min() >= spacing and (full[:, 0] == np.arange(xs.size)).all()
    assert partner_distances(neighbour_groups(xs, ys, 4, 7, 123)).min() < spacing  # the plain rule
    on_view = neighbour_groups(xs[view], ys[view], 4, 7, 123)
    assert np.array_equal(on_view, neighbour_groups(xs[view], ys[view], 4, 7, 123, min_distance=spacing))
