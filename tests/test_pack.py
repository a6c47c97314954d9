"""`edgees pack` / `unpack`: a run shared as a small file rebuilds the exact GGUF `edgees export` writes;
a wrong base is one line naming the expected sha256; bad input damages nothing."""

from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile

import pytest

from edgees.run.pack import MANIFEST
from edgees.fileio import sha256_file
from toy_task import edgees_cmd, finetune_args, subprocess_env, toy_model, write_answers


def run(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(edgees_cmd([str(a) for a in args]), capture_output=True, text=True,
                          env=subprocess_env(), timeout=timeout)


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgees: error: "), r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A 4-step toy likelihood run: (run dir, base)."""
    d = tmp_path_factory.mktemp("pack-run")
    base, data = toy_model(d / "toy.gguf"), write_answers(d / "answers.jsonl")
    r = run(*finetune_args(base, d / "run", data, steps=4, likelihood=True))
    assert r.returncode == 0, r.stderr
    return d / "run", base


def test_unpack_rebuilds_what_export_writes(toy_run, tmp_path):
    run_dir, base = toy_run
    exported = tmp_path / "exported.gguf"
    assert run("export", run_dir, "-o", exported).returncode == 0
    r = run("pack", run_dir, "-o", tmp_path / "a.edgees", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["steps"] == 4 and res["base_sha256"] == sha256_file(base)
    packed = (tmp_path / "a.edgees").read_bytes()
    assert res["bytes"] == len(packed) < 20_000  # kilobytes, against a model of ~800 KB
    assert run("pack", run_dir, "-o", tmp_path / "b.edgees").returncode == 0
    assert (tmp_path / "b.edgees").read_bytes() == packed  # no clock in it
    with zipfile.ZipFile(tmp_path / "a.edgees") as zf:
        assert zf.namelist() == [MANIFEST, "run.json", "steps.log", "metrics.jsonl"]
        assert zf.comment == b"edgees-pack 1"
        manifest = json.loads(zf.read(MANIFEST))
        assert manifest["format"] == "edgees-pack" and manifest["version"] == 1
        assert zf.read("steps.log") == (run_dir / "steps.log").read_bytes()

    other = tmp_path / "elsewhere"  # another machine: only the pack and a copy of the base
    other.mkdir()
    (other / "base.gguf").write_bytes(base.read_bytes())
    (other / "a.edgees").write_bytes(packed)
    out = other / "adapted.gguf"
    r = run("unpack", other / "a.edgees", "--base", other / "base.gguf", "-o", out, "--json")
    assert r.returncode == 0, r.stderr
    assert sha256_file(out) == sha256_file(exported) == json.loads(r.stdout)["sha256"]
    assert (other / "base.gguf").read_bytes() == base.read_bytes()
    r = run("unpack", other / "a.edgees", "--base", other / "base.gguf", "-o", other / "s2.gguf", "--step", "2")
    assert r.returncode == 0, r.stderr
    assert run("export", run_dir, "-o", tmp_path / "s2.gguf", "--step", "2").returncode == 0
    assert sha256_file(other / "s2.gguf") == sha256_file(tmp_path / "s2.gguf")


def test_unpack_refuses_a_wrong_base_and_an_existing_output(toy_run, tmp_path):
    run_dir, base = toy_run
    pack = tmp_path / "a.edgees"
    assert run("pack", run_dir, "-o", pack).returncode == 0
    line = one_line_error(run("pack", run_dir, "-o", pack))
    assert "exists; pass --force" in line
    wrong = toy_model(tmp_path / "other.gguf", seed=3)
    out = tmp_path / "adapted.gguf"
    line = one_line_error(run("unpack", pack, "--base", wrong, "-o", out))
    assert sha256_file(base) in line and "is not this adaptation's base model" in line
    assert not out.exists()
    out.write_bytes(b"the user's file")
    line = one_line_error(run("unpack", pack, "--base", base, "-o", out))
    assert "exists; pass --force" in line and out.read_bytes() == b"the user's file"
    line = one_line_error(run("unpack", pack, "--base", base, "-o", base, "--force"))
    assert "refusing to overwrite" in line
    assert run("unpack", pack, "--base", base, "-o", out, "--force").returncode == 0
    assert out.read_bytes()[:4] == b"GGUF"


def _tampered(src, dst, member, change):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info, change(data) if info.filename == member else data)


@pytest.mark.parametrize("damage, message", [
    ("not_zip", "not an edgees pack"),
    ("truncated", "not an edgees pack"),
    ("log_edited", "steps.log does not match its sha256"),
    ("manifest_version", "edgees pack version 9"),
    ("no_manifest", "no member edgees-pack.json"),
])
def test_a_bad_pack_is_one_line_and_damages_nothing(toy_run, tmp_path, damage, message):
    run_dir, base = toy_run
    tmp_path = tmp_path / "files"
    tmp_path.mkdir()
    good = tmp_path / "good.edgees"
    assert run("pack", run_dir, "-o", good).returncode == 0
    bad = tmp_path / "bad.edgees"
    if damage == "not_zip":
        bad.write_bytes(b"hello\n" * 100)
    elif damage == "truncated":
        bad.write_bytes(good.read_bytes()[:300])
    elif damage == "log_edited":
        _tampered(good, bad, "steps.log", lambda d: d.replace(b'"alpha":1.0', b'"alpha":2.0'))
    elif damage == "manifest_version":
        _tampered(good, bad, MANIFEST, lambda d: d.replace(b'"version": 1', b'"version": 9'))
    else:
        with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad, "w") as zout:
            for info in zin.infolist()[1:]:
                zout.writestr(info, zin.read(info))
    before = bad.read_bytes()
    base_sha = sha256_file(base)
    out = tmp_path / "adapted.gguf"
    line = one_line_error(run("unpack", bad, "--base", base, "-o", out))
    assert message in line and str(bad) in line, line
    assert not out.exists() and bad.read_bytes() == before and sha256_file(base) == base_sha
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.edgees", "good.edgees"]
    assert not list((tmp_path.parent / "edgees-work").iterdir())  # no working copy left behind


def test_pack_of_a_missing_run_is_one_line(tmp_path):
    line = one_line_error(run("pack", tmp_path / "nope", "-o", tmp_path / "a.edgees"))
    assert "not an edgees run dir" in line and not (tmp_path / "a.edgees").exists()


@pytest.mark.real
@pytest.mark.slow
def test_pack_round_trip_on_smollm2(smollm2_path, tmp_path):
    data = write_answers(tmp_path / "answers.jsonl")
    args = finetune_args(smollm2_path, tmp_path / "run", data, steps=2, pairs=1, prompts=1, sigma=0.01,
                         alpha=0.5, eval_n=1, likelihood=True)
    assert run(*args, timeout=1800).returncode == 0
    assert run("export", tmp_path / "run", "-o", tmp_path / "exported.gguf").returncode == 0
    assert run("pack", tmp_path / "run", "-o", tmp_path / "a.edgees").returncode == 0
    r = run("unpack", tmp_path / "a.edgees", "--base", smollm2_path, "-o", tmp_path / "out.gguf", timeout=1800)
    assert r.returncode == 0, r.stderr
    assert sha256_file(tmp_path / "out.gguf") == sha256_file(tmp_path / "exported.gguf")
    assert (tmp_path / "a.edgees").stat().st_size < 50_000
    assert hashlib.sha256(smollm2_path.read_bytes()).hexdigest() == json.loads(
        (tmp_path / "run" / "run.json").read_text())["base_sha256"]
