"""What the study reads of the ledger: one consistent snapshot, through the study's own views and
queries (views.sql, queries.sql), and its folders as the latest run recorded them."""

from __future__ import annotations

import json
from pathlib import Path

from runner import places
from runner.ledger import LedgerError, load_queries, read_snapshot, study_root
from runner.ptycho.layout import Layout

HERE = Path(__file__).resolve().parent.parent
QUERIES = load_queries(HERE / "queries.sql")
# name -> CREATE VIEW statement, without the description above it (SQLite stores the statement alone).
VIEWS = {name: sql[sql.index("CREATE VIEW"):].rstrip().rstrip(";")
         for name, sql in load_queries(HERE / "views.sql").items()}
REPORT_PARTS = ("conditions", "metrics", "summary", "paired", "runs", "phase_jobs", "training_steps",
                "phase_results")
PATHS = ("stdout_log", "stderr_log", "output_dir", "cwd")  # columns the ledger may keep relative


def read(ledger: Path, parts: tuple[str, ...] = REPORT_PARTS) -> dict:
    """The rows of each named query, as dicts (their paths absolute, at the study's place now),
    and the study's `layout`, in one snapshot."""
    def take(conn) -> dict:
        root = study_root(conn, ledger)
        found = {name: [{k: places.resolve(v, root) if k in PATHS else v for k, v in dict(r).items()}
                        for r in conn.execute(QUERIES[name])] for name in parts}
        recorded = conn.execute(QUERIES["layout"]).fetchone()
        found["layout"] = Layout.from_json(json.loads(recorded[0]), root) if recorded else None
        return found
    snapshot = read_snapshot(ledger, take, VIEWS)
    if snapshot["layout"] is None:
        raise LedgerError(f"the ledger {ledger} does not say where its study is (no run has recorded it); "
                          "run `python -m runner run` once")
    return snapshot


def numbers(snapshot: dict) -> dict[str, dict[str, float]]:
    """Per key of a training or reconstruction with a standing success: its numbers."""
    found: dict[str, dict[str, float]] = {}
    for row in snapshot["phase_results"]:
        found.setdefault(row["key"], {})[row["metric"]] = row["value"]
    return found
