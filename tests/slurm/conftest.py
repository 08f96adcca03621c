"""A real one-node SLURM cluster for the SLURM tests: started once per session by
start_slurm.sh (installs the Debian packages when missing). Without it the tests skip, saying why."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

START = Path(__file__).resolve().parent / "start_slurm.sh"
STATE = Path(os.environ.get("RUNNER_TEST_SLURM_STATE", "/tmp/runner-slurm"))


@pytest.fixture(scope="session")
def slurm_conf() -> Path:
    """SLURM_CONF of the test cluster, also set in this process's environment so every runner
    and SLURM command the tests start talks to it."""
    if os.environ.get("RUNNER_SKIP_SLURM"):
        pytest.skip("SLURM tests switched off by RUNNER_SKIP_SLURM")
    try:
        result = subprocess.run(["bash", str(START), str(STATE)], capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"no SLURM cluster: start_slurm.sh failed ({exc})")
    if result.returncode != 0:
        pytest.skip(f"no SLURM cluster: {result.stderr.strip().splitlines()[-1] if result.stderr.strip() else result.returncode}")
    conf = Path(result.stdout.strip().splitlines()[-1].split("=", 1)[1])
    os.environ["SLURM_CONF"] = str(conf)
    return conf


def pytest_terminal_summary(terminalreporter) -> None:
    """Say how many SLURM tests ran, so a CI log shows whether the cluster came up."""
    counts = {outcome: sum(1 for r in terminalreporter.stats.get(outcome, [])
                           if "tests/slurm/" in getattr(r, "nodeid", "") and r.when in ("call", "setup"))
              for outcome in ("passed", "failed", "error", "skipped")}
    if any(counts.values()):
        terminalreporter.write_line("SLURM tests against a real cluster: "
                                    + ", ".join(f"{n} {k}" for k, n in counts.items()))
