"""The one retry policy: how an attempt failed, whether it saved progress and how many retries
its job has used in, what comes next out: the same command again (counted, or continuing from the
work it saved), an adapted command, or give up.

Giving up is final for the run only when the job failed for good: then the jobs behind it are
blocked. A job interrupted by the runner's own stop is given up for this run but not final: what
waits behind it stays pending for the next run.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from runner.jobs import FailureClass, HalveFlags, Outcome

# Classes that --retries never relaunches: a missing input stays missing and a command that
# cannot start will not start on a second try; a full disk stays full for the rest of the run
# (the next `run` relaunches the job); a job someone cancelled by hand is not relaunched behind
# their back.
NOT_RETRIED = frozenset({FailureClass.BLOCKED, FailureClass.LAUNCH_ERROR, FailureClass.DISK_FULL,
                         FailureClass.CANCELLED})


# Endings that say nothing against the command: a time limit, a preemption, a node that failed.
# An attempt that ended so after saving more of its work is continued without counting.
RESUMABLE_ENDINGS = frozenset({FailureClass.TIMEOUT, FailureClass.PREEMPTED, FailureClass.NODE_FAIL})


class Action(str, enum.Enum):
    RETRY = "retry"  # the same command again; counts against --retries
    CONTINUE = "continue"  # the same command again, from the work it saved; does not count
    RETRY_ADAPTED = "retry adapted"  # an adapted command (e.g. smaller batches); does not count
    GIVE_UP = "give up"  # no further attempt in this run


@dataclass(frozen=True)
class Decision:
    action: Action
    argv: tuple[str, ...] = ()  # the next attempt's command (retries)
    tries: int = 0  # retries used once that attempt is launched
    final: bool = False  # GIVE_UP: the job failed for good in this run; the jobs behind it are blocked


def decide(outcome: Outcome, argv: tuple[str, ...], tries: int, retries: int,
           adapt: HalveFlags | None = None, stopping: bool = False, advanced: bool = False) -> Decision:
    """What follows a failed attempt that ran `argv` after `tries` retries, given --retries and
    the job's adaptation; `stopping`: the runner is stopping (nothing more is launched);
    `advanced`: the attempt saved work beyond where it started (its progress file says so).
    Continuing ends when an attempt saves nothing more: then --retries decides."""
    failure = outcome.failure_class
    if stopping:
        return Decision(Action.GIVE_UP)
    if advanced and failure in RESUMABLE_ENDINGS:
        return Decision(Action.CONTINUE, argv, tries)
    adapted = halved(argv, adapt) if adapt is not None and failure is adapt.on else None
    if adapted is not None:
        return Decision(Action.RETRY_ADAPTED, adapted, tries)
    if tries < retries and failure is not None and failure not in NOT_RETRIED:
        return Decision(Action.RETRY, argv, tries + 1)
    return Decision(Action.GIVE_UP, final=failure not in (None, FailureClass.INTERRUPTED))


def halved(argv: tuple[str, ...], adapt: HalveFlags) -> tuple[str, ...] | None:
    """The command with each of the flags halved (or set to `start` when absent); None once every
    one is at the floor, or when one holds no number we can halve."""
    words, changed = list(argv), False
    for flag in adapt.flags:
        # argparse lets the last occurrence win, in either '--flag N' or '--flag=N' form.
        places = [i for i, word in enumerate(words) if word == flag or word.startswith(flag + "=")]
        if not places:
            words += [flag, str(adapt.start)]
            changed = True
            continue
        i = places[-1]
        joined = words[i] != flag
        try:
            current = int(words[i].split("=", 1)[1] if joined else words[i + 1])
        except (ValueError, IndexError):
            return None  # not a number we can halve: let --retries decide
        if current > adapt.floor:
            smaller = str(max(adapt.floor, current // 2))
            if joined:
                words[i] = f"{flag}={smaller}"
            else:
                words[i + 1] = smaller
            changed = True
    return tuple(words) if changed else None
