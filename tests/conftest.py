"""Shared fixtures: a private user dir for every test, tiny models of every trainable type, and the
real models when they are on this machine (tests using them are marked `real`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgees.gguf.tiny import make_tiny_model, tiny_model_types

from edgees import models as _models

# Real models are looked up where `edgees models pull` put them (the user's data dir, read here
# before any test points EDGEES_HOME at a tmp dir), or at a path given by an env var.
REAL_MODELS = {
    "smollm2": ("EDGEES_SMOLLM2", "smollm2-135m"),
    "gemma": ("EDGEES_GEMMA3", "gemma3-270m"),
}
_STORE = _models.models_dir()
_REGISTRY = _models.load_registry()


# Caches that only cost time when empty (pip's wheels, matplotlib's font list), read before HOME moves.
_PIP_CACHE = os.environ.get("PIP_CACHE_DIR") or str(
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pip")
# Where other tools keep models (edgees/stores reads them): every test sees empty ones of its own.
STORE_VARS = ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "HF_HOME", "HF_HUB_CACHE",
              "OLLAMA_MODELS", "LLAMA_CACHE", "EDGEES_OLLAMA_SYSTEM_STORE")


@pytest.fixture(scope="session")
def _mpl_config(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mplconfig")


@pytest.fixture(autouse=True)
def tmp_home(tmp_path, tmp_path_factory, monkeypatch, _mpl_config) -> Path:
    """EDGEES_HOME and EDGEES_WORKDIR point into this test's tmp dir: nothing touches ~ or /dev/shm.
    HOME, the XDG dirs and every model store edgees discovers (Ollama's, the Linux service's, LM
    Studio's under HOME, the HF cache, llama.cpp's cache) are empty dirs of this test too, so no
    test depends on what the machine holds; XDG_RUNTIME_DIR is unset (the daemon's socket goes
    under EDGEES_HOME). Real models stay reachable: their paths are read at import (REAL_MODELS)."""
    home, work = tmp_path / "edgees-home", tmp_path / "edgees-work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("EDGEES_HOME", str(home))
    monkeypatch.setenv("EDGEES_WORKDIR", str(work))
    others = tmp_path_factory.mktemp("machine")  # beside tmp_path: tests that list tmp_path see only theirs
    for var in STORE_VARS:
        monkeypatch.setenv(var, str(others / var.lower()))
    (others / "home").mkdir()
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("PIP_CACHE_DIR", _PIP_CACHE)
    monkeypatch.setenv("MPLCONFIGDIR", str(_mpl_config))
    return home


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """type name -> a tiny llama GGUF (~1 MB) whose block linear weights are of that type."""
    d = tmp_path_factory.mktemp("tiny-models")
    return {t: make_tiny_model(d / f"tiny-{t}.gguf", t, seed=0) for t in tiny_model_types()}


def _real_model(key: str) -> Path:
    env, name = REAL_MODELS[key]
    path = Path(os.environ.get(env) or _STORE / _REGISTRY[name].file)
    if not path.is_file():
        msg = f"{path} not present: run `edgees models pull {name}` (or set {env})"
        if os.environ.get("CI"):
            pytest.fail(msg)  # CI runs the real-model tests; a missing model is a failure there
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct Q4_1 (Q4_1 linears, Q8_0 tied embedding, F32 norms)."""
    return _real_model("smollm2")


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    """gemma-3-270m Q4_K_M (Q8_0 embedding; Q5_0/Q4_K/Q6_K/Q8_0 linears)."""
    return _real_model("gemma")
