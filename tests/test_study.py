"""The plan: one job per (dose, view, split) in the study's order, exact argv, blocked jobs."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fixture_study import make_study
from helpers import plan as planned
from runner.study import PlanError


def plan(values: dict) -> list:
    return planned(values, cwd=Path(values["study_root"]))


def settings(study: Path, **more) -> dict:
    return {"study_root": str(study), **more}


def test_jobs_come_in_dose_view_split_order(study):
    keys = [job.key for job in plan(settings(study))]
    assert keys[:4] == ["dose_1000/dense/train", "dose_1000/dense/test",
                        "dose_1000/sparse/train", "dose_1000/sparse/test"]
    assert len(keys) == 12
    assert [k.split("/")[0] for k in keys[::4]] == ["dose_1000", "dose_10000", "dose_100000"]


def test_doses_are_discovered_from_folders_not_a_fixed_list(tmp_path):
    study = make_study(tmp_path / "s", doses=(50, 7))
    (study / "phase_c" / "dose_x").mkdir()
    (study / "phase_c" / "notes").mkdir()
    assert sorted({j.labels["dose"] for j in plan(settings(study))}) == [7, 50]


def test_filters_select_conditions(study):
    jobs = plan(settings(study, dose=["1e4"], view=["sparse"], split=["test"]))
    assert [j.key for j in jobs] == ["dose_10000/sparse/test"]


def test_dose_filter_matching_nothing_is_an_error(study):
    with pytest.raises(PlanError, match="--dose 5 matches no dose_<int> folder"):
        plan(settings(study, dose=["5"]))


def test_argv_is_the_reference_command_with_absolute_paths(study):
    job = plan(settings(study, dose=["1000"], view=["dense"], split=["train"]))[0]
    c, e, f, g = (study / p for p in ("phase_c", "phase_e", "phase_f", "analysis"))
    assert list(job.argv) == [
        sys.executable, "-m", "scripts.compare_models",
        "--pinn_dir", str(e / "dose_1000/dense/gs2"), "--baseline_dir", str(e / "dose_1000/baseline/gs1"),
        "--test_data", str(c / "dose_1000/patched_train.npz"),
        "--output_dir", str(g / "dose_1000/dense/train"), "--ms-ssim-sigma", "1.0",
        "--tike_recon_path", str(f / "dose_1000/dense/train/ptychi_reconstruction.npz"),
        "--register-ptychi-only"]
    assert all(Path(a).is_absolute() for a in job.argv[4:12:2])


def test_compare_cmd_and_args_are_split_into_argv(study):
    job = plan(settings(study, compare_cmd="'/opt/my python' -u run.py", compare_args=["--n-test-groups", "8"]))[0]
    assert job.argv[:3] == ("/opt/my python", "-u", "run.py")
    assert job.argv[-2:] == ("--n-test-groups", "8")


def test_test_data_can_come_from_phase_d_view_files(study):
    job = plan(settings(study, test_data=["dense=phase_d"], dose=["1000"], split=["test"]))
    dense, sparse = job
    assert dense.argv[dense.argv.index("--test_data") + 1].endswith("phase_d/dose_1000/dense/dense_test.npz")
    assert sparse.argv[sparse.argv.index("--test_data") + 1].endswith("phase_c/dose_1000/patched_test.npz")


def test_missing_input_blocks_only_that_job(study):
    (study / "phase_f/dose_1000/dense/test/ptychi_reconstruction.npz").unlink()
    jobs = {j.key: j for j in plan(settings(study))}
    assert "missing reconstruction" in jobs["dose_1000/dense/test"].blocked_reason
    assert str(study / "phase_f/dose_1000/dense/test") in jobs["dose_1000/dense/test"].blocked_reason
    assert sum(1 for j in jobs.values() if j.blocked_reason) == 1


def test_empty_model_folder_blocks_and_checkpoint_name_is_checked(study):
    for f in (study / "phase_e/dose_1000/sparse/gs2").iterdir():
        f.unlink()
    jobs = {j.key: j for j in plan(settings(study))}
    assert "PINN model folder" in jobs["dose_1000/sparse/train"].blocked_reason
    named = {j.key: j for j in plan(settings(study, checkpoint_name="wts.h5.zip"))}
    assert "missing baseline checkpoint" in named["dose_10000/dense/train"].blocked_reason


def test_legacy_manifest_output_dir_locates_the_reconstruction(study):
    elsewhere = study / "recon_elsewhere"
    elsewhere.mkdir()
    np.savez(elsewhere / "ptychi_reconstruction.npz", reconstructed_object=np.ones((2, 2), np.complex64))
    legacy = study / "phase_f/dose_1000_sparse_train/manifest.json"
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps({"dose": 1000, "view": "sparse", "split": "train", "output_dir": str(elsewhere)}))
    job = {j.key: j for j in plan(settings(study))}["dose_1000/sparse/train"]
    assert job.argv[job.argv.index("--tike_recon_path") + 1] == str(elsewhere / "ptychi_reconstruction.npz")


def test_metadata_comes_from_the_view_npz(study):
    job = plan(settings(study, view=["sparse"]))[0]
    assert job.labels == {"phase": "G", "dose": 1000, "view": "sparse", "split": "train", "seed": None,
                          "train_size": None, "selection_strategy": "greedy", "acceptance_rate": 0.75,
                          "spacing_threshold": 102.4, "n_accepted": 3, "n_rejected": 1}


def test_metadata_falls_back_to_the_phase_f_manifest(tmp_path):
    study = make_study(tmp_path / "s", doses=(1000,), metadata_in="manifest")
    job = plan(settings(study))[0]
    assert job.labels["selection_strategy"] == "greedy" and job.labels["n_accepted"] == 42


def test_metadata_absent_everywhere_is_null(tmp_path):
    study = make_study(tmp_path / "s", doses=(1000,), metadata_in="none")
    labels = plan(settings(study))[0].labels
    assert {labels[k] for k in ("selection_strategy", "acceptance_rate", "n_accepted")} == {None}


def test_metadata_that_is_not_json_is_an_error(study):
    np.savez(study / "phase_d/dose_1000/dense/dense_train.npz", _metadata=np.array("{not json"))
    with pytest.raises(PlanError, match="_metadata is not a JSON string"):
        plan(settings(study))


def test_pickled_metadata_is_refused_not_unpickled(study):
    np.savez(study / "phase_d/dose_1000/dense/dense_train.npz", _metadata=np.array([{"a": 1}], dtype=object))
    with pytest.raises(PlanError, match="not a plain string"):
        plan(settings(study))


def test_fingerprint_changes_with_input_files_only(study):
    before = {j.key: j.fingerprint for j in plan(settings(study))}
    assert before == {j.key: j.fingerprint for j in plan(settings(study))}
    (study / "phase_c/dose_1000/patched_test.npz").write_bytes(b"changed data")
    after = {j.key: j.fingerprint for j in plan(settings(study))}
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"dose_1000/dense/test", "dose_1000/sparse/test"}


def test_fingerprint_covers_the_compare_script(study, tmp_path):
    script = tmp_path / "compare.py"
    script.write_text("print(1)\n")
    first = plan(settings(study, compare_cmd=f"python {script}"))[0].fingerprint
    script.write_text("print(2)\n")
    assert plan(settings(study, compare_cmd=f"python {script}"))[0].fingerprint != first
