"""Other tools' model stores, read-only: the GGUFs Ollama, LM Studio, the Hugging Face hub cache and
llama.cpp's cache already hold, listed and found by name.

    discover()                       -> [StoreEntry]: every GGUF found, broken ones with an error line
    resolve("ollama:llama3.2:1b")    -> Path of its model blob (None: not a store name)
    canonical("ollama:llama3.2")     -> "ollama:llama3.2:latest", the name as discover() lists it

Name forms (what a user types as MODEL):
    ollama:NAME[:TAG]                    ollama:llama3.2, ollama:llama3.2:1b, ollama:me/model:v2
    lmstudio:PUBLISHER/MODEL[/FILE]      FILE may be left out when the folder holds one model file
    hf:ORG/REPO[/FILE]                   FILE may be left out when the cached repo holds one
The llama.cpp cache has no name form: its files are listed with their path, which works as MODEL.

Nothing here opens another tool's file for writing: the stores are walked and read (manifests,
4 bytes of magic, sizes), and training copies the model into edgees' own working copy. A broken
entry (a malformed manifest, a missing blob, a file that is not a GGUF, a split GGUF) is one
StoreEntry with a one-line `error`; it never stops the listing of the others.
"""

from __future__ import annotations

from pathlib import Path

from edgees.errors import ModelNotFound
from edgees.stores import files, ollama
from edgees.stores.common import PREFIXES, StoreEntry, closest, split_error

__all__ = ["StoreEntry", "canonical", "closest", "discover", "resolve", "split_error"]


def discover(sources: tuple[str, ...] | None = None) -> list[StoreEntry]:
    """Every GGUF the stores hold, store by store (ollama, lmstudio, hf, llama.cpp)."""
    finders = {"ollama": ollama.discover, "lmstudio": files.discover_lmstudio,
               "hf": files.discover_hf, "llama.cpp": files.discover_llamacpp}
    out: list[StoreEntry] = []
    for name, find in finders.items():
        if sources is None or name in sources:
            out += find()
    return out


def resolve(text: str) -> Path | None:
    """A store name (ollama:/lmstudio:/hf:) -> its GGUF; None when `text` has no store prefix.
    A name that matches nothing, or a broken entry, raises a one-line error."""
    prefix, sep, rest = text.partition(":")
    if not sep or prefix not in PREFIXES:
        return None
    if not rest:
        raise ModelNotFound(f"'{text}': give a model after the prefix, e.g. {EXAMPLES[prefix]}")
    resolver = {"ollama": ollama.resolve, "lmstudio": files.resolve_lmstudio, "hf": files.resolve_hf}[prefix]
    return resolver(rest)


def canonical(text: str) -> str | None:
    """A store name in the form discover() lists it (ollama:llama3.2 -> ollama:llama3.2:latest; the
    other stores' names as given); None when `text` has no store prefix. A run records it (run.json
    base_name) so that export finds the very Ollama manifest the run started from."""
    prefix, sep, rest = text.partition(":")
    if not sep or prefix not in PREFIXES or not rest:
        return None
    return f"ollama:{ollama.display_name(*ollama.parse_name(rest))}" if prefix == "ollama" else text


EXAMPLES = {"ollama": "ollama:llama3.2:1b", "lmstudio": "lmstudio:lmstudio-community/Qwen3-1.7B-GGUF",
            "hf": "hf:HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/smollm2-135m-instruct-q8_0.gguf"}
