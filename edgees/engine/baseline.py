"""The baseline the engine is benchmarked against: llama-cpp-python's high-level chat API.

`Llama.create_chat_completion` called once per prompt, greedy, as a user of llama-cpp-python would
write it. It renders the model's chat template with its own Jinja renderer and reuses the longest
common token prefix with the previous call. Used by edgees.bench.engine only; it never touches a
working copy (it opens the model read-only and may repack it: it is a speed reference, nothing
more). Part of the engine adapter: with llama.py, decode.py and engine.py, the only llama_cpp importers.
"""

from __future__ import annotations

import contextlib
import time

import llama_cpp as L
import llama_cpp.llama as _high_level


@contextlib.contextmanager
def repacking_off():
    """Llama() with llama.cpp's extra weight buffers off (use_extra_bufts = False, as edgees loads).
    Llama() has no parameter for it, so its default model params are wrapped while it loads. Some
    CPUs need it: on a VM that advertises AMX, llama.cpp repacks Q4_0/Q4_1/Q8_0 into an AMX buffer
    and the first decode dies (SIGSEGV or SIGILL, seen 2026-12-06 on a 2-core Xeon with amx_int8)."""
    module = _high_level.llama_cpp
    default = module.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = False
        return p

    module.llama_model_default_params = params
    try:
        yield
    finally:
        module.llama_model_default_params = default


def chat_completions(path, prompts: list, max_tokens: int, stop: list[str],
                     n_threads: int, n_ctx: int = 512, repack: bool = True) -> dict:
    """Run the prompts one after another; wall time excludes the load and one warm-up call.
    repack: llama.cpp's default load (it may repack weights for this CPU); False: repacking off."""
    with (contextlib.nullcontext() if repack else repacking_off()):
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
