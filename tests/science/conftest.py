"""Fixtures of the science tests: the tiny study, generated once per session by the real CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ptychokit.npz_io import PtychoData
from ptychokit.presets import PRESETS
from ptychokit.simulation import Scene, make_scene, measure

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "make_synthetic_study.py"


def run_generator(*args: str, cwd: Path | None = None, module: bool = False,
                  timeout: float = 300) -> subprocess.CompletedProcess:
    """The study generator as a real subprocess (as a file, or with -m from the repository root)."""
    command = [sys.executable, "-m", "scripts.make_synthetic_study"] if module else [sys.executable, str(SCRIPT)]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([*command, *args], cwd=cwd or REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="session")
def generator():
    """`run_generator`, for tests that run the command line themselves."""
    return run_generator


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "study"
    result = run_generator("--out", str(root), "--preset", "tiny", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    return root


@pytest.fixture(scope="session")
def tiny_run(tiny_study: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """A copy of the tiny study with every comparison run by the runner on the real script."""
    study = tmp_path_factory.mktemp("tiny_run") / "study"
    shutil.copytree(tiny_study, study)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-m", "runner", "run", "--study-root", str(study), "--gpus", "none",
                             "--max-parallel", "2", "--timeout", "300"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=900)
    return study, result


@pytest.fixture(scope="session")
def tiny_scene() -> Scene:
    return make_scene(PRESETS["tiny"], seed=42)


@pytest.fixture(scope="session")
def tiny_train(tiny_scene: Scene) -> PtychoData:
    """The train half of the tiny scan at a high dose."""
    return measure(tiny_scene, 100000, seed=42)["train"]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
