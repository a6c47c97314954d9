"""The user's model file is byte-identical (sha256) and never opened for writing, after every command."""

import json
import subprocess

from edgees.fileio import sha256_file
from toy_task import edgees_cmd, finetune_args, subprocess_env, toy_model, write_prompts


def assert_engine_bench_figures(figures: dict, n: int) -> None:
    """The figures issue 3 asks of `edgees bench engine --json`, in one JSON object."""
    for key in ("speedup_vs_llama_cpp_python", "speedup_paired_median", "decode_ceiling_tokens_per_s",
                "engine_tokens_per_s", "engine_over_ceiling", "engine_peak_rss_mb",
                "llama_cpp_python_peak_rss_mb"):
        assert figures[key] > 0, key
    assert figures["n_prompts"] == n
    assert figures["engine_prompt_tokens"] == figures["llama_cpp_python_prompt_tokens"]  # same prompts
    assert 0.0 <= figures["batched_equals_sequential"] <= 1.0


def test_every_command_leaves_the_model_file_byte_identical(tmp_path):
    model = toy_model(tmp_path / "user-model.gguf")
    model.chmod(0o444)  # as a user's file in a read-only store: any open for writing would fail
    before = sha256_file(model)
    data = write_prompts(tmp_path / "prompts.jsonl")
    run = tmp_path / "run"
    env = subprocess_env()
    commands = [
        ["info", str(model)],
        ["info", str(model), "--json"],
        ["eval", str(model), "--task", "arithmetic", "--n", "4", "--json"],
        finetune_args(model, run, data, steps=2),
        finetune_args(model, run, data, steps=3, resume=True),
        ["verify", str(run), "--model", str(model)],
        ["export", str(run), "-o", str(tmp_path / "out.gguf"), "--model", str(model)],
        ["bench", "kernels", str(model), "--reps", "1", "--json"],
        ["bench", "engine", str(model), "--n", "4", "--max-tokens", "8", "--repeat", "1", "--json"],
    ]
    for args in commands:
        out = subprocess.run(edgees_cmd(args), capture_output=True, text=True, env=env, timeout=600)
        assert out.returncode == 0, f"{args[0]}: {out.stderr[-800:]}"
        assert sha256_file(model) == before, f"`edgees {args[0]}` changed the model file"
        if args[:2] == ["bench", "engine"]:
            assert_engine_bench_figures(json.loads(out.stdout), n=4)
        elif args[0] == "bench":  # the figures issue 2 asks of it, in one JSON object
            figures = json.loads(out.stdout)
            for key in ("perturb_restore_over_memcpy", "perturb_restore_over_memcpy_paired_median",
                        "native_over_reference_speedup", "update_seconds"):
                assert figures[key] > 0, key
            assert figures["restore_exact"] is True
