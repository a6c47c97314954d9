"""What QES trains in a model, and why the rest is frozen: the training policy, in one place.

Trained by default: the linear weights of the transformer blocks (`blk.*.weight`, 2-D or more) of
a type whose codes QES can move (gguf/quants.py). The token embedding and output head are trained
only on request: they are often the largest tensors (gemma-3-270m's Q8_0 embedding is 168M of its
~270M weights), and a change there moves every token. Norms, biases and types without linear codes
stay frozen. A run may narrow the set further by name (`--tensors 'blk.*.ffn_*'`): fewer weights
under the same noise, as a LoRA run picks its target modules.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from edgees.errors import EdgeesError
from edgees.gguf import quants
from edgees.gguf.header import GGUFFile, TensorInfo
from edgees.gguf.quants import frozen_reason, is_trainable
from edgees.qes import noise
from edgees.qes.records import Slot

EMBEDDING_NAMES = ("token_embd.weight", "output.weight")


def tensor_status(t: TensorInfo) -> tuple[str, str]:
    """("trainable" | "on request" | "frozen", reason). Block linear weights of trainable types
    are trained by default; token_embd/output only on request; everything else is frozen."""
    if not is_trainable(t.type_id):
        return "frozen", frozen_reason(t.type_id)
    if t.name in EMBEDDING_NAMES:
        return "on request", "embedding/output head: trained only with --include-embeddings"
    if t.name.startswith("blk.") and t.name.endswith(".weight") and t.n_dims >= 2:
        return "trainable", ""
    return "frozen", "not a transformer-block linear weight"


def patterns(tensors: str) -> list[str]:
    """The globs of a --tensors value ("blk.*.ffn_*, blk.0.*"); [] (every trainable tensor) for ""."""
    return [p.strip() for p in tensors.split(",") if p.strip()]


def trainable_tensors(info: GGUFFile, include_embeddings: bool = False, tensors: str = "") -> list[TensorInfo]:
    """The tensors QES trains, in file order: the trainable ones (and the embeddings on request),
    narrowed to the names matching one of the `tensors` globs when it is given. A glob that matches
    none of them is an error (a typo would otherwise train a different set than the user meant)."""
    ok = ("trainable", "on request") if include_embeddings else ("trainable",)
    found = sorted((t for t in info.tensors if tensor_status(t)[0] in ok), key=lambda t: t.offset)
    globs = patterns(tensors)
    if not globs:
        if tensors.strip():
            raise EdgeesError(f"--tensors {tensors!r} names no glob; write e.g. --tensors 'blk.*.attn_*', "
                              "or leave it out to train every trainable tensor")
        return found
    unmatched = [g for g in globs if not any(fnmatchcase(t.name, g) for t in found)]
    if unmatched:
        some = ", ".join(t.name for t in found[:3])
        embeddings = [t.name for t in info.tensors if tensor_status(t)[0] == "on request"
                      and any(fnmatchcase(t.name, g) for g in unmatched)]
        hint = f"; {embeddings[0]} trains only with --include-embeddings" if embeddings else ""
        raise EdgeesError(f"--tensors {', '.join(repr(g) for g in unmatched)} matches no trainable tensor "
                          f"(names look like {some}; `edgees info --tensors MODEL` lists them all{hint})")
    return [t for t in found if any(fnmatchcase(t.name, g) for g in globs)]


def slots_for(working_copy, include_embeddings: bool = False, tensors: str = "") -> list[Slot]:
    """Kernel slots for the trained tensors of a WorkingCopy (writable views into its mapping)."""
    return [Slot(t.name, t.type_id, t.n_elements, working_copy.view(t.name))
            for t in trainable_tensors(working_copy.info, include_embeddings, tensors)]


# ---- how far the noise moves each type ----------------------------------------------------

def noise_law(type_id: int) -> tuple[float, int]:
    """How one sigma (in 4-bit code steps) becomes this type's noise: (sigma multiplier, step).

    A type with L levels spans its block range in L - 1 steps, so one 4-bit step is k = L / 16 of
    its steps: 1 for 4-bit types, 2 for 5-bit, 4 for Q6_K, 16 for Q8_0, 0.5 for Q3_K, 0.25 for Q2_K.
    So that one sigma moves every type's weights by the same relative amount, each nonzero of a
    finer type (k >= 1) moves k of its codes: the noise is k * R(sigma), with the density and the
    weight-space size of a 4-bit tensor's noise (and, through the update's 1 / sigma, k times the
    4-bit step in code units: the same step in weight space). A coarser type cannot move a fraction
    of a code, so its noise is R(k * sigma): rarer whole steps.
    """
    q = quants.QTYPES[type_id]
    k = (q.hi - q.lo + 1) / 16
    return (1.0, int(k)) if k >= 1 else (k, 1)


def type_tables(sigma: float, type_id: int) -> noise.NoiseTables:
    """The noise law of a tensor of this type at sigma (in 4-bit code steps; noise_law)."""
    scale, step = noise_law(type_id)
    return noise.tables(sigma * scale, step)
