#!/usr/bin/env python3
"""Set up and run edgees on a fresh machine: only python3 (3.10+) and a C compiler are needed.

  python3 tools/quickstart.py demo   # venv + install + pull SmolLM2-135M + a short fine-tune + export
  python3 tools/quickstart.py test   # venv + install + pull the real models + the whole test suite

Both create ./.venv (reused afterwards) and `pip install -e .[test]` (the test extra brings every
other extra: onnx, plot, ray), which compiles the C kernels and, the first time, llama-cpp-python from
source (about 8 minutes on 2 cores; pip caches it).
Extra arguments after `test` go to pytest; after `demo`, to `edgees finetune`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")


def sh(*cmd, check=True, env=None) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    rc = subprocess.call([str(c) for c in cmd], cwd=ROOT, env=env)
    if check and rc != 0:
        sys.exit(rc)
    return rc


def setup() -> None:
    if sys.version_info < (3, 10):
        sys.exit(f"edgees needs Python 3.10 or newer; this is {sys.version.split()[0]}")
    if not PY.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
        sh(PY, "-m", "pip", "install", "-q", "--upgrade", "pip", "setuptools", "wheel")
    stamp = VENV / ".edgees-installed"
    sources = [ROOT / "pyproject.toml", ROOT / "setup.py", *sorted((ROOT / "native").glob("*"))]
    newest = max(p.stat().st_mtime for p in sources)
    if not stamp.exists() or stamp.stat().st_mtime < newest:
        print("installing edgees (first time: builds llama-cpp-python from source, ~8 min)", flush=True)
        sh(PY, "-m", "pip", "install", "-q", "-e", ".[test]")
        stamp.touch()


def demo(extra: list[str]) -> None:
    edgees = BIN / "edgees"
    run = ROOT / "runs" / "demo"
    sh(edgees, "models", "pull", "smollm2-135m")
    sh(edgees, "info", "smollm2-135m")
    sh(edgees, "eval", "smollm2-135m", "--task", "arithmetic", "--n", "50")
    args = ["finetune", "smollm2-135m", "--task", "arithmetic", "--run", run, "--steps", "4", "--eval-n", "40"]
    if (run / "run.json").exists():
        args.append("--resume")
    sh(edgees, *args, *extra)
    sh(edgees, "export", run, "-o", ROOT / "runs" / "demo.gguf", "--force")
    print("\nbefore and after, on the same 40 held-out sums (lenient: the last number written is the sum):")
    sh(edgees, "compare", "smollm2-135m", ROOT / "runs" / "demo.gguf", "--task", "arithmetic", "--n", "40",
       "--samples", "3", "--changed")
    print(f"\nadapted model: {ROOT / 'runs' / 'demo.gguf'} (loads in llama.cpp, Ollama, LM Studio)")


def test(extra: list[str]) -> None:
    edgees = BIN / "edgees"
    sh(edgees, "models", "pull", "smollm2-135m")
    sh(edgees, "models", "pull", "gemma3-270m")
    rc = sh(PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra, check=False)
    if rc == 5:
        print("pytest collected no tests: that is a failure here", file=sys.stderr)
        sys.exit(1)
    sys.exit(rc)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("demo", "test", "setup"):
        sys.exit(__doc__)
    setup()
    if sys.argv[1] == "demo":
        demo(sys.argv[2:])
    elif sys.argv[1] == "test":
        test(sys.argv[2:])


if __name__ == "__main__":
    main()
