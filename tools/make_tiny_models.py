"""Write one tiny llama GGUF per trainable type into OUTDIR (tiny-<TYPE>.gguf), for tests and demos.

    python tools/make_tiny_models.py OUTDIR [--seed 0] [--types Q4_0,Q4_K]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgees.gguf.tiny import make_tiny_model, tiny_model_types  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("outdir", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--types", default=",".join(tiny_model_types()),
                   help="comma-separated ggml type names (default: every trainable type)")
    p.add_argument("--untied", action="store_true", help="write a separate output.weight")
    args = p.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)
    for name in args.types.split(","):
        path = make_tiny_model(args.outdir / f"tiny-{name}.gguf", name, seed=args.seed,
                               tied=not args.untied)
        print(f"{path}  {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
