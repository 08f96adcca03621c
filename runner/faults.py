"""Named pause points for the fault-injection tests: inert unless RUNNER_FAULT_PAUSE is set.

`RUNNER_FAULT_PAUSE=<point>[:<n>]` stops the runner (SIGSTOP) the n-th time (default: first) it
reaches `<point>`, so that a test can SIGKILL it at exactly that moment instead of hoping a timer
lands there. The points are the moments where a crash is hardest to recover from:

  migrate      inside a migration's transaction, its statements run, not yet committed
  attempt_row  an attempt's row is committed, its process not yet spawned
  spawned      the process is spawned, its pid not yet recorded
  exited       the process has exited and been judged, the outcome not yet committed
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_reached: Counter[str] = Counter()


def armed(point: str) -> bool:
    return os.environ.get("RUNNER_FAULT_PAUSE", "").partition(":")[0] == point


def pause_point(point: str) -> None:
    if not armed(point):
        return
    _reached[point] += 1
    nth = os.environ["RUNNER_FAULT_PAUSE"].partition(":")[2]
    if _reached[point] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGSTOP)
