"""The baseline the engine is benchmarked against: llama-cpp-python's high-level chat API.

`Llama.create_chat_completion` called once per prompt, greedy, as a user of llama-cpp-python would
write it. It renders the model's chat template with its own Jinja renderer and reuses the longest
common token prefix with the previous call. Used by edgees.bench.engine only; it never touches a
working copy (it opens the model read-only and may repack it: it is a speed reference, nothing
more). Part of the engine adapter: with llama.py, decode.py and engine.py, the only llama_cpp importers.
"""

from __future__ import annotations

import time

import llama_cpp as L


def chat_completions(path, prompts: list, max_tokens: int, stop: list[str],
                     n_threads: int, n_ctx: int = 512) -> dict:
    """Run the prompts one after another; wall time excludes the load and one warm-up call."""
    llm = L.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads,
                  n_threads_batch=n_threads, n_gpu_layers=0, verbose=False)
    try:
        llm.create_chat_completion(messages=prompts[0], max_tokens=1, temperature=0.0)
        texts, prompt_tokens, completion_tokens = [], 0, 0
        t0 = time.perf_counter()
        for messages in prompts:
            r = llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0,
                                           top_k=1, stop=list(stop) or None)
            texts.append(r["choices"][0]["message"]["content"] or "")
            prompt_tokens += r["usage"]["prompt_tokens"]
            completion_tokens += r["usage"]["completion_tokens"]
        wall = time.perf_counter() - t0
    finally:
        llm.close()
    return {"wall_s": wall, "texts": texts, "prompt_tokens": prompt_tokens,
            "generated_tokens": completion_tokens}
