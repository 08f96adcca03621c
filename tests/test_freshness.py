"""A success needs a metrics file written by the attempt itself, and that is decided without
comparing the runner's clock with file timestamps, which tick coarsely (4 ms on ext4, 1-2 s on
network and FAT filesystems)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.common import make_tree
from helpers import ledger_rows, run_runner, runner_env
from runner.results import LEGACY_TICK_NS, PriorFile, file_id

QUICK_COMPARE = Path(__file__).resolve().parent / "quick_compare.sh"
ONE = ("--dose", "1000", "--view", "dense", "--split", "train")


def run_with(study: Path, compare_cmd: str, *extra: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "runner", "run", "--study-root", str(study), "--compare-cmd", compare_cmd,
            "--gpus", "none", *extra]
    return subprocess.run(argv, env=runner_env(), cwd=study, capture_output=True, text=True, timeout=600)


def failures(study: Path) -> list[str]:
    return [f"{r['key']}: {r['failure_detail']}" for r in ledger_rows(
        study / "analysis/ledger.db",
        "SELECT j.key, a.failure_detail FROM attempts a JOIN jobs j USING (job_id) WHERE a.state NOT IN ('succeeded', 'superseded')")]


def test_thousands_of_jobs_finishing_within_a_timestamp_tick_all_succeed(tmp_path):
    """2000 jobs that each write their CSV within milliseconds of their launch, 4 at a time: the
    clock-against-mtime check recorded hundreds of these successes as no_metrics."""
    study = make_tree(tmp_path / "study", list(range(1000, 1500)))
    result = run_with(study, f"sh {QUICK_COMPARE}", "--max-parallel", "4")
    assert failures(study) == []
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    (count,) = ledger_rows(study / "analysis/ledger.db", "SELECT COUNT(*) FROM attempts WHERE state = 'succeeded'")
    assert count[0] == 2000


@pytest.mark.parametrize("tick_s", [1, 2])
def test_a_filesystem_with_coarse_timestamps_gives_no_false_failure(tmp_path, tick_s):
    """The compare script's file gets an mtime rounded down to the tick, as on FAT (2 s) or a
    network filesystem (1 s): before its launch by the runner's clock, yet fresh. A forced rerun
    over the first run's file is fresh too."""
    script = tmp_path / "coarse_compare.sh"
    script.write_text(f'sh {QUICK_COMPARE} "$@"\n'
                      'while [ $# -gt 0 ]; do [ "$1" = --output_dir ] && out=$2; shift; done\n'
                      f't=$(date +%s); touch -d "@$((t - t % {tick_s}))" "$out/comparison_metrics.csv"\n')
    study = make_tree(tmp_path / "study", [1000, 2000])
    for extra in ((), ("--force",)):
        result = run_with(study, f"sh {script}", "--max-parallel", "2", *extra)
        assert failures(study) == []
        assert result.returncode == 0, result.stdout[-2000:]


@pytest.mark.parametrize("mtime_offset_s", [-3600, 0, 3600])
def test_a_file_left_by_an_earlier_run_is_refused_whatever_its_timestamp(study, mtime_offset_s):
    """An untouched file is stale even when its mtime says it is newer than the launch (a clock
    skewed between the host and the file server, or a copy with preserved times)."""
    assert run_runner(study, *ONE).returncode == 0
    csv = study / "analysis/dose_1000/dense/train/comparison_metrics.csv"
    moment = time.time() + mtime_offset_s
    os.utime(csv, (moment, moment))
    result = run_runner(study, *ONE, "--force", behaviour={"*": {"no_metrics": True}})
    assert result.returncode == 1
    (last,) = ledger_rows(study / "analysis/ledger.db", "SELECT * FROM attempts WHERE number = 2")
    assert last["failure_class"] == "no_metrics"
    assert "not written by this attempt" in last["failure_detail"]


def test_the_identity_before_the_launch_is_in_the_attempt_row(study):
    assert run_runner(study, *ONE).returncode == 0
    csv = study / "analysis/dose_1000/dense/train/comparison_metrics.csv"
    before = file_id(csv)
    assert run_runner(study, *ONE, "--force").returncode == 0
    rows = ledger_rows(study / "analysis/ledger.db", "SELECT metrics_before FROM attempts ORDER BY number")
    # no file before the first; the floor file beside it is recorded too
    assert PriorFile.from_ledger(rows[0][0], 0) == PriorFile(None, sibling_ids=(None,))
    assert PriorFile.from_ledger(rows[1][0], 0) == PriorFile(before, sibling_ids=(None,))


def test_the_floor_beside_a_success_is_loaded_only_when_this_attempt_wrote_it(study):
    """floor_metrics.csv joins the ledger with the success that wrote it; an earlier run's file
    beside a new success (e.g. PtychoPINN's own compare script, which writes no floor) does not."""
    floor_query = "SELECT phase FROM study_metrics WHERE model = 'FlatFloor' AND metric = 'ms_ssim'"
    ledger = study / "analysis/ledger.db"
    assert run_runner(study, *ONE, behaviour={"*": {"floor": [0.4, 0.2]}}).returncode == 0
    assert [r["phase"] for r in ledger_rows(ledger, floor_query)] == [0.2]
    assert run_runner(study, *ONE, "--force").returncode == 0  # writes no floor this time
    assert ledger_rows(ledger, floor_query) == []
    assert run_runner(study, *ONE, "--force", behaviour={"*": {"floor": [0.4, 0.3]}}).returncode == 0
    assert [r["phase"] for r in ledger_rows(ledger, floor_query)] == [0.3]
    # comparison_metrics.csv still holds exactly the three models
    csv_models = {line.split(",")[0] for line in
                  (study / "analysis/dose_1000/dense/train/comparison_metrics.csv").read_text().splitlines()[1:]}
    assert csv_models == {"PtychoPINN", "Baseline", "PtyChi"}


def test_a_sibling_identity_from_a_schema_6_row_is_unknown_and_never_trusted():
    assert PriorFile.from_ledger("[1, 2, 3, 4]", 0).sibling_ids == ()
    assert PriorFile.from_ledger("null", 0) == PriorFile(None, sibling_ids=())


def test_an_attempt_of_an_older_runner_is_judged_with_a_margin_of_the_coarsest_tick(tmp_path):
    """Attempts recorded before the ledger kept identities (re-attached SLURM jobs) have only a
    start time: a file more than one 2 s tick older than it is stale, a newer one is not."""
    csv = tmp_path / "comparison_metrics.csv"
    csv.write_text("x")
    mtime = file_id(csv)[2]
    assert PriorFile.from_ledger(None, mtime + LEGACY_TICK_NS + 1).stale(file_id(csv))
    assert not PriorFile.from_ledger(None, mtime + LEGACY_TICK_NS - 1).stale(file_id(csv))
