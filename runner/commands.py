"""What a study reads from a command line: the script file it runs (its hash goes into the
fingerprints of its jobs, so editing the script reruns them) and the value a flag takes."""

from __future__ import annotations

import hashlib
from pathlib import Path


def script_of(cmd: tuple[str, ...], workdir: Path) -> Path | None:
    """The script file a command prefix runs (`python -m pkg.mod` or `python path/to/x.py`), or None."""
    if "-m" in cmd[:-1]:
        module = cmd[cmd.index("-m") + 1].replace(".", "/")
        for candidate in (workdir / f"{module}.py", workdir / module / "__main__.py"):
            if candidate.is_file():
                return candidate
        return None
    for token in cmd:
        candidate = Path(token) if Path(token).is_absolute() else workdir / token
        if candidate.suffix == ".py" and candidate.is_file():
            return candidate
    return None


def script_hash(cmd: tuple[str, ...], workdir: Path) -> str:
    """The hash of the script a command runs, or '' when it runs none we can find."""
    script = script_of(cmd, workdir)
    return hashlib.sha256(script.read_bytes()).hexdigest() if script else ""


def flag_value(argv: tuple[str, ...] | list[str], flag: str) -> str | None:
    """The value argparse would give `flag` in `argv` (its last occurrence, `--f v` or `--f=v`)."""
    value = None
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
    return value
