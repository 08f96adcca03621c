"""The one retry policy (runner.retry.decide): what follows a failed attempt, from its outcome,
its command and the retries its job has used."""

import pytest

from runner.jobs import FailureClass, HalveFlags, Outcome
from runner.retry import NOT_RETRIED, RESUMABLE_ENDINGS, Action, decide, halved

CHUNKS = HalveFlags(FailureClass.CUDA_OOM, ("--pinn-chunk-size", "--baseline-chunk-size"), start=256, floor=1)


def failed(failure: FailureClass) -> Outcome:
    return Outcome(False, exit_code=1, failure_class=failure)


def test_a_retryable_failure_is_retried_with_the_same_command_until_the_retries_are_used():
    first = decide(failed(FailureClass.EXIT_CODE), ("x",), tries=0, retries=2)
    assert (first.action, first.argv, first.tries) == (Action.RETRY, ("x",), 1)
    last = decide(failed(FailureClass.EXIT_CODE), ("x",), tries=2, retries=2)
    assert (last.action, last.final) == (Action.GIVE_UP, True)  # failed for good: block what is behind it


@pytest.mark.parametrize("failure", sorted(NOT_RETRIED))
def test_what_retries_cannot_cure_is_given_up_at_once(failure):
    decision = decide(failed(failure), ("x",), tries=0, retries=5)
    assert (decision.action, decision.final) == (Action.GIVE_UP, True)


def test_an_interrupted_job_is_given_up_for_this_run_only():
    decision = decide(failed(FailureClass.INTERRUPTED), ("x",), tries=3, retries=3)
    assert (decision.action, decision.final) == (Action.GIVE_UP, False)  # the next run resumes it


def test_nothing_is_retried_while_the_runner_stops():
    decision = decide(failed(FailureClass.EXIT_CODE), ("x",), tries=0, retries=3, stopping=True)
    assert (decision.action, decision.final) == (Action.GIVE_UP, False)


def test_out_of_memory_is_retried_with_smaller_chunks_without_using_a_retry():
    decision = decide(failed(FailureClass.CUDA_OOM), ("x", "--pinn-chunk-size", "8"), tries=0, retries=0, adapt=CHUNKS)
    assert decision.action is Action.RETRY_ADAPTED and decision.tries == 0
    assert decision.argv == ("x", "--pinn-chunk-size", "4", "--baseline-chunk-size", "256")
    floor = decide(failed(FailureClass.CUDA_OOM), ("x", "--pinn-chunk-size", "1", "--baseline-chunk-size", "1"),
                   tries=0, retries=1, adapt=CHUNKS)
    assert floor.action is Action.RETRY and floor.tries == 1  # at the floor: --retries decides
    other = decide(failed(FailureClass.EXIT_CODE), ("x",), tries=0, retries=0, adapt=CHUNKS)
    assert other.action is Action.GIVE_UP  # the adaptation answers its own failure class only


@pytest.mark.parametrize("argv, expected", [
    (("x",), ("x", "--pinn-chunk-size", "256", "--baseline-chunk-size", "256")),
    (("x", "--pinn-chunk-size", "100", "--baseline-chunk-size", "7"),
     ("x", "--pinn-chunk-size", "50", "--baseline-chunk-size", "3")),
    (("x", "--pinn-chunk-size=9", "--pinn-chunk-size", "6", "--baseline-chunk-size=1"),
     ("x", "--pinn-chunk-size=9", "--pinn-chunk-size", "3", "--baseline-chunk-size=1")),
    (("x", "--pinn-chunk-size", "1", "--baseline-chunk-size", "1"), None),
    (("x", "--pinn-chunk-size", "big", "--baseline-chunk-size", "8"), None),
])
def test_halved_flags(argv, expected):
    assert halved(argv, CHUNKS) == expected


@pytest.mark.parametrize("failure", sorted(RESUMABLE_ENDINGS))
def test_a_time_limit_or_preemption_after_saved_progress_is_continued_without_using_a_retry(failure):
    decision = decide(failed(failure), ("train",), tries=1, retries=1, advanced=True)
    assert (decision.action, decision.argv, decision.tries) == (Action.CONTINUE, ("train",), 1)
    # An attempt that saved nothing more: --retries decides, as for any failure.
    stuck = decide(failed(failure), ("train",), tries=1, retries=1, advanced=False)
    assert (stuck.action, stuck.final) == (Action.GIVE_UP, True)
    assert decide(failed(failure), ("train",), tries=0, retries=1).action is Action.RETRY


def test_progress_excuses_only_what_says_nothing_against_the_command():
    for failure in (FailureClass.EXIT_CODE, FailureClass.SIGNAL, FailureClass.OUT_OF_MEMORY):
        decision = decide(failed(failure), ("train",), tries=0, retries=0, advanced=True)
        assert decision.action is Action.GIVE_UP  # a crash after some steps still counts
    stopping = decide(failed(FailureClass.TIMEOUT), ("train",), tries=0, retries=0, stopping=True, advanced=True)
    assert (stopping.action, stopping.final) == (Action.GIVE_UP, False)
