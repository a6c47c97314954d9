"""The QES core and the whole loop on the real models (marked `real`; CI runs them)."""

import json
import subprocess

import numpy as np
import pytest

from edgees.qes import kernels
from edgees.qes.trainable import slots_for
from edgees.qes import reference as kernels_ref
from edgees.fileio import sha256_file
from edgees.gguf.working_copy import WorkingCopy
from toy_task import edgees_cmd, subprocess_env


@pytest.mark.real
@pytest.mark.parametrize("which", ["smollm2_path", "gemma_path"])
def test_perturb_restore_every_trainable_tensor_is_exact(which, request):
    path = request.getfixturevalue(which)
    with WorkingCopy(path) as wc:
        slots = slots_for(wc)
        before = wc.sha256([s.name for s in slots])
        for seed in (1, -1, 12345):
            rec = kernels.perturb(slots, seed, 0.05)
            assert wc.sha256([s.name for s in slots]) != before
            kernels.restore(slots, rec)
            assert wc.sha256([s.name for s in slots]) == before


@pytest.mark.real
def test_native_matches_reference_on_real_tensors(gemma_path):
    """One tensor of each type gemma-3-270m holds (Q5_0, Q4_K, Q6_K, Q8_0), C vs numpy."""
    with WorkingCopy(gemma_path) as wc:
        by_type = {}
        for s in slots_for(wc):
            by_type.setdefault(s.type_id, s)
        slots = list(by_type.values())
        copies = [kernels.Slot(s.name, s.type_id, s.n_elements, s.view.copy()) for s in slots]
        g_c = kernels.perturb(slots, 77, 0.01)
        g_ref = kernels_ref.perturb(copies, 77, 0.01)
        assert all(np.array_equal(a.view, b.view) for a, b in zip(slots, copies))
        assert np.array_equal(g_c.pos, g_ref.pos) and np.array_equal(g_c.counts, g_ref.counts)
        assert np.array_equal(g_c.val, g_ref.val)
        kernels.restore(slots, g_c)


@pytest.mark.real
@pytest.mark.slow
def test_finetune_verify_export_on_smollm2(smollm2_path, tmp_path):
    """One real QES step end to end: finetune, verify, export; the base file is never changed."""
    sha = sha256_file(smollm2_path)
    run, out = tmp_path / "run", tmp_path / "out.gguf"
    env = subprocess_env()
    steps = [
        ["finetune", str(smollm2_path), "--task", "arithmetic", "--run", str(run), "--steps", "1",
         "--pairs", "1", "--prompts", "4", "--eval-n", "4", "--quiet", "--json"],
        ["verify", str(run)],
        ["export", str(run), "-o", str(out)],
    ]
    for args in steps:
        res = subprocess.run(edgees_cmd(args), capture_output=True, text=True, env=env, timeout=900)
        assert res.returncode == 0, res.stderr[-1000:]
    assert out.stat().st_size > 0
    assert sha256_file(smollm2_path) == sha


@pytest.mark.real
@pytest.mark.slow
def test_bench_engine_on_smollm2(smollm2_path):
    """`edgees bench engine --json` on the default model: every figure of issue 3, and batched
    greedy == sequential greedy on at least 95% of the 32 prompts (no timing thresholds)."""
    from test_user_file import assert_engine_bench_figures
    res = subprocess.run(edgees_cmd(["bench", "engine", str(smollm2_path), "--repeat", "1", "--json"]),
                         capture_output=True, text=True, env=subprocess_env(), timeout=900)
    assert res.returncode == 0, res.stderr[-1000:]
    figures = json.loads(res.stdout)
    assert_engine_bench_figures(figures, n=32)
    assert figures["batched_equals_sequential"] >= 0.95


@pytest.mark.real
def test_end_of_turn_comes_from_the_chat_template(smollm2_path, gemma_path):
    from edgees.engine.engine import Engine
    with Engine(smollm2_path, n_threads=2) as eng:  # its EOT id is <|endoftext|>; a turn ends <|im_end|>
        assert eng.piece(eng.end_of_turn()) == b"" and eng._special_text(eng.end_of_turn()) == "<|im_end|>"
    with Engine(gemma_path, n_threads=2) as eng:
        assert eng._special_text(eng.end_of_turn()) == "<end_of_turn>"
