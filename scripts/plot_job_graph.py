"""Draw a study's job graph and how a run of it used its slots, from the ledger.

    python scripts/plot_job_graph.py --ledger demo_study/analysis/ledger.db --out docs/job_graph.png [--run N]

Left: the jobs of the lowest dose and what each needs (job_needs): trainings (E), Pty-Chi
reconstructions (F), comparisons (G). Right: the run's attempts on its slots against time,
coloured by phase (default run: the latest that launched anything). Prints the path it wrote.
"""

from __future__ import annotations

import argparse
import sqlite3
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on compute nodes
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {"E": "#d95f02", "F": "#7570b3", "G": "#1b9e77"}
NAMES = {"E": "E: training", "F": "F: Pty-Chi reconstruction", "G": "G: comparison"}


def read(ledger: Path, run_id: int | None) -> tuple[list, list, list, int]:
    conn = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        if run_id is None:
            run_id = conn.execute("SELECT MAX(run_id) FROM attempts").fetchone()[0]
        jobs = conn.execute("SELECT key, phase, dose FROM condition_grid ORDER BY plan_order").fetchall()
        needs = conn.execute("SELECT j.key, n.key FROM job_needs d JOIN jobs j ON j.job_id = d.job_id "
                             "JOIN jobs n ON n.job_id = d.needs_job_id").fetchall()
        attempts = conn.execute("SELECT j.kind, a.slot, a.started_at, a.ended_at FROM attempts a JOIN jobs j "
                                "USING (job_id) WHERE a.run_id = ? AND a.ended_at IS NOT NULL",
                                (run_id,)).fetchall()
    finally:
        conn.close()
    return jobs, needs, attempts, run_id


def draw_graph(ax, jobs: list, needs: list) -> None:
    """The lowest dose's jobs: trainings above reconstructions on the left, comparisons right."""
    dose = min(d for _, _, d in jobs)
    shown = [(key, phase) for key, phase, d in jobs if d == dose]
    left = [(key, phase) for key, phase in shown if phase in "EF"]
    right = [key for key, phase in shown if phase == "G"]
    place, y = {}, 0.0
    for i, (key, phase) in enumerate(left):
        if i and phase != left[i - 1][1]:
            y -= 0.8  # room for the second group's title
        place[key] = (0.0, y)
        y -= 1.0
    span = -y - 1.0
    for i, key in enumerate(right):
        place[key] = (1.0, -span / 2 + (len(right) - 1) / 2 * 1.3 - i * 1.3)
    for job, need in needs:
        if job in place and need in place:
            (x0, y0), (x1, y1) = place[need], place[job]
            ax.annotate("", xy=(x1 - 0.17, y1), xytext=(x0 + 0.17, y0),
                        arrowprops={"arrowstyle": "->", "color": "0.6", "lw": 0.7})
    for key, phase in shown:
        x, y = place[key]
        label = "/".join(key.split("/")[2:]) if phase in "EF" else "/".join(key.split("/")[1:])
        ax.text(x, y, label, ha="center", va="center", fontsize=8, color="white",
                bbox={"boxstyle": "round,pad=0.3", "fc": COLOURS[phase], "ec": "none"})
    for phase in "EF":
        first = next(key for key, p in left if p == phase)
        ax.text(0.0, place[first][1] + 0.55, NAMES[phase], ha="center", fontsize=9, weight="bold")
    ax.text(1.0, place[right[0]][1] + 0.55, NAMES["G"], ha="center", fontsize=9, weight="bold")
    ax.set_xlim(-0.35, 1.35)
    ax.set_ylim(-span - 0.6, 1.0)
    ax.set_title(f"dose {dose}: each comparison needs its two models and its reconstruction", fontsize=10)
    ax.axis("off")


def draw_timeline(ax, attempts: list, run_id: int) -> None:
    start = min(datetime.fromisoformat(a[2]) for a in attempts)
    slots = sorted({a[1] for a in attempts})
    for phase, slot, began, ended in attempts:
        t0 = (datetime.fromisoformat(began) - start).total_seconds()
        t1 = (datetime.fromisoformat(ended) - start).total_seconds()
        ax.barh(slots.index(slot), t1 - t0, left=t0, color=COLOURS[phase], edgecolor="white", height=0.7)
    ax.set_yticks(range(len(slots)), slots)
    ax.set_xlabel("seconds since the run's first launch")
    ax.set_title(f"run {run_id}: every attempt on its slot", fontsize=10)
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=COLOURS[p]) for p in "EFG"],
              labels=[NAMES[p] for p in "EFG"], loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3,
              fontsize=8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ledger", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--run", type=int)
    args = parser.parse_args()
    jobs, needs, attempts, run_id = read(args.ledger, args.run)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [0.8, 1.2]})
    draw_graph(left, jobs, needs)
    draw_timeline(right, attempts, run_id)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
