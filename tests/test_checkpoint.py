"""Checkpoints hold the exact state of step t: a state restored from one and carried on agrees with
the uninterrupted one, in every error-feedback mode; a damaged, truncated or foreign checkpoint is
skipped with a warning (an older one, or the base, is used instead); a resumed run logs what an
uninterrupted one does; checkpoints change no export, and a run of the old format still exports."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgees import cli
from edgees.fileio import sha256_file
from edgees.gguf.working_copy import WorkingCopy
from edgees.qes.algorithm import pair_seeds
from edgees.qes.records import StepSpec
from edgees.qes.state import WeightState
from edgees.run import checkpoint as ck
from edgees.run.log import StepRecord

from toy_task import finetune_args, toy_model, write_answers

STEPS = 8


def _records(model, ef: str, window: int = 3, alpha: float = 0.5, sigma: float = 0.3) -> list[StepRecord]:
    """A synthetic run: STEPS updates with fixed coefficients, each step's weight hash logged."""
    recs = []
    with WorkingCopy(model) as wc:
        state = WeightState(wc, ef=ef, window=window)
        for t in range(STEPS):
            seeds = pair_seeds(7, t, 3)
            coefs = (1.5, -0.5, -1.0)
            state.apply(StepSpec(seeds, coefs, alpha, sigma))
            recs.append(StepRecord(t, list(seeds), [0.0] * 3, [0.0] * 3, list(coefs), sigma, alpha, state.sha256()))
    return recs


def _log_sha(recs):
    return lambda t: f"log-{t}-{recs[t - 1].weights_sha256}"


def _spec(rec):
    return StepSpec(tuple(rec.seeds), tuple(rec.coefs), rec.alpha, rec.sigma)


def _codes_forms(model, path) -> list[str]:
    """Per trainable tensor, the form the checkpoint's codes section holds it in: diff or dense."""
    _, sections = ck.read_checkpoint(path)
    raw, k, forms = sections["codes"], 0, []
    with WorkingCopy(model) as wc:
        for s in WeightState(wc, ef="off").slots:
            n = int(np.frombuffer(raw, np.uint64, 1, k)[0])
            forms.append("dense" if n == ck.DENSE else "diff")
            k += 8 + (s.view.nbytes if n == ck.DENSE else 5 * n)
    assert k == len(raw)
    return forms


def _checkpoint_at(model, run, recs, ef, step, window=3):
    with WorkingCopy(model) as wc:
        state = WeightState(wc, ef=ef, window=window)
        for t in range(step):
            state.apply(_spec(recs[t]))
        return ck.write_checkpoint(run, state, model, "base", _log_sha(recs)(step), recs[step - 1].weights_sha256)


@pytest.mark.parametrize("ef", ["replay", "residual", "off"])
def test_a_restored_state_carries_on_like_the_uninterrupted_one(tiny_models, tmp_path, ef):
    model = tiny_models["Q4_1"]
    recs = _records(model, ef)
    path = _checkpoint_at(model, tmp_path, recs, ef, 5)
    assert path.name == "step-00000005.ckpt"
    with WorkingCopy(model) as wc:
        state = WeightState(wc, ef=ef, window=3)
        assert ck.restore_newest(tmp_path, state, recs, STEPS, "base", _log_sha(recs)) == 5
        for t in range(5, STEPS):
            state.apply(_spec(recs[t]))
            assert state.sha256() == recs[t].weights_sha256, t


@pytest.mark.parametrize("moves", ["few", "many"])
def test_codes_are_kept_as_a_diff_or_whole_whichever_is_smaller(tiny_models, tmp_path, moves):
    """Early in a real run few codes move (a diff against the base is small); after many large
    steps most have (the tensor's bytes whole are smaller). Either form restores exactly."""
    model = tiny_models["Q4_1"]
    recs = _records(model, "replay", alpha=0.02, sigma=0.01) if moves == "few" else _records(model, "replay")
    path = _checkpoint_at(model, tmp_path, recs, "replay", 2)
    forms = _codes_forms(model, path)
    assert set(forms) == ({"diff"} if moves == "few" else {"dense"})
    with WorkingCopy(model) as wc:
        state = WeightState(wc, ef="replay", window=3)
        assert ck.restore_newest(tmp_path, state, recs, STEPS, "base", _log_sha(recs)) == 2
        for t in range(2, STEPS):
            state.apply(_spec(recs[t]))
            assert state.sha256() == recs[t].weights_sha256, t


def _damaged(path, how):
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0x40
    elif how == "truncate":
        data = data[: len(data) - 7]
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["flip", "truncate", "foreign"])
def test_a_bad_checkpoint_is_skipped_for_an_older_one(tiny_models, tmp_path, how):
    model = tiny_models["Q4_1"]
    recs = _records(model, "replay")
    _checkpoint_at(model, tmp_path, recs, "replay", 3)
    newest = _checkpoint_at(model, tmp_path, recs, "replay", 6)
    if how == "foreign":  # another run's checkpoint of the same step under this name
        other = tmp_path / "other"
        other.mkdir()
        alien = [StepRecord(r.step, [s + 2 for s in r.seeds], *([0.0] * 3,) * 2, r.coefs, r.sigma, r.alpha, "")
                 for r in recs]
        _checkpoint_at(model, other, alien, "replay", 6)
        newest.write_bytes((other / ck.DIR / newest.name).read_bytes())
    else:
        _damaged(newest, how)
    warnings = []
    with WorkingCopy(model) as wc:
        state = WeightState(wc, ef="replay", window=3)
        assert ck.restore_newest(tmp_path, state, recs, STEPS, "base", _log_sha(recs), warnings.append) == 3
        assert len(warnings) == 1 and newest.name in warnings[0] and "\n" not in warnings[0]
        for t in range(3, STEPS):
            state.apply(_spec(recs[t]))
        assert state.sha256() == recs[-1].weights_sha256


