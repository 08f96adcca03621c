"""A study is a folder that moves, and a dry run tells the truth: the real runner and ledger, with
stand-ins for the training, reconstruction and compare commands, on PtychoPINN's hub layout
(HUB/data/phase_c .. phase_f, HUB/analysis, HUB/cli)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from fixture_study import make_study
from helpers import change_content, ledger_rows, runner_env
from test_graph import COMPARISONS, GRAPH, RECONSTRUCTIONS, TRAININGS

from runner.ptycho.hubfiles import cli_log_name

REPO = Path(__file__).resolve().parent.parent
FAKE_COMPARE = Path(__file__).resolve().parent / "fake_compare.py"
COUNTS = re.compile(r"(\d+) jobs planned, (\d+) to run, (\d+) already done, (\d+) blocked")
# The files a run writes that describe the study's standing results (what PtychoPINN's tools read).
STANDING = ("analysis/comparison_manifest.json", "analysis/metrics_summary.json",
            "analysis/metrics_summary.md", "analysis/metrics_delta_summary.json",
            "analysis/metrics_delta_highlights.txt", "analysis/job_graph.json",
            "data/phase_f/reconstruction_manifest.json", "analysis/artifact_inventory.txt")


def hub_study(folder: Path, upstream: bool = False) -> Path:
    """A hub whose data (Phases C, D) is made; the models and reconstructions are to be made."""
    make_study(folder / "data", doses=(1000,), upstream=upstream)
    return folder


def runner(*args: str, cwd: Path, behaviour: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    env = runner_env(behaviour, None, FAKE_UPSTREAM_BEHAVIOUR="{}")
    return subprocess.run([sys.executable, "-m", "runner", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def run(hub: Path, *extra: str, behaviour: dict | None = None) -> subprocess.CompletedProcess:
    """The whole graph of the hub (--hub), from a folder outside it."""
    return runner("run", "--hub", str(hub), "--compare-cmd", f"{sys.executable} {FAKE_COMPARE}", "--gpus", "none",
                  *GRAPH, *extra, cwd=REPO, behaviour=behaviour)


def counts(stdout: str) -> tuple[int, ...]:
    return tuple(int(n) for n in COUNTS.search(stdout).groups())


def test_a_moved_hub_keeps_every_result_and_its_files_follow(tmp_path):
    hub = hub_study(tmp_path / "site_a" / "hub")
    first = run(hub)
    assert first.returncode == 0, first.stdout + first.stderr
    assert counts(first.stdout) == (11, 11, 0, 0)
    # PtychoPINN's hub files: the summariser's Markdown, the inventory, each command's log.
    assert (hub / "analysis/metrics_summary.md").read_text().startswith("# Phase G Metrics Summary\n")
    listed = (hub / "analysis/artifact_inventory.txt").read_text().splitlines()
    assert listed == sorted(listed) and all(not line.startswith("/") and (hub / line).is_file() for line in listed)
    assert "analysis/ledger.db" in listed and "data/phase_c/dose_1000/patched_test.npz" in listed
    names = {cli_log_name(kind, labels) for kind, labels in
             [("E", {"dose": 1000, "model": m}) for m in ("baseline", "dense", "sparse")]
             + [(k, {"dose": 1000, "view": v, "split": s}) for k in "FG" for v in ("dense", "sparse")
                for s in ("train", "test")]}
    assert {p.name for p in (hub / "cli").iterdir()} == names
    assert "fake compare" in (hub / "cli/phase_g_dense_test.log").read_text()

    # The hub moves: copied without its files' times or inodes (as `cp -r` or an rsync without -t
    # does), and the old place is gone.
    moved = tmp_path / "site_b" / "elsewhere" / "hub"
    shutil.copytree(hub, moved, copy_function=shutil.copy, ignore=shutil.ignore_patterns("*.lock"))
    shutil.rmtree(tmp_path / "site_a")

    # Before any run at the new place, status and report find every file there.
    status = runner("status", "--ledger", str(moved / "analysis/ledger.db"), "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    jobs = json.loads(status.stdout)["jobs"]
    assert len(jobs) == 11 and all(Path(j[log]).is_file() and Path(j[log]).is_relative_to(moved)
                                   for j in jobs for log in ("stdout_log", "stderr_log"))
    text = runner("status", "--artifact-root", str(moved / "analysis"), cwd=tmp_path).stdout
    assert str(moved / "analysis/dose_1000/dense/test/logs/attempt-1.stderr.log") in text
    report = runner("report", "--artifact-root", str(moved / "analysis"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    phases = json.loads((moved / "analysis/report/phase_summary.json").read_text())
    assert {t["model_dir"] for t in phases["training"]} == {
        str(moved / f"data/phase_e/dose_1000/{m}") for m in ("baseline/gs1", "dense/gs2", "sparse/gs2")}

    # A run at the new place plans nothing and rewrites the derived files for it.
    again = run(moved)
    assert again.returncode == 0, again.stdout + again.stderr
    assert counts(again.stdout) == (11, 0, 11, 0)
    old = str(tmp_path / "site_a")
    for name in STANDING:
        text = (moved / name).read_text()
        assert old not in text, name
    manifest = json.loads((moved / "analysis/comparison_manifest.json").read_text())
    assert manifest["n_success"] == 4 and all(job["phase_c_npz"].startswith(str(moved)) for job in manifest["jobs"])
    recorded = ledger_rows(moved / "analysis/ledger.db", "SELECT output_dir, cwd FROM jobs")
    assert {r["output_dir"].split("/")[0] for r in recorded} == {"analysis"}  # relative to the hub
    assert ledger_rows(moved / "analysis/ledger.db", "SELECT root FROM runs ORDER BY run_id DESC")[0][0] == ".."


def fingerprint_files(hub: Path) -> dict[str, str]:
    return {name: hashlib.sha256((hub / name).read_bytes()).hexdigest() for name in STANDING}


def ledger_dump(hub: Path) -> list:
    ledger = hub / "analysis/ledger.db"
    return [tuple(row) for table in ("runs", "jobs", "attempts", "metrics", "file_hashes")
            for row in ledger_rows(ledger, f"SELECT * FROM {table} ORDER BY 1")]


def test_a_dry_run_says_what_a_run_would_do_and_why_and_changes_no_result(tmp_path):
    hub = hub_study(tmp_path / "hub")
    first = run(hub, behaviour={"dose_1000/dense/train": {"exit": 1}})
    assert first.returncode == 1, first.stdout + first.stderr
    change_content(hub / "data/phase_d/dose_1000/sparse/sparse_test.npz")  # content: a new mtime is no change
    before, ledger_before = fingerprint_files(hub), ledger_dump(hub)

    dry = run(hub, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert counts(dry.stdout) == (11, 5, 6, 0)
    why = {m.group(1): m.group(2) for m in re.finditer(r"^\s*\d+\. run +\[\w\] (\S+?)(?: \(after [^)]*\))?: (.*)$",
                                                          dry.stdout, re.M)}
    changed = "inputs changed: data/phase_d/dose_1000/sparse/sparse_test.npz"
    assert why == {"E/dose_1000/sparse": changed, "F/dose_1000/sparse/test": changed,
                   "dose_1000/sparse/train": "a job it needs runs (E/dose_1000/sparse)",
                   "dose_1000/sparse/test": "jobs it needs run (E/dose_1000/sparse and 1 more)",
                   "dose_1000/dense/train": "failed before (exit_code)"}, dry.stdout
    # Nothing that describes standing results changed; the ledger neither; the plan has its folder.
    assert fingerprint_files(hub) == before and ledger_dump(hub) == ledger_before
    plan = json.loads((hub / "analysis/dry_run/comparison_manifest.json").read_text())
    assert plan["dry_run"] is True and plan["n_jobs"] == 4
    graph = {j["key"]: (j["would"], j["why"]) for j in
             json.loads((hub / "analysis/dry_run/job_graph.json").read_text())["jobs"]}
    assert graph["dose_1000/dense/train"] == ("run", "failed before (exit_code)")
    assert graph["E/dose_1000/baseline"] == ("skip", None)

    # The run does what the dry run said.
    real = run(hub)
    assert real.returncode == 0, real.stdout + real.stderr
    assert counts(real.stdout) == (11, 5, 6, 0)
    ran = {r["key"] for r in ledger_rows(hub / "analysis/ledger.db",
                                         "SELECT j.key FROM attempts a JOIN jobs j USING (job_id) "
                                         "WHERE a.run_id = (SELECT MAX(run_id) FROM runs)")}
    assert ran == set(why)


def test_a_new_job_is_new_and_the_old_layout_is_found_by_looking(tmp_path):
    study = make_study(tmp_path / "study", doses=(1000,), upstream=False)  # phase_c .. at its root
    dry = runner("run", "--study-root", str(study), "--compare-cmd", f"{sys.executable} {FAKE_COMPARE}",
                 "--gpus", "none", *GRAPH, "--dry-run", cwd=REPO)
    assert dry.returncode == 0, dry.stderr
    assert counts(dry.stdout) == (11, 11, 0, 0)
    assert all(line.endswith(": new") for line in dry.stdout.splitlines() if re.match(r"^\s*\d+\. run", line))
    assert not (study / "analysis/ledger.db").exists() and (study / "analysis/dry_run/job_graph.json").is_file()
    ran = runner("run", "--study-root", str(study), "--compare-cmd", f"{sys.executable} {FAKE_COMPARE}",
                 "--gpus", "none", *GRAPH, cwd=REPO)
    assert ran.returncode == 0 and counts(ran.stdout) == (11, 11, 0, 0), ran.stderr
    assert (study / "cli/phase_e_dense_gs2_dose1000.log").is_file()  # the study's folder is its hub
    assert set(TRAININGS + RECONSTRUCTIONS + COMPARISONS) == {
        r["key"] for r in ledger_rows(study / "analysis/ledger.db", "SELECT key FROM jobs")}
