"""Print the study's headline table from a ledger: MS-SSIM (phase and amplitude) per model and
dose, averaged over views and splits, from the study_metrics view.

    python scripts/show_results.py STUDY/analysis/ledger.db
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

QUERY = """
SELECT dose, model, AVG(phase) AS phase, AVG(amplitude) AS amplitude, COUNT(*) AS n
FROM study_metrics WHERE metric = 'ms_ssim' GROUP BY dose, model ORDER BY dose, model
"""


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_file():
        print("show_results: error: give the path of an existing ledger.db", file=sys.stderr)
        return 2
    conn = sqlite3.connect(f"file:{argv[0]}?mode=ro", uri=True)
    rows = conn.execute(QUERY).fetchall()
    if not rows:
        print("show_results: error: the ledger holds no succeeded comparison yet", file=sys.stderr)
        return 1
    print(f"MS-SSIM by dose and model (mean over views and splits), from {argv[0]}:")
    print(f"{'dose':>8}  {'model':<11} {'phase':>7} {'amplitude':>10}  conditions")
    for dose, model, phase, amplitude, n in rows:
        cell = lambda v: f"{v:.3f}" if v is not None else "-"  # noqa: E731
        print(f"{dose:>8}  {model:<11} {cell(phase):>7} {cell(amplitude):>10}  {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
