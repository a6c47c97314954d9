"""The decode loops behind Engine.generate / score / logits: batches of parallel sequences.

Layout of one call (n sequences, one unified KV cache, greedy):

    seq 0:   [ shared prefix P tokens ][ tail 0 ][ generated 0 ... ]
    seq 1:   (the same prefix cells)    [ tail 1 ][ generated 1 ... ]
    ...

1. Shared prompt tokens are decoded once: the prompts form a prefix tree (share_plan), and every
   run of tokens that several prompts have in common at the same positions (the chat template and
   system prompt of all of them; "What is 2" of the sums starting with 2) is decoded on one of
   them, then llama_memory_seq_cp adds the others to its cells (a unified cache shares cells: no
   copy, no extra memory). Tree levels go in waves, a parent's cells before its children's. A
   token that needs logits is never shared (each sequence keeps at least its last prompt token).
2. The tails are decoded together, in chunks of at most n_batch tokens, logits on each last token.
3. Each step decodes one token per live sequence; a sequence leaves at an end-of-generation token,
   at a stop string or at max_tokens.

Logits are read right after each llama_decode (the next call overwrites them). The batch struct is
our own numpy arrays (one sequence id per token, llama.Batch), filled with slices instead of
per-token ctypes writes. Each function takes the Engine for its vocabulary (tokens, pieces,
end-of-generation) and decodes in its Context (engine.context); each returns its result and a
stats dict, which the Engine keeps as last_stats.
"""

from __future__ import annotations

import time

import numpy as np

from edgees.engine.llama import Context

SCORE_OUTPUTS = 128  # most logits rows per decode call when scoring (bounds the logits buffer)


def common_prefix(seqs: list[list[int]]) -> int:
    """Length of the longest token prefix shared by all sequences."""
    first, n = seqs[0], min(len(s) for s in seqs)
    for s in seqs[1:]:
        k = 0
        while k < n and s[k] == first[k]:
            k += 1
        n = k
    return n


def _chunks(out_flags: np.ndarray, cap: int, out_cap: int):
    """(start, end) spans of at most cap tokens and at most out_cap logits rows each."""
    s, total = 0, len(out_flags)
    while s < total:
        e = min(total, s + cap)
        c = np.cumsum(out_flags[s:e])
        if c[-1] > out_cap:
            e = s + max(1, int(np.searchsorted(c, out_cap, side="right")))
        yield s, e
        s = e


Segment = tuple  # (owner sequence, start position, end position, member sequences incl. owner)


def share_plan(seqs: list[list[int]], limit: list[int]) -> tuple[list[list[Segment]], list[int]]:
    """The prefix tree of seqs, as waves of shared segments, and where each sequence's own tokens
    start. Sequence i may share positions < limit[i]. A segment (owner, s, e, members) is tokens
    [s, e) that every member has in common (and their parents' tokens before s); wave k+1 holds
    the children of wave k's segments. Pure: tested on its own."""
    waves: list[list[Segment]] = []
    own_from = [0] * len(seqs)
    groups = [(list(range(len(seqs))), 0)] if len(seqs) > 1 else []
    while groups:
        wave, children = [], []
        for members, start in groups:
            cap = min(limit[i] for i in members)
            first = seqs[members[0]]
            end = start
            while end < cap and all(seqs[i][end] == first[end] for i in members[1:]):
                end += 1
            if end > start:
                wave.append((members[0], start, end, members))
                for i in members:
                    own_from[i] = end
            by_token: dict[int, list[int]] = {}
            for i in members:
                if limit[i] > end:
                    by_token.setdefault(seqs[i][end], []).append(i)
            children += [(sub, end) for sub in by_token.values() if len(sub) > 1]
        if wave:
            waves.append(wave)
        groups = children
    return waves, own_from


