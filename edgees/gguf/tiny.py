"""Tiny llama-architecture GGUF models (about 1 MB) that llama.cpp loads and runs, for tests.

Weights are random codes with small, finite f16 block scales, deterministic from the seed; the model
talks nonsense, but every code path (loading, tokenizing, chat templates, decoding, perturbing the
codes in place) runs in well under a second. Row lengths are multiples of 256 so the K-quants and
IQ4_XS fit. The vocabulary is a byte-level BPE ("gpt2") of 256 byte tokens, a few merges and the
ChatML control tokens, so any ASCII text tokenizes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, TokenType
from gguf.constants import GGML_QUANT_SIZES

from edgees.gguf.quants import QTYPES

# f16 scale fields per type: (byte offset in the block, typical magnitude). The magnitude keeps a
# weight around 0.01-0.1 given the code and sub-scale ranges (block layouts from ggml-common.h).
SCALE_FIELDS: dict[str, list[tuple[int, float]]] = {
    "Q4_0": [(0, 5e-3)],                 # d | qs[16]                        w = d*(q-8)
    "Q4_1": [(0, 5e-3), (2, -4e-2)],     # d | m | qs[16]                    w = d*q + m
    "Q5_0": [(0, 2.5e-3)],               # d | qh[4] | qs[16]                w = d*(q-16)
    "Q5_1": [(0, 2.5e-3), (2, -4e-2)],   # d | m | qh[4] | qs[16]
    "Q8_0": [(0, 3e-4)],                 # d | qs[32] int8
    "Q2_K": [(80, 1e-3), (82, 1e-3)],    # scales[16] | qs[64] | d | dmin
    "Q3_K": [(108, 3e-4)],               # hmask[32] | qs[64] | scales[12] | d
    "Q4_K": [(0, 1e-4), (2, 1e-4)],      # d | dmin | scales[12] | qs[128]
    "Q5_K": [(0, 1e-4), (2, 1e-4)],      # d | dmin | scales[12] | qh[32] | qs[128]
    "Q6_K": [(208, 1e-5)],               # ql[128] | qh[64] | scales[16] int8 | d
    "IQ4_NL": [(0, 3e-4)],               # d | qs[16]                        w = d*kvalues[q]
    "IQ4_XS": [(0, 1e-5)],               # d | scales_h u16 | scales_l[4] | qs[128]
}
FLOAT_TYPES = {"F32": np.float32, "F16": np.float16}

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2
MERGES = ["Ġ t", "h e", "i n", "e r", "a n", "o n", "r e", "Ġ a", "Ġ s", "Ġ w", "o u", "e n",
          "Ġt he", "Ġ o", "Ġ i", "a t", "s t", "Ġ c", "o r", "e s", "Ġ b", "i s", "Ġ f", "Ġ m",
          "a r", "a l", "e d", "i t", "Ġ p", "Ġ d", "l e", "n d", "i ng", "Ġ 1", "Ġ 2", "Ġ =",
          "Ġ +", "Ġ n", "Ġi s", "Ġw h"]


def tiny_model_types() -> list[str]:
    """Names of the trainable types make_tiny_model supports (one tiny model each)."""
    return [q.name for q in QTYPES.values() if q.name in SCALE_FIELDS]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map used by byte-level BPE vocabularies."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def tiny_vocab() -> tuple[list[str], list[int], list[str]]:
    """(tokens, token types, merges): control tokens, 256 byte tokens, then one token per merge."""
    tokens = list(SPECIAL_TOKENS) + list(_bytes_to_unicode().values())
    types = [TokenType.CONTROL] * len(SPECIAL_TOKENS) + [TokenType.NORMAL] * 256
    for m in MERGES:
        tokens.append(m.replace(" ", ""))
        types.append(TokenType.NORMAL)
    assert len(set(tokens)) == len(tokens)
    return tokens, [int(t) for t in types], list(MERGES)


def _type(type_name_or_id) -> GGMLQuantizationType:
    try:
        if isinstance(type_name_or_id, str):
            return GGMLQuantizationType[type_name_or_id.upper()]
        return GGMLQuantizationType(int(type_name_or_id))
    except (KeyError, ValueError):
        raise ValueError(f"unknown ggml type {type_name_or_id!r}") from None


def random_tensor(rng: np.random.Generator, ggml_type, rows: int, ne0: int) -> np.ndarray:
    """A (rows, ne0) weight matrix of `ggml_type`: floats for F32/F16, else (rows, row bytes)
    uint8 of random codes whose f16 scale fields hold small positive (or, for mins, negative)
    finite values."""
    t = _type(ggml_type)
    if t.name in FLOAT_TYPES:
        return (rng.standard_normal((rows, ne0)) * 0.02).astype(FLOAT_TYPES[t.name])
    if t.name not in SCALE_FIELDS:
        raise ValueError(f"make_tiny_model supports {sorted(SCALE_FIELDS) + sorted(FLOAT_TYPES)}"
                         f", not {t.name}")
    block_elems, block_bytes = GGML_QUANT_SIZES[t]
    if ne0 % block_elems:
        raise ValueError(f"row length {ne0} is not a multiple of the {t.name} block {block_elems}")
    n_blocks = rows * ne0 // block_elems
    blocks = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    for offset, magnitude in SCALE_FIELDS[t.name]:
        scale = (magnitude * rng.uniform(0.5, 1.0, n_blocks)).astype("<f2")
        blocks[:, offset:offset + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
    return blocks.reshape(rows, ne0 // block_elems * block_bytes)


def _scale_rows(rows: np.ndarray, ggml_type, factor: float) -> None:
    """Multiply the weights of some rows of random_tensor() output by factor, in place."""
    t = _type(ggml_type)
    if rows.dtype != np.uint8:
        rows *= factor
        return
    block_bytes = GGML_QUANT_SIZES[t][1]
    blocks = rows.reshape(-1, block_bytes)
    for offset, _ in SCALE_FIELDS[t.name]:
        f = blocks[:, offset:offset + 2].copy().view("<f2")
        blocks[:, offset:offset + 2] = (f * factor).astype("<f2").view(np.uint8)


def make_tiny_model(path, type_name_or_id, seed: int = 0, *, n_embd: int = 256, n_ff: int = 512,
                    n_layer: int = 2, n_head: int = 4, n_head_kv: int = 2, n_ctx: int = 256,
                    embd_type="Q8_0", tied: bool = True, chat_template: str = CHATML_TEMPLATE) -> Path:
    """Write a tiny llama GGUF whose block linear weights are all `type_name_or_id`.

    Norms are F32; token_embd (and output, when not tied) is `embd_type` (None: the block type).
    `chat_template` is stored as tokenizer.chat_template.
    n_embd and n_ff must be multiples of 256 for K-quants/IQ4_XS. Written atomically.
    """
    path = Path(path)
    wtype = _type(type_name_or_id)
    etype = wtype if embd_type is None else _type(embd_type)
    head_dim = n_embd // n_head
    n_embd_kv = head_dim * n_head_kv
    tokens, token_types, merges = tiny_vocab()
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    w = GGUFWriter(str(tmp), "llama")
    w.add_name(f"edgees tiny llama {wtype.name}")
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(n_vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(token_types)
    w.add_token_merges(merges)
    w.add_bos_token_id(0)
    w.add_eos_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template(chat_template)
    w.add_quantization_version(2)

    def add(name, ggml_type, rows, ne0, quiet_rows=0):  # numpy (rows, ne0) = ggml (ne0, rows)
        a = random_tensor(rng, ggml_type, rows, ne0)
        if quiet_rows:  # special tokens: near-zero rows, so greedy decoding does not stop at once
            _scale_rows(a[:quiet_rows], ggml_type, 1e-3)
        w.add_tensor(name, a, raw_dtype=None if a.dtype != np.uint8 else _type(ggml_type))

    def norm(name):
        w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(n_embd)).astype(np.float32))

    add("token_embd.weight", etype, n_vocab, n_embd, quiet_rows=len(SPECIAL_TOKENS))
    for i in range(n_layer):
        norm(f"blk.{i}.attn_norm.weight")
        add(f"blk.{i}.attn_q.weight", wtype, n_embd, n_embd)
        add(f"blk.{i}.attn_k.weight", wtype, n_embd_kv, n_embd)
        add(f"blk.{i}.attn_v.weight", wtype, n_embd_kv, n_embd)
        add(f"blk.{i}.attn_output.weight", wtype, n_embd, n_embd)
        norm(f"blk.{i}.ffn_norm.weight")
        add(f"blk.{i}.ffn_gate.weight", wtype, n_ff, n_embd)
        add(f"blk.{i}.ffn_up.weight", wtype, n_ff, n_embd)
        add(f"blk.{i}.ffn_down.weight", wtype, n_embd, n_ff)
    norm("output_norm.weight")
    if not tied:
        add("output.weight", etype, n_vocab, n_embd, quiet_rows=len(SPECIAL_TOKENS))

    try:
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
