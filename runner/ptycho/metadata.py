"""The Phase D metadata of a condition (STUDY.md §3): how its overlap view selected positions.

Read from the view NPZ's `_metadata` JSON string (without numpy, never unpickled), else from the
matching entry of Phase F's reconstruction_manifest.json, else all null. Each field is checked
(type, finite, in SQLite's range, short) before it is used.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from runner.npzmeta import NpzEntryError, read_npz_string
from runner.study import PlanError

FIELDS = ("selection_strategy", "acceptance_rate", "spacing_threshold", "n_accepted", "n_rejected")
MAX_MANIFEST_BYTES = 16 << 20
MAX_TEXT = 200  # characters of a text field
INT64 = 1 << 63  # SQLite's INTEGER range

Condition = tuple[int, str, str]  # dose, view, split


def read_json(path: Path | str) -> Any:
    """A manifest, size-checked before it is parsed."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise PlanError(f"manifest {path} is {size} bytes, over the {MAX_MANIFEST_BYTES} byte limit")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PlanError(f"manifest {path} is not valid JSON ({exc}); fix or remove it") from None


def clean(raw: Any, source: Path | str) -> dict[str, Any]:
    """The Phase D fields of `raw`, each checked."""
    if not isinstance(raw, dict):
        raise PlanError(f"Phase D metadata in {source} is not a JSON object")
    meta = {}
    for name in FIELDS:
        value = raw.get(name)
        expected = str if name == "selection_strategy" else (int, float)
        problem = None
        if value is not None and (not isinstance(value, expected) or isinstance(value, bool)):
            problem = "has the wrong type"
        elif isinstance(value, float) and not math.isfinite(value):
            problem = "is not a finite number"
        elif isinstance(value, int) and not -INT64 <= value < INT64:
            problem = "is out of range"
        elif isinstance(value, str) and len(value) > MAX_TEXT:
            problem = f"is longer than {MAX_TEXT} characters"
        if problem:
            shown = f"{value!r:.60}" + ("..." if len(repr(value)) > 60 else "")
            raise PlanError(f"Phase D metadata in {source}: {name} = {shown} {problem}")
        meta[name] = value
    return meta


def from_view_file(path: str) -> dict[str, Any] | None:
    try:
        text = read_npz_string(Path(path), "_metadata")
    except NpzEntryError as exc:
        raise PlanError(f"{path}: _metadata cannot be read ({exc})") from None
    if text is None:
        return None
    try:
        return clean(json.loads(text), path)
    except json.JSONDecodeError:
        raise PlanError(f"{path}: _metadata is not a JSON string; regenerate Phase D") from None


def from_manifest(path: Path) -> dict[Condition, dict[str, Any]]:
    """The metadata Phase F copied into its reconstruction_manifest.json, by condition."""
    if not path.is_file():
        return {}
    data = read_json(path)
    results = data.get("execution_results", []) if isinstance(data, dict) else None
    if not isinstance(results, list):
        raise PlanError(f"manifest {path}: execution_results must be a list")
    found = {}
    for entry in results:
        if isinstance(entry, dict) and {"dose", "view", "split"} <= entry.keys():
            try:
                key = (int(float(entry["dose"])), str(entry["view"]), str(entry["split"]))
            except (TypeError, ValueError, OverflowError):
                raise PlanError(f"manifest {path}: dose {entry['dose']!r} is not a number") from None
            found[key] = clean(entry, path)
    return found


def of_condition(view_file: str | None, manifest: dict[Condition, dict[str, Any]],
                 condition: Condition) -> dict[str, Any]:
    """The condition's metadata: from its view file, else Phase F's manifest, else all null."""
    return (from_view_file(view_file) if view_file else None) or manifest.get(condition) \
        or dict.fromkeys(FIELDS)
