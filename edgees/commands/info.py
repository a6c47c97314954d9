"""`edgees info MODEL [--json]`: what a GGUF holds and what edgees would train in it."""

from __future__ import annotations

import json
from collections import defaultdict

from edgees.errors import UnsupportedModel
from edgees.gguf.header import GGUFFile, StringArray
from edgees.gguf.reader import read_gguf
from edgees.models import resolve_model
from edgees.qes.trainable import tensor_status

PER_TENSOR_ROWS = 40  # above this many tensors the human table groups by type


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="show a model's tensors and what is trainable",
                              description="Validate a GGUF model and list its tensors: type, "
                              "shape, bytes, and whether edgees trains them.")
    p.add_argument("model", metavar="MODEL", help="registry name or path to a .gguf file")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--tensors", action="store_true",
                   help="list every tensor even when there are many (default: group by type)")
    p.set_defaults(func=run)


def _json_value(v):
    """Metadata for --json: scalars as they are; long strings and arrays summarised."""
    if isinstance(v, str):
        return v if len(v) <= 256 else f"<string of {len(v)} chars>"
    if isinstance(v, (list, StringArray)):
        return list(v) if len(v) <= 16 else f"<array of {len(v)}>"
    return v


def summarize(info: GGUFFile) -> dict:
    """Everything `info` shows, as a JSON-ready dict."""
    tensors, totals = [], {k: {"tensors": 0, "weights": 0, "bytes": 0}
                           for k in ("trainable", "on request", "frozen")}
    for t in info.tensors:
        status, reason = tensor_status(t)
        tensors.append({"name": t.name, "type": t.type_name, "shape": list(t.shape),
                        "weights": t.n_elements, "bytes": t.nbytes, "status": status,
                        "reason": reason})
        tot = totals[status]
        tot["tensors"] += 1
        tot["weights"] += t.n_elements
        tot["bytes"] += t.nbytes
    name = info.metadata.get("general.name")
    return {
        "path": str(info.path), "architecture": info.architecture,
        "name": name if isinstance(name, str) else None, "gguf_version": info.version,
        "file_bytes": info.file_size, "alignment": info.alignment,
        "n_tensors": len(info.tensors), "n_metadata": len(info.metadata),
        "trainable": totals["trainable"], "embeddings_on_request": totals["on request"],
        "frozen": totals["frozen"], "tensors": tensors,
        "metadata": {k: _json_value(v) for k, v in info.metadata.items()},
    }


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n:,}"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def render(s: dict, per_tensor: bool) -> str:
    out = [f"{s['path']}: {s['architecture'] or 'unknown architecture'}"
           f"{' (' + s['name'] + ')' if s['name'] else ''}, GGUF v{s['gguf_version']}, "
           f"{_mb(s['file_bytes'])}, {s['n_tensors']} tensors"]
    status_text = {"trainable": "trainable", "on request": "trainable on request (embeddings)"}
    if per_tensor:
        rows = [["tensor", "type", "shape", "bytes", "status"]]
        for t in s["tensors"]:
            st = status_text.get(t["status"], "frozen: " + t["reason"])
            rows.append([t["name"], t["type"], "x".join(map(str, t["shape"])), _mb(t["bytes"]),
                         st])
    else:
        groups: dict = defaultdict(lambda: [0, 0, 0])
        for t in s["tensors"]:
            key = (t["type"], status_text.get(t["status"], "frozen: " + t["reason"]))
            g = groups[key]
            g[0] += 1
            g[1] += t["weights"]
            g[2] += t["bytes"]
        rows = [["type", "tensors", "weights", "bytes", "status"]]
        for (typ, st), (n, w, b) in sorted(groups.items(), key=lambda kv: -kv[1][2]):
            rows.append([typ, str(n), _count(w), _mb(b), st])
    out += _table(rows)
    tr, em, fr = s["trainable"], s["embeddings_on_request"], s["frozen"]
    out.append(f"trainable: {tr['tensors']} tensors, {_count(tr['weights'])} weights, "
               f"{_mb(tr['bytes'])}; embeddings on request: {em['tensors']} tensors, "
               f"{_count(em['weights'])} weights; frozen: {fr['tensors']} tensors, "
               f"{_count(fr['weights'])} weights")
    if tr["tensors"] == 0:
        out.append("note: no transformer-block weight is trainable; only the embeddings/output "
                   "head are, on request")
    return "\n".join(out)


def run(args) -> int:
    info = read_gguf(resolve_model(args.model))
    s = summarize(info)
    if s["trainable"]["tensors"] + s["embeddings_on_request"]["tensors"] == 0:
        types = sorted({t["type"] for t in s["tensors"]})
        raise UnsupportedModel(f"{info.path}: nothing trainable: its tensor types are "
                               f"{', '.join(types)}; use a model quantized to Q4_0, Q4_1, Q5_0, "
                               "Q5_1, Q8_0, Q2_K..Q6_K, IQ4_NL or IQ4_XS (e.g. Q4_K_M)")
    if args.json:
        print(json.dumps(s))
    else:
        print(render(s, per_tensor=args.tensors or len(s["tensors"]) <= PER_TENSOR_ROWS))
    return 0
