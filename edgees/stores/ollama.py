"""The Ollama store, read-only: manifests -> model blobs, and the chat settings beside them.

Layout, as Ollama writes it (root: $OLLAMA_MODELS, else ~/.ollama/models and the Linux service's
/usr/share/ollama/.ollama/models; $EDGEES_OLLAMA_SYSTEM_STORE relocates that last one, or leaves it
out when empty: for tests, and for a service installed elsewhere):

    <root>/manifests/<registry>/<namespace>/<model>/<tag>     JSON, an OCI image manifest:
        {"schemaVersion": 2, "config": {...},
         "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": "sha256:<hex>",
                     "size": N}, {"mediaType": "application/vnd.ollama.image.template", ...}, ...]}
    <root>/blobs/sha256-<hex>                                  every layer's bytes (old stores: sha256:<hex>)

The model layer is the GGUF itself; the template, system and params layers are text and JSON that
make the model chat as it does in Ollama (carried into a Modelfile on export, see publish.py).
`ollama:llama3.2` means registry.ollama.ai/library/llama3.2:latest; `ollama:me/m:v2` namespace me.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from edgees.errors import EdgeesError, ModelNotFound
from edgees.stores.common import StoreEntry, file_size, is_gguf, not_found, usable

MODEL = "application/vnd.ollama.image.model"
TEMPLATE = "application/vnd.ollama.image.template"
SYSTEM = "application/vnd.ollama.image.system"
PARAMS = "application/vnd.ollama.image.params"
ADAPTER = "application/vnd.ollama.image.adapter"
REGISTRY, NAMESPACE, TAG = "registry.ollama.ai", "library", "latest"
SERVICE_ROOT = Path("/usr/share/ollama/.ollama/models")
SERVICE_ENV = "EDGEES_OLLAMA_SYSTEM_STORE"
PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")  # one component of a name; no "..", no "/"
DIGEST = re.compile(r"^sha256[:-]([0-9a-f]{64})$")
MAX_MANIFEST = 1 << 20  # bytes; a manifest is a few hundred
MAX_TEXT_LAYER = 1 << 20  # template / system / params blobs carried into a Modelfile


def service_root() -> Path | None:
    """The Linux service's store: $EDGEES_OLLAMA_SYSTEM_STORE when set (empty: none), else SERVICE_ROOT."""
    env = os.environ.get(SERVICE_ENV)
    if env is None:
        return SERVICE_ROOT
    return Path(env).expanduser() if env else None


def roots() -> list[Path]:
    """The stores to read: $OLLAMA_MODELS alone when set, else the user's and the service's."""
    env = os.environ.get("OLLAMA_MODELS")
    if env:
        found = [Path(env).expanduser()]
    else:
        found = [Path.home() / ".ollama" / "models", service_root()]
    return [r for r in found if r is not None and (r / "manifests").is_dir()]


def blob_path(root: Path, digest) -> Path | None:
    """Where a layer's bytes live; None for a digest that is not sha256:<64 hex>."""
    m = DIGEST.match(digest) if isinstance(digest, str) else None
    if m is None:
        return None
    new = root / "blobs" / f"sha256-{m.group(1)}"
    old = root / "blobs" / f"sha256:{m.group(1)}"
    return old if not new.exists() and old.exists() else new


def display_name(registry: str, namespace: str, model: str, tag: str) -> str:
    if registry == REGISTRY and namespace == NAMESPACE:
        return f"{model}:{tag}"
    return f"{namespace}/{model}:{tag}" if registry == REGISTRY else f"{registry}/{namespace}/{model}:{tag}"


def parse_name(text: str) -> tuple[str, str, str, str]:
    """NAME[:TAG] as Ollama reads it -> (registry, namespace, model, tag)."""
    head, _, last = text.rpartition("/")
    model, _, tag = last.partition(":")
    parts = [p for p in head.split("/") if p] if head else []
    registry = parts[-2] if len(parts) >= 2 else REGISTRY
    namespace = parts[-1] if parts else NAMESPACE
    return registry, namespace, model, tag or TAG


