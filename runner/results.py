"""Judge a finished attempt by its outputs: exit 0 is not success until the metrics parse.

The reference compare script exits 0 with no metrics file, with empty (NaN) cells for a model
whose evaluation raised, or with a stale file from an earlier run; none of these is a success.
"""

from __future__ import annotations

import csv
import math

from runner.jobs import FailureClass, MetricsCheck

REQUIRED_COLUMNS = {"model", "metric", "amplitude", "phase", "value"}
MAX_METRICS_BYTES = 64 << 20


def _finite(text: str | None) -> bool:
    try:
        return math.isfinite(float(text)) if text not in (None, "") else False
    except ValueError:
        return False


def check_metrics(check: MetricsCheck, launched_ns: int) -> str | None:
    """None when the metrics file proves success, else what is wrong with it."""
    path = check.path
    try:
        stat = path.stat()
    except FileNotFoundError:
        return f"exit 0 but no {path.name} in {path.parent}"
    if stat.st_mtime_ns < launched_ns:
        return f"exit 0 but {path.name} is older than this attempt (left by an earlier run)"
    if stat.st_size > MAX_METRICS_BYTES:
        return f"{path.name} is {stat.st_size} bytes, too large to be a metrics table"
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing_columns = REQUIRED_COLUMNS - set(reader.fieldnames or ())
            if missing_columns:
                return f"{path.name} lacks columns {', '.join(sorted(missing_columns))}"
            numeric_models = {row["model"] for row in reader
                              if _finite(row.get("amplitude")) or _finite(row.get("phase"))}
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return f"{path.name} cannot be read: {exc}"
    missing = [m for m in check.required_models if m not in numeric_models]
    if missing:
        return f"{path.name} has no numeric metric for {', '.join(missing)}"
    return None


def classify_exit(returncode: int) -> tuple[FailureClass, int | None, int | None]:
    """(failure class, exit code, signal) of a non-zero exit status."""
    if returncode < 0:
        return FailureClass.SIGNAL, None, -returncode
    return FailureClass.EXIT_CODE, returncode, None