def _prefill(c: Context, n_vocab: int, seqs: list[list[int]], upto: list[int], first_out: list[int],
             out_cap: int, st: dict):
    """Decode the tokens the sequences share once (share_plan), then each sequence's own tokens up
    to `upto[i]` (exclusive), with logits from position first_out[i] on. Yields (seq, position,
    logits row) for every output, in order, each row valid only until the next yield's decode.
    Counts shared and decoded prompt tokens into st."""
    cap = c.n_batch
    c.clear()
    waves, own_from = share_plan(seqs, first_out)
    shared = decoded = 0
    for wave in waves:
        tok = np.concatenate([np.asarray(seqs[o][s:e], np.int32) for o, s, e, _ in wave])
        pos = np.concatenate([np.arange(s, e, dtype=np.int32) for _, s, e, _ in wave])
        seq = np.concatenate([np.full(e - s, o, np.int32) for o, s, e, _ in wave])
        for s, e in _chunks(np.zeros(len(tok), np.int8), cap, 0):
            c.decode(tok[s:e], pos[s:e], seq[s:e], 0)
        for owner, s, e, members in wave:
            for m in members[1:]:
                c.copy_cells(owner, m, s, e)
            shared += (e - s) * (len(members) - 1)
        decoded += len(tok)
    tok = np.concatenate([np.asarray(t[f:u], np.int32) for t, f, u in zip(seqs, own_from, upto)])
    pos = np.concatenate([np.arange(f, u, dtype=np.int32) for f, u in zip(own_from, upto)])
    seq = np.concatenate([np.full(u - f, i, np.int32) for i, (f, u) in enumerate(zip(own_from, upto))])
    out = (pos >= np.asarray(first_out, np.int32)[seq]).astype(np.int8)
    st["shared_tokens"] = st.get("shared_tokens", 0) + shared
    st["decoded_prompt_tokens"] = st.get("decoded_prompt_tokens", 0) + decoded + len(tok)
    for s, e in _chunks(out, cap, out_cap):
        c.decode(tok[s:e], pos[s:e], seq[s:e], out[s:e])
        for j in np.flatnonzero(out[s:e]):
            yield int(seq[s + j]), int(pos[s + j]), c.row(int(j), n_vocab)


def _find_stop(text: bytes, stops: list[bytes]) -> int:
    cuts = [k for k in (text.find(s) for s in stops) if k >= 0]
    return min(cuts) if cuts else -1


def generate(engine, prompts: list, max_tokens: int, stop: list[str]) -> tuple[list[str], dict]:
    t0 = time.perf_counter()
    st: dict = {}
    toks = [engine.prompt_tokens(p) for p in prompts]
    out: list[str] = [""] * len(toks)
    stats = {"prompts": len(toks), "prompt_tokens": sum(map(len, toks)), "generated_tokens": 0,
             "batches": 0}
    if toks and max_tokens > 0:
        b = engine.batch_size_for(max(map(len, toks)) + max_tokens)
        stops = [s.encode("utf-8") for s in stop]
        for start in range(0, len(toks), b):
            part = toks[start:start + b]
            texts, n_gen = _generate_batch(engine, part, max_tokens, stops, st)
            out[start:start + len(part)] = texts
            stats["generated_tokens"] += n_gen
            stats["batches"] += 1
    engine.synchronize()
    stats["wall_s"] = time.perf_counter() - t0
    st.update(stats)
    return out, st


def _generate_batch(engine, toks: list[list[int]], max_tokens: int, stops: list[bytes], st: dict):
    n = len(toks)
    lens = [len(t) for t in toks]
    n_pre = min(common_prefix(toks), min(lens) - 1)
    c = engine.context
    c.ensure(n_pre + sum(k - n_pre + max_tokens for k in lens), n, n)
    nxt = [0] * n
    for i, _, row in _prefill(c, engine.n_vocab, toks, lens, [k - 1 for k in lens], n, st):
        nxt[i] = int(row.argmax())
    texts = [bytearray() for _ in range(n)]
    result: list[str | None] = [None] * n
    n_gen = [0] * n
    pos = list(lens)
    live = list(range(n))
    eog: dict[int, bool] = {}
    while live:
        still = []
        for i in live:
            t = nxt[i]
            if eog.setdefault(t, engine.is_eog(t)):
                continue
            texts[i] += engine.piece(t)
            n_gen[i] += 1
            if stops:
                cut = _find_stop(bytes(texts[i]), stops)
                if cut >= 0:
                    result[i] = bytes(texts[i][:cut]).decode("utf-8", "ignore")
                    continue
            if n_gen[i] < max_tokens:
                still.append(i)
        live = still
        if not live:
            break
        c.decode([nxt[i] for i in live], [pos[i] for i in live], live, 1)
        for j, i in enumerate(live):
            nxt[i] = int(c.row(j, engine.n_vocab).argmax())
            pos[i] += 1
    final = [r if r is not None else bytes(t).decode("utf-8", "ignore") for r, t in zip(result, texts)]
    return final, sum(n_gen)


