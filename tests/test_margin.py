"""reward=margin: the reference tokens' capped logit lead over the runner-up, from the real engine."""

from __future__ import annotations

import numpy as np
import pytest

from edgees.errors import TaskError
from edgees.tasks.base import MARGIN_CAP, get_task


def test_margin_reward_is_the_capped_lead_of_each_reference_token(tmp_path):
    engine_mod = pytest.importorskip("edgees.engine.engine")
    from edgees.engine.decode import last_logits
    from edgees.gguf.tiny import make_tiny_model

    model = make_tiny_model(tmp_path / "tiny.gguf", "Q8_0", seed=0)
    task = get_task("arithmetic", reward="margin")
    examples = task.split(n_train=3, n_heldout=0)[0]
    with engine_mod.Engine(model, n_seq=4) as engine:
        got = task.train_rewards(engine, examples)
        for r, e in zip(got, examples):
            toks = engine.prompt_tokens(e.prompt)
            ref = engine.tokenize(task.reference(e), add_special=False, parse_special=False)
            want = 0.0
            for tok in ref + [engine.end_of_turn()]:
                row = last_logits(engine, toks).astype(np.float64)
                lead = row[tok] - np.max(np.delete(row, tok))
                want += min(lead, MARGIN_CAP)
                toks = toks + [tok]
            assert r == pytest.approx(want, abs=1e-3)
            assert r <= MARGIN_CAP * (len(ref) + 1) + 1e-9
        assert task.loglik(engine, examples) == get_task("arithmetic", reward="likelihood").train_rewards(
            engine, examples)


def test_margin_is_a_known_reward_and_regex_refuses_it(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "p", "answer": "a.*"}\n')
    with pytest.raises(TaskError, match="reward=margin scores a reference text"):
        get_task(f"jsonl:{data}", match="regex", reward="margin")
    with pytest.raises(TaskError, match="reward=margin"):
        get_task("arithmetic", reward="nope")
