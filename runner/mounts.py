"""Which filesystem holds the ledger: SQLite's locking and WAL are unsafe on network filesystems,
so the runner warns when the ledger is on one."""

from __future__ import annotations

import re
from pathlib import Path

NETWORK_FILESYSTEMS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "ceph",
                       "fuse.sshfs", "beegfs", "fuse.glusterfs", "afs", "9p"}
MOUNTS = Path("/proc/mounts")  # a module attribute so that tests can give a fake table


def filesystem_type(path: Path) -> str | None:
    """The type of the filesystem holding `path`, from /proc/mounts (Linux only)."""
    try:
        mounts = MOUNTS.read_text().splitlines()
    except OSError:
        return None
    target = str(path.resolve())
    best = ("", None)
    for line in mounts:
        fields = line.split()
        if len(fields) >= 3:
            # The kernel writes a space, tab, newline or backslash in a mount point as \ooo.
            mount_point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
            inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) >= len(best[0]):
                best = (mount_point, fields[2])
    return best[1]


def network_filesystem_warning(path: Path) -> str | None:
    fs = filesystem_type(path.parent)
    if fs in NETWORK_FILESYSTEMS:
        return (f"the ledger {path} is on a network filesystem ({fs}); SQLite locking is unsafe "
                "there: keep the ledger on a local disk with --ledger")
    return None
