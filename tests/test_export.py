"""A toy fine-tune improves its reward; its export is the base GGUF with only the trained weight bytes
changed, loads in llama.cpp and gguf-py, gives the run's logits, and is byte-reproducible; verify
rebuilds the run and catches a wrong base, a damaged log and a wrong hash; a torn tail is dropped."""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

import gguf
import numpy as np
import pytest

from edgees import cli
from edgees.errors import RunError
from edgees.run.export import export_gguf
from edgees.run.rebuild import rebuild_run
from edgees.fileio import sha256_file
from edgees.gguf.reader import read_gguf
from edgees.gguf.writer import rewrite_header
from edgees.qes.trainable import trainable_tensors
from edgees.run.log import STEPS_MAGIC, read_steps

from toy_task import finetune_args, toy_model, write_answers

PROMPT = [{"role": "user", "content": "Write a short sentence about 7 apples."}]
STEPS = 10


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A 10-step run of the toy likelihood task (sigma 0.3, alpha 1, 4 pairs x 6 prompts): (run, base, data)."""
    d = tmp_path_factory.mktemp("toy-run")
    base, data = toy_model(d / "toy.gguf"), write_answers(d / "answers.jsonl")
    with pytest.MonkeyPatch.context() as mp:
        (d / "work").mkdir()
        mp.setenv("EDGEES_WORKDIR", str(d / "work"))
        mp.setenv("EDGEES_HOME", str(d))
        base_sha = sha256_file(base)
        args = finetune_args(base, d / "run", data, steps=STEPS, pairs=4, prompts=6, window=50, eval_n=8,
                             likelihood=True)
        assert cli.main(args) == 0
        assert sha256_file(base) == base_sha
        assert not list((d / "run" / "window").glob("*.win"))  # a cache, gone at the end
    return d / "run", base, data


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_toy_run_improves_the_reward(toy_run):
    run, _, _ = toy_run
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r["reward_mean"] for r in rows if "reward_mean" in r]
    heldout = [r["heldout"]["loglik"] for r in rows if "heldout" in r]
    assert len(train) == STEPS and len(heldout) == 2
    # The reward is a log-likelihood: smooth in the weights, no argmax to flip, so what a CPU's
    # kernel path changes in the last bits of the logits barely moves it. Over run seeds 1-6
    # (AVX-512 build) held-out rose by 2.9-5.0 nats and the train mean by 2.3-3.2 in 10 steps;
    # 1 nat is the margin. Only same-run figures are compared, never a constant measured elsewhere.
    assert heldout[-1] > heldout[0] + 1.0, heldout
    assert np.mean(train[-3:]) > np.mean(train[:3]) + 1.0, train
    assert (run / "curve.png").is_file()


@pytest.mark.slow
def test_export_is_the_base_with_trained_bytes_changed(toy_run, tmp_path, capsys):
    run, base, _ = toy_run
    base_sha = sha256_file(base)
    out, out2 = tmp_path / "a.gguf", tmp_path / "b.gguf"
    code, text, _ = run_cli(capsys, "export", run, "-o", out, "--json")
    assert code == 0
    res = json.loads(text)
    records, _, _ = read_steps(run / "steps.log")
    assert res["step"] == STEPS and res["weights_sha256"] == records[-1].weights_sha256
    assert run_cli(capsys, "export", run, "-o", out2)[0] == 0
    assert out.read_bytes() == out2.read_bytes()  # reproducible: no clock, no machine in it
    assert sha256_file(out) == res["sha256"]

    # gguf-py: the same tensors, types, shapes, in the same order; our metadata
    rb, ro = gguf.GGUFReader(str(base)), gguf.GGUFReader(str(out))
    layout = lambda r: [(t.name, t.tensor_type, tuple(int(x) for x in t.shape), t.n_bytes) for t in r.tensors]  # noqa: E731
    assert layout(ro) == layout(rb)
    lines = (run / "steps.log").read_bytes()[len(STEPS_MAGIC):]
    assert ro.fields["edgees.step"].contents() == STEPS
    assert ro.fields["edgees.base_sha256"].contents() == base_sha
    assert ro.fields["edgees.log_sha256"].contents() == hashlib.sha256(lines).hexdigest()
    assert ro.fields["edgees.version"].contents() == "0.1.0"
    for key in rb.fields:  # every base entry is kept, with its value
        if not key.startswith("GGUF."):
            assert key in ro.fields
    assert ro.fields["general.architecture"].contents() == rb.fields["general.architecture"].contents()

    # only trainable weight bytes differ from the base
    ib, io = read_gguf(base), read_gguf(out)
    trained = {t.name for t in trainable_tensors(ib)}
    b, o = base.read_bytes(), out.read_bytes()
    changed = set()
    for tb, to in zip(ib.tensors, io.tensors):
        if b[tb.offset:tb.end] != o[to.offset:to.end]:
            changed.add(tb.name)
    assert changed and changed <= trained
    assert b[ib.data_offset:] != o[io.data_offset:]

    # llama.cpp loads it, and its logits are the run's fine-tuned weights' logits
    from edgees.engine.engine import Engine
    with rebuild_run(run) as r, Engine(out, n_threads=1) as e_out, Engine(r.wc.path, n_threads=1) as e_run, \
            Engine(base, n_threads=1) as e_base:
        assert r.state.sha256() == records[-1].weights_sha256
        got = e_out.logits(PROMPT)
        assert got.tobytes() == e_run.logits(PROMPT).tobytes()
        assert got.tobytes() != e_base.logits(PROMPT).tobytes()
    assert sha256_file(base) == base_sha


def test_export_step_and_refusals(toy_run, tmp_path, capsys):
    run, base, _ = toy_run
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    base_sha = sha256_file(base)
    records, _, _ = read_steps(run / "steps.log")
    res = export_gguf(run, tmp_path / "s3.gguf", step=3)
    assert res["step"] == 3 and res["weights_sha256"] == records[2].weights_sha256
    res0 = export_gguf(run, tmp_path / "s0.gguf", step=0)  # step 0: the base weights
    info0, ib = read_gguf(tmp_path / "s0.gguf"), read_gguf(base)
    assert (tmp_path / "s0.gguf").read_bytes()[info0.data_offset:] == base.read_bytes()[ib.data_offset:]
    assert res0["log_sha256"] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    def refused(*args, match):
        code, out, err = run_cli(capsys, "export", run, *args)
        assert code != 0 and match in err and err.count("\n") == 1, err
    refused("-o", tmp_path / "s3.gguf", match="exists; pass --force")
    refused("-o", base, "--force", match="refusing to overwrite")
    other = tmp_path / "copy.gguf"
    other.write_bytes(base.read_bytes())
    refused("-o", other, "--model", other, "--force", match="refusing to overwrite")
    refused("-o", run / "steps.log", "--force", match="refusing to overwrite")
    refused("-o", tmp_path / "x.gguf", "--step", STEPS + 1, match="not in the log")
    refused("-o", tmp_path / "nodir" / "x.gguf", match="does not exist")
    assert run_cli(capsys, "export", run, "-o", tmp_path / "s3.gguf", "--step", 3, "--force")[0] == 0
    assert run_cli(capsys, "export", run, "-o", tmp_path / "m.gguf", "--model", other)[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.gguf", "m.gguf", "s0.gguf", "s3.gguf"]
    assert sha256_file(base) == base_sha


def test_rewrite_header_replaces_earlier_edgees_entries(toy_run, tmp_path):
    run, _, _ = toy_run
    out = tmp_path / "a.gguf"
    export_gguf(run, out, step=2)
    info = read_gguf(out)
    raw = out.read_bytes()
    head = rewrite_header(info, raw[:info.data_offset], {"edgees.step": 7, "edgees.note": "x"}, "edgees.")
    again = tmp_path / "b.gguf"
    again.write_bytes(head + raw[info.data_offset:])
    meta = read_gguf(again).metadata
    assert meta["edgees.step"] == 7 and meta["edgees.note"] == "x" and "edgees.base_sha256" not in meta
    assert [k for k in meta if not k.startswith("edgees.")] == [k for k in info.metadata if not k.startswith("edgees.")]


# ---- verify ---------------------------------------------------------------------------------

def copy_run(run: Path, dst: Path) -> Path:
    dst.mkdir()
    for name in ("run.json", "steps.log"):
        (dst / name).write_bytes((run / name).read_bytes())
    return dst


def test_verify_ok_torn_tail_and_damage(toy_run, tmp_path, capsys):
    run, base, _ = toy_run
    code, out, err = run_cli(capsys, "verify", run)
    assert code == 0 and out.startswith(f"OK: {STEPS} steps verified"), (out, err)

    # torn tail: the step in flight is lost, the steps before it verify
    torn = copy_run(run, tmp_path / "torn")
    data = (torn / "steps.log").read_bytes()
    last = data.rfind(b"\n", 0, len(data) - 1) + 1
    (torn / "steps.log").write_bytes(data[:last + (len(data) - last) // 2])
    code, out, _ = run_cli(capsys, "verify", torn)
    assert code == 0 and "torn tail dropped (step in flight lost)" in out
    assert f"OK: {STEPS - 1} steps verified" in out
    code, out, _ = run_cli(capsys, "verify", torn, "--json")
    assert json.loads(out)["torn"] is True and json.loads(out)["steps"] == STEPS - 1

    # a flipped byte: reported with its line, one line
    flipped = copy_run(run, tmp_path / "flipped")
    bad = bytearray(data)
    bad[len(STEPS_MAGIC) + len(data) // 3] ^= 0x04
    (flipped / "steps.log").write_bytes(bytes(bad))
    code, out, err = run_cli(capsys, "verify", flipped)
    line = bytes(bad).count(b"\n", 0, len(STEPS_MAGIC) + len(data) // 3) + 1
    assert code == RunError.exit_code and f"line {line} " in err and err.count("\n") == 1, err

    # a record whose hash is wrong but whose checksum is right: the first bad step is named
    wrong = copy_run(run, tmp_path / "wrong")
    lines = data.split(b"\n")
    body = json.loads(lines[4].split(b"\t")[0])  # line 5 of the file: step 3
    body["weights_sha256"] = "0" * 64
    enc = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    lines[4] = enc + b"\t" + f"{zlib.crc32(enc):08x}".encode()
    (wrong / "steps.log").write_bytes(b"\n".join(lines))
    code, out, err = run_cli(capsys, "verify", wrong)
    assert code == RunError.exit_code and "step 3:" in err and err.count("\n") == 1, err


def test_verify_refuses_a_different_base(toy_run, tmp_path, capsys):
    run, base, _ = toy_run
    other = toy_model(tmp_path / "other.gguf", seed=1)
    code, out, err = run_cli(capsys, "verify", run, "--model", other)
    assert code == RunError.exit_code and "is not the run's base model" in err and err.count("\n") == 1
    moved = copy_run(run, tmp_path / "moved")
    header = json.loads((moved / "run.json").read_text())
    header["base_model"] = str(tmp_path / "gone.gguf")
    (moved / "run.json").write_text(json.dumps(header))
    code, out, err = run_cli(capsys, "verify", moved)
    assert code != 0 and "--model" in err and err.count("\n") == 1
    (tmp_path / "gone.gguf").write_bytes(other.read_bytes())  # a different file where the base was
    code, out, err = run_cli(capsys, "verify", moved)
    assert code == RunError.exit_code and "is not the run's base model" in err
    code, out, err = run_cli(capsys, "verify", moved, "--model", base)
    assert code == 0 and f"OK: {STEPS} steps verified" in out


@pytest.mark.real
@pytest.mark.slow
def test_export_real_model(smollm2_path, tmp_path, capsys):
    """SmolLM2 (Q4_1 blocks, Q8_0 tied embedding, F32 norms): a 2-step log written through the
    library (no evaluation needed: rebuild only replays seeds and coefficients), then export."""
    from edgees.qes import algorithm as qes
    from edgees.engine.engine import Engine
    from edgees.gguf.working_copy import WorkingCopy
    from edgees.qes.records import StepSpec
    from edgees.run.log import RunDir, StepRecord
    from edgees.qes.state import WeightState

    base_sha = sha256_file(smollm2_path)
    cfg = {"ef": "replay", "window": 50, "gamma": 0.9, "include_embeddings": False}
    with WorkingCopy(smollm2_path) as wc, RunDir(tmp_path / "run", write=True) as run:
        run.write_header({"base_model": str(smollm2_path), "base_sha256": base_sha, "task": "none",
                          "task_options": {}, "config": cfg})
        state = WeightState(wc, **{k: cfg[k] for k in ("ef", "window", "gamma")})
        for t in range(2):
            seeds, coefs = qes.pair_seeds(1, t, 2), (1.0, -1.0)
            state.apply(StepSpec(seeds, coefs, 0.04, 0.01))
            run.append_step(StepRecord(t, list(seeds), [1.0, 0.0], [0.0, 1.0], list(coefs), 0.01, 0.04,
                                       state.sha256()))
    out = tmp_path / "adapted.gguf"
    code, text, err = run_cli(capsys, "export", tmp_path / "run", "-o", out, "--json")
    assert code == 0, err
    ro = gguf.GGUFReader(str(out))  # ~10 s on a 49k vocabulary: read the base with our reader
    assert [(t.name, int(t.tensor_type), tuple(int(x) for x in t.shape)) for t in ro.tensors] == \
        [(t.name, t.type_id, t.shape) for t in read_gguf(smollm2_path).tensors]
    assert ro.fields["edgees.step"].contents() == 2
    with rebuild_run(tmp_path / "run") as r, Engine(out, n_threads=2, n_seq=1) as e_out, \
            Engine(r.wc.path, n_threads=2, n_seq=1) as e_run:
        assert e_out.logits(PROMPT).tobytes() == e_run.logits(PROMPT).tobytes()
    assert run_cli(capsys, "verify", tmp_path / "run")[0] == 0
    assert sha256_file(smollm2_path) == base_sha
