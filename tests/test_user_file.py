"""The user's model file is byte-identical (sha256) and never opened for writing, after every command."""

import json
import subprocess

from edgees.gguffile import sha256_file
from toy_task import edgees_cmd, finetune_args, subprocess_env, toy_model, write_prompts


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
    ]
    for args in commands:
        out = subprocess.run(edgees_cmd(args), capture_output=True, text=True, env=env, timeout=600)
        assert out.returncode == 0, f"{args[0]}: {out.stderr[-800:]}"
        assert sha256_file(model) == before, f"`edgees {args[0]}` changed the model file"
        if args[0] == "bench":  # the figures issue 2 asks of it, in one JSON object
            figures = json.loads(out.stdout)
            for key in ("perturb_restore_over_memcpy", "perturb_restore_over_memcpy_paired_median",
                        "native_over_reference_speedup", "update_seconds"):
                assert figures[key] > 0, key
            assert figures["restore_exact"] is True