def _log_softmax_at(row: np.ndarray, token: int) -> float:
    r = row.astype(np.float64)
    m = r.max()
    return float(r[token] - m - np.log(np.exp(r - m).sum()))


def _margin_at(row: np.ndarray, token: int, cap: float) -> float:
    """The reference token's logit lead over the best other token, capped at `cap` (> 0: it is the argmax)."""
    r = row.astype(np.float64)
    own = r[token]
    r[token] = -np.inf
    return float(min(own - r.max(), cap))


def score(engine, prompts: list, targets: list, end_token: int | None = None,
          margin: float | None = None) -> tuple[list[float], dict]:
    t0 = time.perf_counter()
    st: dict = {}
    c = engine.context
    if len(prompts) != len(targets):
        raise ValueError(f"score: {len(prompts)} prompts but {len(targets)} targets")
    ptoks = [engine.prompt_tokens(p) for p in prompts]
    ttoks = [engine.tokenize(t, add_special=False, parse_special=False) for t in targets]
    if end_token is not None:
        ttoks = [t + [end_token] for t in ttoks]
    full = [p + t for p, t in zip(ptoks, ttoks)]
    result = [0.0] * len(full)
    todo = [i for i in range(len(full)) if ttoks[i]]
    if todo:
        b = engine.batch_size_for(max(len(full[i]) for i in todo))
        for start in range(0, len(todo), b):
            idx = todo[start:start + b]
            seqs = [full[i] for i in idx]
            first = [len(ptoks[i]) - 1 for i in idx]
            upto = [len(s) - 1 for s in seqs]  # the last target token is predicted, never fed
            n_out = sum(u - f for u, f in zip(upto, first))
            n_pre = min(common_prefix(seqs), min(first))
            c.ensure(n_pre + sum(len(s) - n_pre for s in seqs), len(seqs), min(SCORE_OUTPUTS, n_out))
            for k, p, row in _prefill(c, engine.n_vocab, seqs, upto, first, c.n_outputs, st):
                tok = seqs[k][p + 1]
                result[idx[k]] += _log_softmax_at(row, tok) if margin is None else _margin_at(row, tok, margin)
    engine.synchronize()
    st.update({"prompts": len(full), "target_tokens": sum(map(len, ttoks)), "wall_s": time.perf_counter() - t0})
    return result, st


def last_logits(engine, toks: list[int]) -> np.ndarray:
    """Logits after the last token of one sequence, decoded from an empty memory."""
    c = engine.context
    c.ensure(len(toks), 1, 1)
    rows = [row.copy() for _, _, row in _prefill(c, engine.n_vocab, [toks], [len(toks)], [len(toks) - 1], 1, {})]
    engine.synchronize()
    return rows[-1]


def time_decode(engine, toks: list[int]) -> float:
    n = len(toks)
    c = engine.context
    c.ensure(n, 1, 1, ubatch=n)
    if c.n_batch < n:
        raise ValueError(f"time_decode: {n} tokens exceed the batch capacity {c.n_batch}")
    c.clear()
    flags = np.zeros(n, np.int8)
    flags[-1] = 1
    t0 = time.perf_counter()
    c.decode(toks, np.arange(n), 0, flags)
    c.synchronize()
    dt = time.perf_counter() - t0
    c.free()  # the next call gets a context with the invariant ubatch size
    return dt
