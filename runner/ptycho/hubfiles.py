"""The hub files PtychoPINN's artifact verifier (verify_dense_pipeline_artifacts.py) looks for
that the runner's summaries do not write: analysis/metrics_summary.md, analysis/artifact_inventory.txt
and the per-command logs in HUB/cli.

- metrics_summary.md is the Markdown of PtychoPINN's summariser (summarize_phase_g_outputs in
  run_phase_g_dense.py), line for line, from our metrics_summary.json. A missing value (null) is
  an empty cell, as theirs writes a missing key. Theirs refuses to summarise when n_failed > 0;
  ours writes the counts as they are.
- artifact_inventory.txt lists every file under the hub (POSIX, relative, sorted), itself
  included: it is written last and exists when read, and the verifier only checks that each line
  names an existing file. (Their orchestrator lists it only when it regenerates the inventory.)
  Files that exist only while a runner or reader holds the ledger are left out (below).
- HUB/cli/<name> is a command's log under the name their orchestrator gives it: its stdout log
  then its stderr log, unchanged (theirs merges the two streams into one file). Their orchestrator
  runs one dose and one view per hub, so its Phase F and G names carry no dose; when a study holds
  several doses, those jobs share one name, and the file holds each job's latest attempt one after
  the other, in dose order, each preceded by one line `# job <key>: <its log files>` (the files
  name the attempt) and ended by a newline if it lacks one. A name that one job has holds that
  job's logs alone. Bytes that are not UTF-8 are replaced (U+FFFD). Jobs that did not run get no
  log; their orchestrator's own log (run_phase_g_dense.log, with its stage banners) is never
  imitated.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from runner.files import write_atomic
from runner.ptycho.layout import ARTIFACTS, BASELINE, CLI_LOGS, INVENTORY
from runner.ptycho.phases import COMPARE, RECONSTRUCT, TRAIN
# Transient while someone holds the ledger: SQLite's side files, the runner's write probe and
# write_atomic's temporary files (`.<name>.<pid>.tmp`).
TRANSIENT = re.compile(r".*-(wal|shm|journal)|\.runner-write-test-.*|\..+\.\d+\.tmp")


# --- metrics_summary.md --------------------------------------------------------------------------

def _cell(value: float | None, decimals: int) -> str:
    return "" if value is None else f"{value:.{decimals}f}"  # theirs writes '' for a missing key


def metrics_summary_md(summary: dict) -> str:
    """PtychoPINN's metrics_summary.md for our metrics_summary.json."""
    out = ["# Phase G Metrics Summary\n\n", f"**Total Jobs:** {summary['n_jobs']}  \n",
           f"**Successful:** {summary['n_success']}  \n", f"**Failed:** {summary['n_failed']}  \n\n", "---\n\n",
           "## Aggregate Metrics\n\n", "Summary statistics across all jobs per model.\n\n"]
    table = "| Statistic | Amplitude | Phase |\n|-----------|-----------|-------|\n"
    aggregates = summary.get("aggregate_metrics", {})
    for model in sorted(aggregates):  # theirs sorts by name, not by arm
        out.append(f"### {model}\n\n")
        if "ms_ssim" in aggregates[model]:
            m = aggregates[model]["ms_ssim"]
            out += ["**MS-SSIM:**\n\n", table,
                    f"| Mean | {_cell(m.get('mean_amplitude'), 3)} | {_cell(m.get('mean_phase'), 3)} |\n",
                    f"| Best | {_cell(m.get('best_amplitude'), 3)} | {_cell(m.get('best_phase'), 3)} |\n\n"]
        if "mae" in aggregates[model]:
            m = aggregates[model]["mae"]
            out += ["**MAE:**\n\n", table,
                    f"| Mean | {_cell(m.get('mean_amplitude'), 3)} | {_cell(m.get('mean_phase'), 3)} |\n\n"]
    out.append("---\n\n")
    for job in summary.get("jobs", []):
        out.append(f"## Job: {job['view']}/{job['split']} (dose={job['dose']})\n\n")
        by_model: dict[str, list[dict]] = {}
        for entry in job["metrics"]:
            by_model.setdefault(entry["model"], []).append(entry)
        for model, entries in by_model.items():
            out += [f"### {model}\n\n", "| Metric | Amplitude | Phase | Value |\n",
                    "|--------|-----------|-------|-------|\n"]
            out += [f"| {e['metric']} | {_cell(e.get('amplitude'), 4)} | {_cell(e.get('phase'), 4)} | "
                    f"{_cell(e.get('value'), 4)} |\n" for e in entries]
            out.append("\n")
        out.append("---\n\n")
    out += ["## Phase C Metadata Compliance\n\n",
            "Validation of Phase C NPZ files for _metadata and canonical transformations.\n\n"]
    compliance = summary.get("phase_c_metadata_compliance", {})
    if "error" in compliance:
        out.append(f"**Error:** {compliance['error']}\n\n")
    else:
        out += ["| Dose | Split | Compliant | Has Metadata | Has Canonical Transform | Path |\n",
                "|------|-------|-----------|--------------|-------------------------|------|\n"]
        for dose_key in sorted(compliance):
            for split, entry in sorted(compliance[dose_key].items()):
                marks = ["✓" if entry.get(k, False) else "✗" for k in ("compliant", "has_metadata",
                                                                      "has_canonical_transform")]
                note = f" ({entry['error']})" if "error" in entry else ""
                out.append(f"| {dose_key} | {split} | {' | '.join(marks)} | {entry.get('npz_path', '')}{note} |\n")
        out.append("\n")
    return "".join(out)


