"""scripts/reconstruct_ptychi.py: a real Pty-Chi reconstruction of a small view, and its exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from ptychokit.npz_io import read_reconstruction, write_ptycho_npz
from ptychokit.ptychi_recon import ALGORITHMS

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / "scripts/reconstruct_ptychi.py"), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def view_npz(tiny_train, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("view") / "dense_test.npz"
    write_ptycho_npz(path, tiny_train.subset(np.arange(60)))
    return path


def test_a_reconstruction_writes_the_npz_and_the_picture(view_npz, tmp_path):
    out = tmp_path / "out"
    done = run("--input-npz", str(view_npz), "--output-dir", str(out), "--algorithm", "lsqml",
               "--num-epochs", "4", "--n-images", "50", "--batch-size", "16", "--noise-model", "poisson")
    assert done.returncode == 0, done.stderr
    assert "pty-chi LSQML (4 epochs, poisson noise), 50 patterns" in done.stdout
    with np.load(out / "ptychi_reconstruction.npz") as npz:  # PtychoPINN's keys, no pickles
        assert {"reconstructed_object", "reconstructed_probe", "algorithm", "timestamp"} <= set(npz.files)
        assert npz["reconstructed_object"].shape == (112, 112) and npz["reconstructed_probe"].shape == (32, 32)
        assert str(npz["algorithm"]) == "pty-chi LSQML (4 epochs, poisson noise)"
        assert datetime.fromisoformat(str(npz["timestamp"])).tzinfo is not None
        assert npz["xcoords"].shape == (50,) and npz["cost_history"].shape == (4,)
        assert np.isfinite(npz["reconstructed_object"]).all()
    recon = read_reconstruction(out / "ptychi_reconstruction.npz")
    assert recon.elapsed_s > 0 and recon.iterations == 4
    assert (out / "reconstruction_visualization.png").stat().st_size > 10_000


def test_the_command_line_offers_the_methods_the_module_has():
    from scripts.reconstruct_ptychi import ALGORITHM_CHOICES

    assert set(ALGORITHM_CHOICES) == set(ALGORITHMS)


@pytest.mark.parametrize("args, message", [
    (["--algorithm", "RAAR"], "unknown algorithm 'RAAR'"),
    (["--num-epochs", "0"], "must be positive"),
    (["--n-images", "ten"], "is not a int"),
    (["--noise-model", "laplace"], "invalid choice: 'laplace'"),
])
def test_bad_arguments_are_one_line_and_exit_2(view_npz, tmp_path, args, message):
    done = run("--input-npz", str(view_npz), "--output-dir", str(tmp_path / "out"), *args)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("reconstruct_ptychi: error: ")
    assert message in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_missing_required_argument_exits_2(tmp_path):
    done = run("--output-dir", str(tmp_path))
    assert done.returncode == 2 and "--input-npz" in done.stderr


def _without(view_npz: Path, key: str, path: Path) -> Path:
    with np.load(view_npz) as npz:
        np.savez(path, **{k: npz[k] for k in npz.files if k != key})
    return path


@pytest.mark.parametrize("make, message", [
    (lambda v, t: t / "absent.npz", "does not exist"),
    (lambda v, t: _without(v, "probeGuess", t / "no_probe.npz"), "lacks the key 'probeGuess'"),
    (lambda v, t: (t / "junk.npz").write_bytes(b"not an npz") and t / "junk.npz", "cannot be read"),
])
def test_bad_input_is_one_line_naming_it_and_exits_1(view_npz, tmp_path, make, message):
    path = make(view_npz, tmp_path)
    done = run("--input-npz", str(path), "--output-dir", str(tmp_path / "out"))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("reconstruct_ptychi: error: ")
    assert message in done.stderr and str(path) in done.stderr


def test_diffraction_that_does_not_match_the_probe_exits_1(view_npz, tmp_path):
    with np.load(view_npz) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["diffraction"] = arrays["diffraction"][:, :16, :16]
    np.savez(tmp_path / "cropped.npz", **arrays)
    done = run("--input-npz", str(tmp_path / "cropped.npz"), "--output-dir", str(tmp_path / "out"))
    assert done.returncode == 1 and "does not match the probe" in done.stderr
