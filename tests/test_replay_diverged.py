"""A replay window that does not fit the weights reaches the user as one line naming the step.

The C update rewinds and replays the window's recorded code deltas; a delta that leaves the code
range means the window is not the history these weights went through ("replay diverged" from the
binding). The only way in from outside is a checkpoint: its window section is trusted once its
checksums, the log's hash and the weights' hash match. Here a real run's checkpoint is rewritten
consistently (every hash right) with a window no history can produce: each recorded delta +16 on
Q4_1 codes 0..15. Export and resume both replay from it, and both must say `step 2: ...` in one line.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgees import cli
from edgees.gguf.working_copy import WorkingCopy
from edgees.qes import kernels
from edgees.qes.algorithm import QESConfig
from edgees.qes.state import WeightState
from edgees.run import checkpoint as ck
from edgees.run.log import RunDir, log_sha256

from toy_task import finetune_args, toy_model, write_answers

CHECKPOINT_STEP = 2


def _impossible(rec: kernels.PackedRecord) -> kernels.PackedRecord:
    """The same positions, each moved by +16: out of range for any 4-bit code."""
    plain = kernels.unpack(rec)
    return kernels.pack(kernels.ChunkRecord(plain.counts, plain.pos, np.full_like(plain.val, 16)))


def _rewrite_window(run, path):
    """Load the checkpoint at `path`, replace its window by _impossible records, write it back with
    every hash consistent (weights and log unchanged)."""
    header = RunDir(run).read_header()
    records = RunDir(run).read_steps()
    cfg = QESConfig.from_header(header)
    base = header["base_model"]
    with WorkingCopy(base) as wc:
        state = WeightState(wc, ef=cfg.ef, window=cfg.window, gamma=cfg.gamma)
        t = ck.load_checkpoint(path, state, records, header["base_sha256"],
                               lambda n: log_sha256(run / "steps.log", n))
        steps = list(state.history.steps())
        assert sum(int(r.counts.sum()) for _, recs in steps for r in recs) > 0  # codes moved: something to corrupt
        state.history.clear()
        for spec, recs in steps:
            state.history.append(spec, [_impossible(r) for r in recs])
        ck.write_checkpoint(run, state, base, header["base_sha256"], log_sha256(run / "steps.log", t),
                            records[t - 1].weights_sha256)
        state.close()


@pytest.fixture
def bad_window_run(tmp_path, capsys):
    """A 4-step toy run whose only checkpoint (step 2) carries an impossible window."""
    model, data = toy_model(tmp_path / "toy.gguf"), write_answers(tmp_path / "answers.jsonl")
    run = tmp_path / "run"
    args = finetune_args(model, run, data, steps=4, pairs=2, prompts=3, window=3, eval_n=2,
                         likelihood=True, checkpoint_every=CHECKPOINT_STEP)
    assert cli.main(args) == 0, capsys.readouterr().err
    for p in ck.list_checkpoints(run):
        if ck.step_of(p) != CHECKPOINT_STEP:
            p.unlink()
    (path,) = ck.list_checkpoints(run)
    _rewrite_window(run, path)
    capsys.readouterr()
    return run, model, data


def _one_line_error(capsys, args, code):
    assert cli.main([str(a) for a in args]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_export_names_the_step_where_the_replay_diverged(bad_window_run, tmp_path, capsys):
    run, _, _ = bad_window_run
    line = _one_line_error(capsys, ["export", run, "-o", tmp_path / "out.gguf"], 3)
    assert line.startswith(f"edgees: error: step {CHECKPOINT_STEP}: the replay diverged"), line
    assert "checkpoints/" in line and "edgees verify" in line
    assert not (tmp_path / "out.gguf").exists()
    # the advice holds: the log itself is sound (verify replays from the base alone) ...
    assert cli.main(["verify", str(run)]) == 0
    # ... and without the checkpoint the export works
    for p in ck.list_checkpoints(run):
        p.unlink()
    assert cli.main(["export", str(run), "-o", str(tmp_path / "out.gguf")]) == 0


def test_resume_names_the_step_where_the_replay_diverged(bad_window_run, capsys):
    run, model, data = bad_window_run
    args = finetune_args(model, run, data, steps=6, pairs=2, prompts=3, window=3, eval_n=2,
                         likelihood=True, resume=True, checkpoint_every=CHECKPOINT_STEP)
    line = _one_line_error(capsys, args, 3)
    assert line.startswith(f"edgees: error: step {CHECKPOINT_STEP}: the replay diverged"), line
    assert len(RunDir(run).read_steps()) == 4  # nothing was appended to the log


def test_resume_from_a_checkpoint_of_the_last_step_names_the_first_new_step(tmp_path, capsys):
    """Nothing left to replay: the bad window meets the weights at the first new step's update."""
    model, data = toy_model(tmp_path / "toy.gguf"), write_answers(tmp_path / "answers.jsonl")
    run = tmp_path / "run"
    args = finetune_args(model, run, data, steps=2, pairs=2, prompts=3, window=3, eval_n=2,
                         likelihood=True, checkpoint_every=CHECKPOINT_STEP)
    assert cli.main(args) == 0, capsys.readouterr().err
    (path,) = ck.list_checkpoints(run)
    _rewrite_window(run, path)
    capsys.readouterr()
    args = finetune_args(model, run, data, steps=3, pairs=2, prompts=3, window=3, eval_n=2,
                         likelihood=True, resume=True, checkpoint_every=CHECKPOINT_STEP)
    line = _one_line_error(capsys, args, 3)
    assert line.startswith(f"edgees: error: step {CHECKPOINT_STEP}: the replay diverged"), line
