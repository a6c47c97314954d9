#!/usr/bin/env python3
"""Engine benchmark script: `edgees bench engine` without the CLI (same module, same figures).

    python tools/bench_engine.py [MODEL] [--json] [--n 32] [--max-tokens 32] [--repeat 3]

The measurement lives in edgees.bench.engine (see its docstring for what each figure means).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgees.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", "engine", *sys.argv[1:]]))