# --- artifact_inventory.txt ----------------------------------------------------------------------

def _transient(folder: Path, name: str) -> bool:
    # The runner's lock is `<ledger>.lock` beside its ledger, whatever the ledger's name.
    return bool(TRANSIENT.fullmatch(name)) or (name.endswith(".lock") and (folder / name[:-5]).is_file())


def inventory(hub: Path) -> str:
    """Every file under `hub`, one POSIX path relative to it a line, sorted, the inventory itself
    included; symlinked folders are not entered."""
    own = f"{ARTIFACTS}/{INVENTORY}"
    found = {own}
    for root, _, names in os.walk(hub):  # os.walk does not descend into symlinked folders
        folder = Path(root)
        found |= {(folder / n).relative_to(hub).as_posix() for n in names
                  if (folder / n).is_file() and not _transient(folder, n)}
    return "".join(f"{path}\n" for path in sorted(found))


def write_inventory(hub: Path) -> Path:
    path = hub / ARTIFACTS / INVENTORY
    write_atomic(path, inventory(hub))
    return path


# --- HUB/cli -------------------------------------------------------------------------------------

def cli_log_name(kind: str, labels: dict) -> str | None:
    """The name of the log of a job of `kind` and `labels` in PtychoPINN's HUB/cli (None: theirs
    has no such log)."""
    try:
        if kind == TRAIN:
            model = labels["model"]
            return (f"phase_e_{BASELINE}_gs1_dose{labels['dose']}.log" if model == BASELINE
                    else f"phase_e_{model}_gs2_dose{labels['dose']}.log")
        if kind in (RECONSTRUCT, COMPARE):
            return f"phase_{kind.lower()}_{labels['view']}_{labels['split']}.log"
    except KeyError:
        return None
    return None


def _read(path: Path | None) -> str | None:
    if path is None or not path.is_file():
        return None
    return path.read_text(encoding="utf-8", errors="replace")  # write_atomic writes text


def shown(path: Path, hub: Path) -> str:
    """POSIX path relative to the hub when under it, else absolute (PtychoPINN's files name paths
    so)."""
    try:
        return path.relative_to(hub).as_posix()
    except ValueError:
        return path.as_posix()


def write_cli_logs(hub: Path, entries: list[tuple[str, str, dict, Path | None, Path | None]]) -> list[Path]:
    """Writes HUB/cli/<name> for each name of the given (key, kind, labels, stdout log, stderr log)
    whose job left a log; returns the files written, sorted."""
    by_name: dict[str, list[tuple[object, str, list[Path], str]]] = {}
    for key, kind, labels, stdout_log, stderr_log in entries:
        name = cli_log_name(kind, labels)
        parts = [(p, text) for p in (stdout_log, stderr_log) if (text := _read(p)) is not None]
        if name is None or not parts:
            continue  # no such log in their hub, or the job left no log: nothing to show
        by_name.setdefault(name, []).append((labels.get("dose"), key, [p for p, _ in parts],
                                             "".join(text for _, text in parts)))
    written = []
    for name, jobs in sorted(by_name.items()):
        if len(jobs) == 1:
            content = jobs[0][3]
        else:  # several doses share their name: each job's logs, in dose order, each named
            jobs.sort(key=lambda j: (j[0] if isinstance(j[0], (int, float)) else float("inf"), j[1]))
            content = "".join(f"# job {key}: {' + '.join(shown(p, hub) for p in paths)}\n"
                              + text + ("" if not text or text.endswith("\n") else "\n")
                              for _, key, paths, text in jobs)
        path = hub / CLI_LOGS / name
        write_atomic(path, content)
        written.append(path)
    return written
