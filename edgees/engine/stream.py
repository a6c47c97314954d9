"""Token-by-token greedy generation of one prompt, for a person watching (`edgees chat`).

    for text in stream(engine, messages, max_tokens=256, stop=["\\n\\n"]):
        print(text, end="", flush=True)

The same decode calls Engine.generate makes for a batch of one prompt (decode.py: the prompt
prefilled with logits on its last token, then one token a call), so "".join(stream(...)) is the
text generate() returns for that prompt. What is yielded is text, never half a UTF-8 character,
and never bytes that might still turn out to open a stop string: those are held back until the
next token settles it (a stop string is cut off, as generate() cuts it).
"""

from __future__ import annotations

import codecs
from typing import Iterator

from edgees.engine.decode import _find_stop, _prefill


def stream(engine, prompt, max_tokens: int | None = None, stop=None) -> Iterator[str]:
    """Pieces of the greedy completion of one prompt (raw text or chat messages) as they are decoded;
    it ends at an end-of-generation token, the first stop string (cut there) or max_tokens tokens."""
    max_tokens = engine.max_tokens if max_tokens is None else int(max_tokens)
    stops = [s.encode() for s in (stop or []) if s]
    hold = max((len(s) for s in stops), default=1) - 1  # bytes that may be the start of a stop string
    toks = engine.prompt_tokens(prompt)
    if not toks or max_tokens <= 0:
        return
    c = engine.context
    c.ensure(len(toks) + max_tokens, 1, 1)
    nxt = 0
    for _, _, row in _prefill(c, engine.n_vocab, [toks], [len(toks)], [len(toks) - 1], 1, {}):
        nxt = int(row.argmax())
    text = bytearray()
    sent = 0  # bytes of text already handed to the decoder
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="ignore")
    pos = len(toks)
    try:
        for n in range(max_tokens):
            if engine.is_eog(nxt):
                break
            text += engine.piece(nxt)
            cut = _find_stop(bytes(text), stops) if stops else -1
            if cut >= 0:
                if out := utf8.decode(bytes(text[sent:cut]), final=True):
                    yield out
                return
            safe = len(text) - hold
            if safe > sent:
                if out := utf8.decode(bytes(text[sent:safe])):
                    yield out
                sent = safe
            if n + 1 == max_tokens:
                break
            c.decode([nxt], [pos], [0], 1)
            nxt = int(c.row(0, engine.n_vocab).argmax())
            pos += 1
        if out := utf8.decode(bytes(text[sent:]), final=True):
            yield out
    finally:
        engine.synchronize()