def read_manifest(path: Path) -> list[dict]:
    """The layers of one manifest, or EdgeesError with one line naming what is wrong."""
    try:
        if path.stat().st_size > MAX_MANIFEST:
            raise EdgeesError(f"manifest {path} is over {MAX_MANIFEST} bytes: not an Ollama manifest")
        doc = json.loads(path.read_bytes())
    except OSError as exc:
        raise EdgeesError(f"cannot read manifest {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise EdgeesError(f"manifest {path} is not valid JSON ({exc}); `ollama pull` the model again") from None
    layers = doc.get("layers") if isinstance(doc, dict) else None
    if not isinstance(layers, list) or not all(isinstance(x, dict) for x in layers):
        raise EdgeesError(f"manifest {path} has no list of layers; `ollama pull` the model again")
    return layers


def manifest_files(root: Path) -> list[tuple[str, Path]]:
    """(display name, manifest path) for every <registry>/<namespace>/<model>/<tag> file."""
    out = []
    base = root / "manifests"
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(base).parts
        if len(rel) == 3:
            dirnames[:] = []
            out += [(display_name(*rel, f), Path(dirpath) / f) for f in sorted(filenames) if not f.startswith(".")]
    return out


def entry(root: Path, name: str, manifest: Path) -> StoreEntry:
    """The StoreEntry of one manifest: its model blob, or a one-line error for this entry alone."""
    ref = f"ollama:{name}"
    try:
        layers = read_manifest(manifest)
    except EdgeesError as exc:
        return StoreEntry("ollama", ref, None, 0, f"{ref}: {exc}")
    models = [x for x in layers if x.get("mediaType") == MODEL]
    if not models:
        return StoreEntry("ollama", ref, None, 0, f"{ref}: manifest {manifest} has no model layer")
    if len(models) > 1:
        return StoreEntry("ollama", ref, None, 0, f"{ref}: a model in {len(models)} files (split GGUF): "
                          "not supported yet; export one file from Ollama or use a single-file GGUF")
    blob = blob_path(root, models[0].get("digest"))
    if blob is None:
        return StoreEntry("ollama", ref, None, 0, f"{ref}: manifest {manifest} has a bad model digest "
                          f"{str(models[0].get('digest'))[:80]!r}; `ollama pull` the model again")
    if not blob.is_file():
        return StoreEntry("ollama", ref, blob, 0, f"{ref}: its model blob {blob} is missing; "
                          f"`ollama pull {name}` to repair the store")
    if not is_gguf(blob):
        return StoreEntry("ollama", ref, blob, file_size(blob), f"{ref}: its model blob {blob} is not a GGUF "
                          "file (no GGUF magic); `ollama pull` the model again")
    if any(x.get("mediaType") == ADAPTER for x in layers):
        return StoreEntry("ollama", ref, blob, file_size(blob), f"{ref}: Ollama applies a LoRA adapter layer "
                          "on top of this model: not supported yet; train the base model it is FROM")
    return StoreEntry("ollama", ref, blob, file_size(blob))


def discover() -> list[StoreEntry]:
    out, seen = [], set()
    for root in roots():
        for name, manifest in manifest_files(root):
            if name not in seen:  # the first root wins, as in resolve()
                seen.add(name)
                out.append(entry(root, name, manifest))
    return out


def resolve(text: str) -> Path:
    """ollama:NAME[:TAG] (the prefix already taken off) -> its model blob."""
    registry, namespace, model, tag = parse_name(text)
    if not all(PART.match(p) and ".." not in p for p in (registry, namespace, model, tag)):
        raise ModelNotFound(f"ollama:{text}: not an Ollama model name; give NAME[:TAG] as `ollama list` shows it")
    want = display_name(registry, namespace, model, tag)
    for root in roots():
        manifest = root / "manifests" / registry / namespace / model / tag
        if manifest.is_file():
            return usable(entry(root, want, manifest))
    entries = discover()
    for e in entries:  # Ollama treats names case-insensitively
        if e.ref.lower() == f"ollama:{want}".lower():
            return usable(e)
    service = service_root()
    looked = f"{Path.home() / '.ollama' / 'models'}" + (f" and {service}" if service else "")
    where = ", ".join(str(r) for r in roots()) or os.environ.get("OLLAMA_MODELS") or looked
    raise not_found(f"ollama:{text}", "ollama", entries, "" if entries else where)


# ---- chat settings of a model in the store (for a Modelfile) -----------------------------------

def _text_layer(root: Path, layer: dict) -> str | None:
    blob = blob_path(root, layer.get("digest"))
    if blob is None or not blob.is_file() or file_size(blob) > MAX_TEXT_LAYER:
        return None
    try:
        return blob.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def settings_for_blob(model_path, base_name: str | None = None) -> dict | None:
    """If `model_path` is a model blob of an Ollama store, the chat settings of a manifest that uses
    it: {"name", "template", "system", "params"} (each None when the manifest has no such layer).
    Tags that share one blob may differ in these, so the manifest of `base_name` (ollama:NAME[:TAG],
    the name the run was started from) is taken when it still uses the blob, else the first by name.
    None when the file is not in an Ollama store, or no readable manifest names it."""
    path = Path(model_path).resolve()
    m = DIGEST.match(path.name)
    root = path.parent.parent
    if m is None or path.parent.name != "blobs" or not (root / "manifests").is_dir():
        return None
    manifests = manifest_files(root)
    if base_name is not None and base_name.startswith("ollama:"):
        want = display_name(*parse_name(base_name.removeprefix("ollama:"))).lower()
        manifests.sort(key=lambda nm: nm[0].lower() != want)  # stable: that one first, the rest by name
    for name, manifest in manifests:
        try:
            layers = read_manifest(manifest)
        except EdgeesError:
            continue
        model = [x for x in layers if x.get("mediaType") == MODEL]
        if len(model) != 1 or blob_path(root, model[0].get("digest")) is None:
            continue
        if DIGEST.match(str(model[0]["digest"])).group(1) != m.group(1):
            continue
        found = {"name": name, "template": None, "system": None, "params": None}
        for layer in layers:
            kind = {TEMPLATE: "template", SYSTEM: "system", PARAMS: "params"}.get(layer.get("mediaType"))
            if kind and (text := _text_layer(root, layer)) is not None:
                found[kind] = text
        if found["params"] is not None:
            try:
                params = json.loads(found["params"])
                found["params"] = params if isinstance(params, dict) else None
            except ValueError:
                found["params"] = None
        return found
    return None
