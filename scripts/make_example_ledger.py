"""Regenerate ledger.db.example from the ledger of the demo run (`make demo`).

The copy is made with SQLite's backup API (consistent even while a runner writes) and brought to
this runner's schema by its own migrations, with the study's views; then the checkout's folder, the host and the user name are replaced by neutral ones so that the example
says nothing about the machine it came from. Everything else (runs, jobs, attempts, metrics,
timings, devices) is the demo run's own.

    python scripts/make_example_ledger.py [CHECKOUT/demo_study/analysis/ledger.db]

The ledger must lie in `demo_study/analysis/` of the checkout that ran it: that checkout's folder
is the one the paths in the ledger start with.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = REPO / "ledger.db.example"
NEUTRAL_CHECKOUT = "/home/scientist/runner"
# Text columns that may hold paths of the checkout.
PATH_COLUMNS = {
    "runs": ("argv", "study"),
    "jobs": ("argv", "cwd", "output_dir", "blocked_reason"),
    "attempts": ("argv", "stdout_log", "stderr_log", "failure_detail"),
}


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else REPO / "demo_study/analysis/ledger.db"
    if not source.is_file():
        print(f"make_example_ledger: error: no ledger at {source}; run `make demo` first", file=sys.stderr)
        return 1
    resolved = source.resolve()
    if resolved.parent.parts[-2:] != ("demo_study", "analysis"):
        print(f"make_example_ledger: error: {source} is not a CHECKOUT/demo_study/analysis/ledger.db; "
              "give the demo run's own ledger, where `make demo` wrote it", file=sys.stderr)
        return 1
    checkout = str(resolved.parents[2])  # the checkout holding demo_study/analysis/ledger.db
    TARGET.unlink(missing_ok=True)
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src, sqlite3.connect(TARGET) as dst:
        src.backup(dst)
    sys.path.insert(0, str(REPO))
    from runner.ledger import prepare
    from runner.ptycho import STUDY

    prepare(TARGET, STUDY.views)
    conn = sqlite3.connect(TARGET, isolation_level=None)
    conn.execute("BEGIN")
    for table, columns in PATH_COLUMNS.items():
        for column in columns:
            conn.execute(f"UPDATE {table} SET {column} = replace({column}, ?, ?)", (checkout, NEUTRAL_CHECKOUT))
    conn.execute("UPDATE runs SET host = 'workstation', user = 'scientist'")
    conn.execute("COMMIT")
    leftovers = conn.execute("SELECT COUNT(*) FROM attempts WHERE argv LIKE ? OR stdout_log LIKE ?",
                             (f"%{checkout}%", f"%{checkout}%")).fetchone()[0]
    conn.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
    conn.execute("VACUUM")
    conn.close()
    if leftovers:
        print(f"make_example_ledger: error: {leftovers} attempts still name the checkout", file=sys.stderr)
        return 1
    print(f"wrote {TARGET} from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
