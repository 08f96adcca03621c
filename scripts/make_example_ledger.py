"""Regenerate ledger.db.example: a small real ledger made by real runs of the runner.

It builds a one-dose study under /tmp/runner-example (tiny arrays in the real formats), and runs
the runner on it with the stand-in compare script of the tests: one condition fails once and
succeeds on retry, one ends with exit 0 but no metrics, one is blocked by a missing
reconstruction; a second run resumes. Usage: python scripts/make_example_ledger.py
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = Path("/tmp/runner-example")  # neutral absolute paths inside the example ledger


def main() -> int:
    sys.path.insert(0, str(REPO / "tests"))
    from fixture_study import make_study

    shutil.rmtree(WORK, ignore_errors=True)
    study = make_study(WORK / "study", doses=(1000, 10000))
    (study / "phase_f/dose_10000/sparse/test/ptychi_reconstruction.npz").unlink()
    shutil.copy(REPO / "tests/fake_compare.py", WORK / "compare_models.py")
    (WORK / "bin").mkdir()
    python = WORK / "bin" / "python"
    python.symlink_to(sys.executable)
    env = {**os.environ, "PYTHONPATH": str(REPO), "FAKE_COMPARE_BEHAVIOUR": json.dumps({
        "*": {"sleep": 0.2},
        "dose_1000/sparse/train": {"fail_times": 1, "sleep": 0.2},
        "dose_10000/dense/test": {"no_metrics": True}})}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    command = [str(python), "-m", "runner", "run", "--study-root", str(study), "--gpus", "none",
               "--max-parallel", "2", "--retries", "1", "--compare-cmd", f"{python} {WORK / 'compare_models.py'}"]
    for _ in range(2):  # the second run shows resume: successes skipped, failures retried
        subprocess.run(command, cwd=WORK, env=env, check=False)
    ledger = study / "analysis" / "ledger.db"
    target = REPO / "ledger.db.example"
    target.unlink(missing_ok=True)
    source = sqlite3.connect(ledger)
    copy = sqlite3.connect(target)
    source.backup(copy)  # a consistent single-file copy, WAL included
    copy.execute("PRAGMA journal_mode = DELETE")
    copy.execute("VACUUM")
    copy.close()
    source.close()
    print(f"wrote {target.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
