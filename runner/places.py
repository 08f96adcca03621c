"""Where a study's files are, in a form that survives the study moving.

A study is a folder that moves: rsync to a cluster's project storage, the same disk mounted at
another path on a node. So the ledger records a path under the study's root relative to that root
(POSIX, e.g. `analysis/condition_7/logs`), and the root relative to the ledger's own folder
(`runs.root`, e.g. `..`); a path outside the root (a checkout, a shared dataset) stays absolute.
A reader finds the root from where the ledger is now, so every path it gives works at once.
"""

from __future__ import annotations

import os
from pathlib import Path

STUDY = "$STUDY"  # the study's root in a command's portable form (its fingerprint)
WORKDIR = "$WORKDIR"  # the folder the command runs from


def relative_to(path: str, root: str) -> str | None:
    """`path` relative to `root` (both absolute, normalised) when it lies under it, else None.
    Only at a path boundary: /data/study2 is not under /data/study."""
    if path == root:
        return "."
    prefix = root if root.endswith("/") else root + "/"
    return path[len(prefix):] if path.startswith(prefix) else None


def record(path: str | Path, root: str) -> str:
    """How the ledger keeps `path`: relative to the study's root when under it, else absolute."""
    text = os.path.normpath(os.path.abspath(path))
    inside = relative_to(text, root)
    return text if inside is None else inside


def resolve(text: str | None, root: str | None) -> str | None:
    """A path as the ledger keeps it, made absolute against the study's root as it is now."""
    if not text or root is None or os.path.isabs(text):
        return text
    return os.path.normpath(os.path.join(root, text))


def root_from_ledger(ledger: Path, stored: str | None) -> str | None:
    """The study's root now: `runs.root` (relative to the ledger's folder) from where the ledger is."""
    if stored is None:
        return None
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(ledger)), stored))


def root_for_ledger(root: Path, ledger: Path) -> str:
    """`runs.root`: the study's root relative to the ledger's folder (they move together)."""
    return Path(os.path.relpath(os.path.abspath(root), os.path.dirname(os.path.abspath(ledger)))).as_posix()


def portable(argument: str, root: str, workdir: str) -> str:
    """A command's argument with the study's root written $STUDY and its working folder $WORKDIR
    (also after a `--flag=`), so that the same command in a moved study hashes the same."""
    head, sep, value = argument.partition("=") if argument.startswith("-") else ("", "", argument)
    if os.path.isabs(value):
        for base, token in ((root, STUDY), (workdir, WORKDIR)):  # the study may lie in the checkout
            inside = relative_to(os.path.normpath(value), base)
            if inside is not None:
                value = token if inside == "." else f"{token}/{inside}"
                break
    return f"{head}{sep}{value}"
