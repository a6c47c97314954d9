"""Tiny generated models: llama.cpp loads every trainable type and returns finite logits; the files
are deterministic from the seed and small."""

from __future__ import annotations

import numpy as np
import pytest

from edgees.engine.baseline import repacking_off
from edgees.fileio import sha256_file
from edgees.gguf.reader import read_gguf
from edgees.gguf.tiny import make_tiny_model, tiny_model_types

llama_cpp = pytest.importorskip("llama_cpp")


@pytest.mark.parametrize("type_name", tiny_model_types())
def test_llama_cpp_runs_tiny_model(tiny_models, type_name):
    with repacking_off():  # as edgees loads (some CPUs' repacked AMX kernels fault on these shapes)
        llm = llama_cpp.Llama(model_path=str(tiny_models[type_name]), n_ctx=64, verbose=False,
                              logits_all=True)
    try:
        tokens = llm.tokenize(b"What is 12 + 34? The answer is 46.")
        assert 5 < len(tokens) < 40
        llm.eval(tokens)
        logits = np.asarray(llm.scores[: len(tokens)])
        assert logits.shape == (len(tokens), llm.n_vocab())
        assert np.isfinite(logits).all() and logits.std() > 0
    finally:
        llm.close()


def test_chat_template_and_generation(tiny_models):
    with repacking_off():
        llm = llama_cpp.Llama(model_path=str(tiny_models["Q4_1"]), n_ctx=64, verbose=False)
    try:
        assert "<|im_start|>" in llm.metadata["tokenizer.chat_template"]
        out = llm.create_chat_completion(messages=[{"role": "user", "content": "Hi"}],
                                         max_tokens=4, temperature=0)
        assert out["usage"]["completion_tokens"] == 4  # special tokens are quiet: no early stop
    finally:
        llm.close()


def test_deterministic_small_and_untied(tmp_path):
    a = make_tiny_model(tmp_path / "a.gguf", "Q6_K", seed=3)
    b = make_tiny_model(tmp_path / "b.gguf", "Q6_K", seed=3)
    c = make_tiny_model(tmp_path / "c.gguf", 14, seed=4, tied=False)  # 14 = Q6_K by id
    assert sha256_file(a) == sha256_file(b) != sha256_file(c)
    assert a.stat().st_size < 2_000_000
    assert "output.weight" in read_gguf(c) and "output.weight" not in read_gguf(a)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_rejects_unsupported_types(tmp_path):
    with pytest.raises(ValueError):
        make_tiny_model(tmp_path / "x.gguf", "IQ2_XXS")
    with pytest.raises(ValueError):
        make_tiny_model(tmp_path / "x.gguf", "NOPE")
