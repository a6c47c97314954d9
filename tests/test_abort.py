"""Engine.abort: llama.cpp stops a decode at the next graph node (native/abort.c), only inside
abortable() work; a member aborted that way leaves the weights exactly as before and returns no
rewards (the daemon taking the machine back mid-member)."""

import pytest

from edgees.engine.engine import load_live
from edgees.errors import EngineAborted
from edgees.gguf.working_copy import WorkingCopy
from edgees.qes.state import WeightState
from edgees.qes.trainable import trainable_tensors
from edgees.run.executor import evaluate_signed, mean_reward
from edgees.tasks.base import get_task

PROMPTS = ["hello there", "one two three"]


def test_abort_stops_a_decode_only_inside_abortable_work(tiny_models):
    with WorkingCopy(tiny_models["Q4_1"]) as wc:
        first = next(iter(trainable_tensors(wc.info)))
        with load_live(wc, first.name, n_threads=1, n_seq=2, max_tokens=4) as engine:
            before = engine.generate(PROMPTS)
            engine.abort()
            assert engine.generate(PROMPTS) == before  # a held-out evaluation is never aborted
            with engine.abortable():
                with pytest.raises(EngineAborted):
                    engine.generate(PROMPTS)
            engine.weights_changed()  # the partial batch's cells go
            engine.abort(False)
            with engine.abortable():
                assert engine.generate(PROMPTS) == before


def test_an_aborted_member_returns_no_rewards_and_restores_the_weights(tiny_models):
    with WorkingCopy(tiny_models["Q4_1"]) as wc:
        first = next(iter(trainable_tensors(wc.info)))
        state = WeightState(wc, ef="off")
        with load_live(wc, first.name, n_threads=1, n_seq=2, max_tokens=4) as engine:
            base = state.sha256()
            calls = []

            def reward():
                calls.append(1)
                if len(calls) == 2:  # the second member: the daemon wants the machine back
                    engine.abort()
                engine.generate(PROMPTS)
                return 0.5

            assert evaluate_signed(state, engine, [5, -5, 6, -6], 0.3, reward) is None
            assert len(calls) == 2 and state.sha256() == base
            engine.abort(False)
            assert evaluate_signed(state, engine, [5, -5], 0.3, reward) == [0.5, 0.5]
            assert state.sha256() == base
        state.close()


@pytest.mark.parametrize("spec,opts", [("arithmetic", {}), ("arithmetic", {"reward": "likelihood"})])
def test_an_abort_inside_a_tasks_reward_is_an_abort_not_a_reward_failure(tiny_models, spec, opts):
    """Through the trainer's own path (mean_reward around the task's train_rewards): the daemon's
    abort reaches evaluate_signed as EngineAborted, not as a TaskError that sets the job to "error"."""
    task = get_task(spec, **opts)
    train, _ = task.split(n_heldout=4)
    with WorkingCopy(tiny_models["Q4_1"]) as wc:
        first = next(iter(trainable_tensors(wc.info)))
        state = WeightState(wc, ef="off")
        with load_live(wc, first.name, n_threads=1, n_seq=2, max_tokens=task.max_tokens) as engine:
            base = state.sha256()

            def reward():
                engine.abort()
                return mean_reward(task, engine, train[:2])

            assert evaluate_signed(state, engine, [5, -5], 0.3, reward) is None
            assert state.sha256() == base
        state.close()
