"""Build a tiny ONNX text scorer + tokenizer.json for tests of the onnx: task (no download).

    python tools/make_onnx_reward.py OUTDIR [--no-mask] [--extra-input NAME]

Writes OUTDIR/reward.onnx, OUTDIR/tokenizer.json (WordLevel, lowercase, whitespace split, the format
the `tokenizers` package reads) and OUTDIR/config.json (id2label). The model is a toy sentiment
classifier: embedding gather -> masked mean over tokens -> linear -> logits[batch, 2] with labels
0 "negative", 1 "positive". Embedding dim 0 is +1 for a positive word, -1 for a negative one, 0
otherwise, and logit[positive] = 3 * mean(dim 0) = -logit[negative] (+ a 0.1 bias on positive), so
"great great" > "great" > "the" > "awful". Dims 1..3 are fixed pseudo-random noise with zero weight.
--no-mask builds a model without the attention_mask input; --extra-input adds an unused float input
(the "unexpected input" case). Everything is deterministic (the bytes are identical per options).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

POSITIVE = ["good", "great", "excellent", "happy", "love", "wonderful", "yes", "best", "nice", "correct"]
NEGATIVE = ["bad", "awful", "terrible", "sad", "hate", "horrible", "no", "worst", "wrong", "boring"]
NEUTRAL = ["the", "a", "is", "it", "was", "this", "movie", "food", "day", "i", "you", "and", "very",
           "not", "answer", ".", ",", "!", "?"]
SPECIAL = ["[PAD]", "[UNK]"]
DIM = 4


def vocabulary() -> dict[str, int]:
    return {w: i for i, w in enumerate(SPECIAL + POSITIVE + NEGATIVE + NEUTRAL)}


def tokenizer_json(vocab: dict[str, int]) -> dict:
    added = [{"id": vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for t in SPECIAL]
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": {"type": "Lowercase"}, "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": None, "decoder": None,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}}


def build(outdir: str | Path, *, attention_mask: bool = True, extra_input: str | None = None) -> Path:
    """Write the model, tokenizer and config into outdir; return the .onnx path."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    vocab = vocabulary()
    emb_vd = np.random.default_rng(0).normal(0, 0.1, size=(len(vocab), DIM)).astype(np.float32)
    emb_vd[:, 0] = 0.0
    for w in POSITIVE:
        emb_vd[vocab[w], 0] = 1.0
    for w in NEGATIVE:
        emb_vd[vocab[w], 0] = -1.0
    w_d2 = np.zeros((DIM, 2), np.float32)
    w_d2[0] = [-3.0, 3.0]
    b_2 = np.array([0.0, 0.1], np.float32)

    inits = [numpy_helper.from_array(emb_vd, "embedding"), numpy_helper.from_array(w_d2, "weight"),
             numpy_helper.from_array(b_2, "bias"), numpy_helper.from_array(np.array([1], np.int64), "axis1"),
             numpy_helper.from_array(np.array([2], np.int64), "axis2"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one")]
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])]
    nodes = [helper.make_node("Gather", ["embedding", "input_ids"], ["emb"])]  # (batch, seq, DIM)
    if attention_mask:
        inputs.append(helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]))
        nodes += [
            helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["mask_f", "axis2"], ["mask3"]),            # (batch, seq, 1)
            helper.make_node("Mul", ["emb", "mask3"], ["masked"]),
            helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),  # (batch, DIM)
            helper.make_node("ReduceSum", ["mask3", "axis1"], ["count"], keepdims=0),    # (batch, 1)
            helper.make_node("Max", ["count", "one"], ["count1"]),
            helper.make_node("Div", ["summed", "count1"], ["pooled"]),
        ]
    else:
        nodes.append(helper.make_node("ReduceMean", ["emb"], ["pooled"], axes=[1], keepdims=0))
    if extra_input:
        inputs.append(helper.make_tensor_value_info(extra_input, TensorProto.FLOAT, ["batch", 3]))
    nodes += [helper.make_node("MatMul", ["pooled", "weight"], ["mm"]),
              helper.make_node("Add", ["mm", "bias"], ["logits"])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])]
    graph = helper.make_graph(nodes, "tiny_text_scorer", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="edgees")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = outdir / "reward.onnx"
    path.write_bytes(model.SerializeToString())
    (outdir / "tokenizer.json").write_text(json.dumps(tokenizer_json(vocab), indent=1) + "\n")
    (outdir / "config.json").write_text(json.dumps({"id2label": {"0": "negative", "1": "positive"}}) + "\n")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir")
    ap.add_argument("--no-mask", action="store_true", help="no attention_mask input (mean over all tokens)")
    ap.add_argument("--extra-input", default=None, help="add an unused float input of this name")
    args = ap.parse_args(argv)
    path = build(args.outdir, attention_mask=not args.no_mask, extra_input=args.extra_input)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
