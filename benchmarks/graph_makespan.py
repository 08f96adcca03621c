"""How close a run of the job graph came to the best any scheduler could do, from its ledger.

    python benchmarks/graph_makespan.py --ledger demo_study/analysis/ledger.db [--run N]

For one run (default: the latest that launched anything), from its attempts alone:
  makespan       last end - first start of the run's attempts
  work / slots   the sum of the attempts' durations over the run's slots
  critical path  the longest chain of needs (job_needs), each job counted with the duration of
                 its attempts in this run (jobs the run did not launch count 0)
  bound          max(critical path, work / slots): no schedule on these slots can be shorter
and makespan / bound. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from datetime import datetime
from pathlib import Path


def figures(ledger: Path, run_id: int | None) -> dict:
    conn = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        if run_id is None:
            run_id = conn.execute("SELECT MAX(run_id) FROM attempts").fetchone()[0]
        slots = len(json.loads(conn.execute("SELECT slots FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0]))
        attempts = conn.execute("SELECT j.key, j.kind, a.started_at, a.ended_at, a.duration_s FROM attempts a "
                                "JOIN jobs j USING (job_id) WHERE a.run_id = ? AND a.ended_at IS NOT NULL",
                                (run_id,)).fetchall()
        needs = conn.execute("SELECT j.key, n.key FROM job_needs d JOIN jobs j ON j.job_id = d.job_id "
                             "JOIN jobs n ON n.job_id = d.needs_job_id").fetchall()
    finally:
        conn.close()
    start = min(datetime.fromisoformat(a[2]) for a in attempts)
    end = max(datetime.fromisoformat(a[3]) for a in attempts)
    seconds: dict[str, float] = {}
    by_phase: dict[str, float] = {}
    for key, phase, _, _, duration in attempts:
        seconds[key] = seconds.get(key, 0.0) + duration
        by_phase[phase] = by_phase.get(phase, 0.0) + duration
    wanted: dict[str, list[str]] = {}
    for job, need in needs:
        wanted.setdefault(job, []).append(need)
    chain: dict[str, float] = {}

    def longest(key: str) -> float:  # the longest chain of needs ending with `key`
        if key not in chain:
            chain[key] = seconds.get(key, 0.0) + max((longest(n) for n in wanted.get(key, ())), default=0.0)
        return chain[key]
    critical = max(longest(key) for key in seconds)
    work = sum(seconds.values())
    makespan = (end - start).total_seconds()
    bound = max(critical, work / slots)
    return {"run": run_id, "slots": slots, "attempts": len(attempts), "makespan_s": round(makespan, 1),
            "work_s": round(work, 1), "work_by_phase_s": {p: round(s, 1) for p, s in sorted(by_phase.items())},
            "critical_path_s": round(critical, 1), "work_per_slot_s": round(work / slots, 1),
            "bound_s": round(bound, 1), "ratio": round(makespan / bound, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ledger", required=True, type=Path)
    parser.add_argument("--run", type=int, help="run id (default: the latest with attempts)")
    args = parser.parse_args()
    result = figures(args.ledger, args.run)
    for name, value in result.items():
        print(f"{name:>16}: {value}")


if __name__ == "__main__":
    main()
