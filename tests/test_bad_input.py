"""Bad input a user can type reaches them as one line, `edgees: error: ...` with the fix, and a
non-zero exit: never a traceback. Each case runs the CLI in-process (edgees.cli.main)."""

from __future__ import annotations

import re

import pytest

from edgees import cli
from edgees.gguf.tiny import make_tiny_model


@pytest.fixture(scope="module")
def f32_model(tmp_path_factory):
    """A valid GGUF with nothing trainable in its blocks (F32 weights, embeddings on request only)."""
    return make_tiny_model(tmp_path_factory.mktemp("f32") / "f32.gguf", "F32")


@pytest.fixture
def paths(tmp_path, f32_model):
    (tmp_path / "adir").mkdir()
    (tmp_path / "empty.gguf").write_bytes(b"")
    (tmp_path / "notes.gguf").write_text("these are my notes, not a model\n")
    (tmp_path / "norun").mkdir()  # a directory, but no run.json
    return {"DIR": tmp_path / "adir", "EMPTY": tmp_path / "empty.gguf", "TEXT": tmp_path / "notes.gguf",
            "MISSING": tmp_path / "missing.gguf", "F32": f32_model, "NORUN": tmp_path / "norun",
            "NODIR": tmp_path / "no-such-run", "OUT": tmp_path / "out.gguf", "RUN": tmp_path / "run"}


NOT_GGUF = r"not a GGUF file; give a \.gguf model file"
TRUNCATED = r"file is 0 bytes, too short for a GGUF header; .*download it again"
A_DIR = r"adir is a directory, not a \.gguf file; give the path of the model file in it or a registry name"
NO_RUN = r"is not an edgees run dir \(no run\.json\); start one with `edgees finetune"

# (argv with placeholders, exit code, what the line must say: the problem and the fix)
CASES = [
    (["info", "DIR"], 2, A_DIR),
    (["info", "EMPTY"], 2, TRUNCATED),
    (["info", "TEXT"], 2, NOT_GGUF),
    (["info", "MISSING"], 2, r"no such file: .*missing\.gguf \(give a path to a \.gguf file or a registry name\)"),
    (["eval", "DIR", "--task", "arithmetic"], 2, A_DIR),
    (["eval", "TEXT", "--task", "arithmetic"], 2, NOT_GGUF),
    (["finetune", "EMPTY", "--task", "arithmetic", "--run", "RUN", "--quiet"], 2, TRUNCATED),
    (["finetune", "F32", "--task", "arithmetic", "--run", "RUN", "--quiet"], 2, r"no trainable tensors"),
    (["bench", "kernels", "DIR"], 2, A_DIR),
    (["bench", "kernels", "EMPTY"], 2, TRUNCATED),
    (["bench", "kernels", "TEXT"], 2, NOT_GGUF),
    (["bench", "kernels", "F32"], 2, r"no trainable tensors, nothing to time .*use a model quantized to Q4_0"),
    (["bench", "engine", "TEXT"], 2, NOT_GGUF),
    (["bench", "engine", "DIR"], 2, A_DIR),
    (["models", "pull", "no-such-model"], 2,
     r"unknown model 'no-such-model': known models are smollm2-135m.* \(see `edgees models ls`\)"),
    (["models", "path", "no-such-model"], 2, r"unknown model 'no-such-model': known models are .*"),
    (["export", "NODIR", "-o", "OUT"], 3, NO_RUN),
    (["export", "NORUN", "-o", "OUT"], 3, NO_RUN),
    (["export", "TEXT", "-o", "OUT"], 3, NO_RUN),
    (["verify", "NODIR"], 3, NO_RUN),
    (["verify", "NORUN"], 3, NO_RUN),
    (["tasks", "show", "no-such-task"], 2, r"unknown task 'no-such-task'; use one of: arithmetic.*`edgees tasks ls`"),
]


@pytest.mark.parametrize("argv, code, says", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_is_one_line_with_the_fix(paths, capsys, argv, code, says):
    args = [str(paths.get(a, a)) for a in argv]
    assert cli.main(args) == code
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("edgees: error: ") and re.search(says, lines[0]), lines[0]
    assert out == ""
    assert not paths["OUT"].exists()
