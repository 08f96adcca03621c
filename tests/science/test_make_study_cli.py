"""The generator's command line: bad arguments are one clear line and exit status 2."""

from __future__ import annotations

import json
import tomllib

import pytest


def _assert_usage_error(result, fragment: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("make_synthetic_study: error: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_an_unknown_preset_is_refused(tmp_path, generator):
    _assert_usage_error(generator("--out", str(tmp_path / "s"), "--preset", "huge"), "unknown preset")


@pytest.mark.parametrize("dose", ["0", "-5", "abc"])
def test_a_dose_that_is_not_positive_is_refused(tmp_path, generator, dose):
    _assert_usage_error(generator("--out", str(tmp_path / "s"), "--preset", "tiny", "--doses", "1000", dose),
                        "dose")


def test_an_existing_output_folder_is_refused_without_overwrite(tmp_path, generator):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "keep.txt").write_text("an earlier study")
    _assert_usage_error(generator("--out", str(tmp_path / "s"), "--preset", "tiny", module=True),
                        "--overwrite")
    assert (tmp_path / "s" / "keep.txt").read_text() == "an earlier study"


def test_a_missing_out_is_refused(tmp_path, generator):
    _assert_usage_error(generator("--preset", "tiny"), "--out")


def test_overwrite_regenerates_into_an_existing_study(tmp_path, generator):
    out = tmp_path / "s"
    (out / "data/phase_c" / "dose_5").mkdir(parents=True)  # stale dose from an earlier run
    result = generator("--out", str(out), "--preset", "tiny", "--doses", "2000", "--overwrite",
                           module=True)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (out / "data/phase_c").iterdir()) == ["dose_2000"]
    assert "start   F/dose_2000/dense/train" in result.stdout  # the runner's lines while it works


@pytest.mark.parametrize("phases", ["X", "C,G", ""])
def test_an_unknown_phase_is_refused(tmp_path, generator, phases):
    _assert_usage_error(generator("--out", str(tmp_path / "s"), "--preset", "tiny", "--phases", phases), "choose among C, D, E, F")


def test_later_phases_need_the_study_they_add_to(tmp_path, generator):
    (tmp_path / "s").mkdir()
    _assert_usage_error(generator("--out", str(tmp_path / "s"), "--preset", "tiny", "--phases", "E"), "run its Phase C first")


def test_the_data_first_then_the_models_then_the_reconstructions(tmp_path, generator):
    """--phases C,D makes the data only; E and F add to that study, with its doses, leaving the
    data untouched, and a finished phase is not replaced without --overwrite."""
    out = tmp_path / "s"
    first = generator("--out", str(out), "--preset", "tiny", "--doses", "1000", "--phases", "C,D")
    assert first.returncode == 0, first.stderr
    assert {p.name for p in out.iterdir()} == {"data", "cli", "study.json", "runner.toml"}  # PtychoPINN's hub
    assert {p.name for p in (out / "data").iterdir()} == {"phase_c", "phase_d"}
    assert {p.name for p in (out / "cli").iterdir()} == {"phase_c_generation.log", "phase_d_dense.log",
                                                        "phase_d_sparse.log"}
    assert "[D] dose 1000 sparse test: kept" in (out / "cli/phase_d_sparse.log").read_text()
    config = tomllib.loads((out / "runner.toml").read_text())  # what the runner needs for E, F, G
    study, run = config["study"], config["run"]  # the study's settings, and how to run its jobs
    assert study["phases"] == ["E", "F", "G"] and study["hub"] == "."
    assert study["train_args"][:4] == ["--preset", "tiny", "--seed", "42"]
    assert study["recon_args"][:4] == ["--algorithm", "LSQML", "--num-epochs", "20"]
    assert run == {"jobs_per_gpu": {"E": 1, "F": 2, "G": 4}}
    data = out / "data/phase_c/dose_1000/patched_train.npz"
    before = (data.stat().st_ino, data.stat().st_mtime_ns)
    _assert_usage_error(generator("--out", str(out), "--preset", "demo", "--phases", "E"), "give the same --preset")
    second = generator("--out", str(out), "--preset", "tiny", "--phases", "E")
    assert second.returncode == 0, second.stderr
    assert (out / "data/phase_e/dose_1000/dense/gs2/model.json").is_file() and not (out / "data/phase_f").exists()
    _assert_usage_error(generator("--out", str(out), "--preset", "tiny", "--phases", "E"), "--overwrite")
    third = generator("--out", str(out), "--preset", "tiny", "--phases", "F")
    assert third.returncode == 0, third.stderr
    assert (out / "data/phase_f/reconstruction_manifest.json").is_file()
    assert (data.stat().st_ino, data.stat().st_mtime_ns) == before
    assert set(json.loads((out / "study.json").read_text())["phase_seconds"]) == {"C", "D", "E", "F"}