def test_no_usable_checkpoint_leaves_the_base(tiny_models, tmp_path):
    model = tiny_models["Q4_1"]
    recs = _records(model, "replay")
    only = _checkpoint_at(model, tmp_path, recs, "replay", 4)
    _damaged(only, "flip")
    with WorkingCopy(model) as wc:
        base = wc.sha256()
        state = WeightState(wc, ef="replay", window=3)
        assert ck.restore_newest(tmp_path, state, recs, STEPS, "base", _log_sha(recs), lambda s: None) == 0
        assert wc.sha256() == base and state.step == 0 and len(state.history) == 0


def test_prune_keeps_the_newest(tiny_models, tmp_path):
    model = tiny_models["Q4_1"]
    recs = _records(model, "off")
    for t in (2, 4, 6):
        _checkpoint_at(model, tmp_path, recs, "off", t)
    (tmp_path / ck.DIR / ".step-00000008.ckpt.tmp-1").write_bytes(b"half")
    gone = ck.prune(tmp_path, keep=2)
    assert sorted(p.name for p in gone) == [".step-00000008.ckpt.tmp-1", "step-00000002.ckpt"]
    assert [ck.step_of(p) for p in ck.list_checkpoints(tmp_path)] == [6, 4]


def test_a_checkpoint_past_the_log_is_not_used(tiny_models, tmp_path):
    model = tiny_models["Q4_1"]
    recs = _records(model, "off")
    _checkpoint_at(model, tmp_path, recs, "off", 6)
    with WorkingCopy(model) as wc:
        state = WeightState(wc, ef="off")
        assert ck.restore_newest(tmp_path, state, recs[:4], 4, "base", _log_sha(recs)) == 0
        assert np.all(np.isfinite([state.step]))


# ---- through the CLI: resume, export and verify of real (toy) runs ---------------------------

@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt-toy")
    return toy_model(d / "toy.gguf"), write_answers(d / "answers.jsonl")


def _finetune(capsys, model, data, run, steps, resume=False, every=2):
    args = finetune_args(model, run, data, steps=steps, pairs=2, prompts=3, window=3, eval_n=2,
                         likelihood=True, resume=resume, checkpoint_every=every)
    args.remove("--quiet")
    code = cli.main(args)
    out, err = capsys.readouterr()
    assert code == 0, err
    return err


@pytest.mark.parametrize("damage", [None, "flip"])
def test_a_run_resumed_from_a_checkpoint_logs_what_an_uninterrupted_one_does(toy, tmp_path, capsys, damage):
    model, data = toy
    _finetune(capsys, model, data, tmp_path / "ref", 6)
    _finetune(capsys, model, data, tmp_path / "cut", 3)  # checkpoints at 2 and at the stop, 3
    assert [ck.step_of(p) for p in ck.list_checkpoints(tmp_path / "cut")] == [3, 2]
    if damage:
        _damaged(ck.list_checkpoints(tmp_path / "cut")[0], damage)
    err = _finetune(capsys, model, data, tmp_path / "cut", 6, resume=True)
    if damage:
        assert "warning: checkpoint step-00000003.ckpt skipped" in err
        assert "replaying 1 logged steps from the checkpoint of step 2" in err
    else:
        assert "replaying 0 logged steps from the checkpoint of step 3" in err
    assert (tmp_path / "cut" / "steps.log").read_bytes() == (tmp_path / "ref" / "steps.log").read_bytes()


def test_checkpoints_change_no_export_and_old_runs_still_export(toy, tmp_path, capsys):
    model, data = toy
    run = tmp_path / "run"
    _finetune(capsys, model, data, run, 5)
    outs = {}
    for name in ("with", "without", "old-format"):
        if name == "without":
            for p in ck.list_checkpoints(run):
                p.unlink()
        if name == "old-format":  # what a version-2 run.json holds: no checkpoint settings
            header = json.loads((run / "run.json").read_text())
            header["version"] = 2
            for key in ("checkpoint_every", "checkpoint_keep"):
                del header["config"][key]
            (run / "run.json").write_text(json.dumps(header))
        out = tmp_path / f"{name}.gguf"
        assert cli.main(["export", str(run), "-o", str(out), "--json"]) == 0
        res = json.loads(capsys.readouterr().out)
        assert res["from_checkpoint"] == (5 if name == "with" else 0)
        outs[name] = sha256_file(out)
    assert len(set(outs.values())) == 1, outs
    assert cli.main(["verify", str(run)]) == 0
