"""Engine benchmark: Engine.generate against llama-cpp-python's high-level API, side by side.

Both paths get the same N arithmetic chat prompts (greedy, max_tokens, the task's stop strings),
the same model file and thread count, in the same run. The 1-minute load average before and
after is reported: on a shared 2-core machine, other work stalls llama.cpp's thread barriers,
which hurts one-token decodes (the baseline) far more than batched ones, so read the speedup of a
loaded run as optimistic. Each path runs in its own child process
so its peak RSS (getrusage ru_maxrss) is its own; paths alternate `repeat` times and the best
wall time of each counts (this machine is shared and noisy). Wall times exclude model load and a
one-token warm-up. Figures:

  speedup_vs_llama_cpp_python   best baseline wall / best engine wall
  speedup_paired_median         median over repeats of each baseline wall / the engine wall timed
                                just before it (pairs close in time: less exposed to drift)
  decode_ceiling_tokens_per_s   one llama_decode of a 512-token batch (the compute ceiling)
  engine_tokens_per_s           (sum of full prompt lengths + generated tokens) / engine wall;
                                prefix sharing lets it exceed the ceiling; engine_over_ceiling
  batched_equals_sequential     fraction of prompts whose batched output == generate([prompt])
  *_peak_rss_mb                 each child's peak RSS just after its timed run

Both paths render the model's own Jinja template in a sandbox (SmolLM2's adds a default system
prompt), so they see the same prompt tokens; `same_text` is the fraction of equal answers.

    python -m edgees.bench.engine --child engine MODEL ...   (internal: one measured child)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys

from edgees.errors import EdgeesError

TASK = "arithmetic"


def _prompts(n: int):
    from edgees.tasks.base import get_task
    task = get_task(TASK)
    _, heldout = task.split(n_heldout=n)
    return task, [e.prompt for e in heldout]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def child_engine(model: str, n: int, max_tokens: int, threads: int, extras: bool) -> dict:
    from edgees.engine.engine import Engine
    task, prompts = _prompts(n)
    with Engine(model, n_threads=threads, n_seq=n, max_tokens=max_tokens) as engine:
        engine.generate(prompts[:1], max_tokens=1)
        texts = engine.generate(prompts, max_tokens=max_tokens, stop=task.stop)
        st = dict(engine.last_stats)
        out = {"wall_s": st["wall_s"], "texts": texts, "prompt_tokens": st["prompt_tokens"],
               "generated_tokens": st["generated_tokens"], "shared_tokens": st.get("shared_tokens", 0),
               "batches": st["batches"], "peak_rss_mb": _peak_rss_mb()}
        if extras:
            seq = [engine.generate([p], max_tokens=max_tokens, stop=task.stop)[0] for p in prompts]
            out["batched_equals_sequential"] = sum(a == b for a, b in zip(texts, seq)) / len(prompts)
            stream = [t for p in prompts for t in engine.prompt_tokens(p)]
            while len(stream) < 512:
                stream += stream
            best = min(engine.time_decode(stream[:512]) for _ in range(2))
            out["decode_ceiling_tokens_per_s"] = 512 / best
    return out


def child_reference(model: str, n: int, max_tokens: int, threads: int, repack: bool = True) -> dict:
    from edgees.engine.baseline import chat_completions
    task, prompts = _prompts(n)
    out = chat_completions(model, prompts, max_tokens, task.stop, threads, repack=repack)
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def _spawn(kind: str, model: str, n: int, max_tokens: int, threads: int, extras: bool,
           repack: bool = True) -> dict:
    cmd = [sys.executable, "-m", "edgees.bench.engine", "--child", kind, model, "--n", str(n),
           "--max-tokens", str(max_tokens), "--threads", str(threads)]
    if extras:
        cmd.append("--extras")
    if not repack:
        cmd.append("--no-repack")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchChildFailed(f"bench child `{kind}` failed (exit {r.returncode}): {last}", r.returncode)
    return json.loads(r.stdout.strip().splitlines()[-1])


class BenchChildFailed(EdgeesError):
    def __init__(self, message: str, returncode: int):
        super().__init__(message)
        self.returncode = returncode


def run(model_path, n: int = 32, max_tokens: int = 32, threads: int | None = None, repeat: int = 3,
        progress=None) -> dict:
    """Both paths, alternating `repeat` times; one JSON-ready dict of figures."""
    repeat = max(1, repeat)
    say = progress or (lambda msg: None)
    model = str(model_path)
    threads = int(threads or len(os.sched_getaffinity(0)))
    eng, ref = [], []
    repack_died = None  # the signal llama-cpp-python's default (repacking) load died by, on this CPU
    load_before = os.getloadavg()[0]
    for r in range(repeat):
        say(f"[{r + 1}/{repeat}] engine: one generate of {n} prompts"
            + (" (+ sequential check, decode ceiling)" if r == 0 else ""))
        eng.append(_spawn("engine", model, n, max_tokens, threads, extras=(r == 0)))
        say(f"[{r + 1}/{repeat}] llama-cpp-python: create_chat_completion x {n}")
        try:
            ref.append(_spawn("reference", model, n, max_tokens, threads, extras=False, repack=repack_died is None))
        except BenchChildFailed as exc:  # llama.cpp's AMX repacking dies so on some VMs: load as edgees does
            if repack_died is not None or exc.returncode >= 0:
                raise
            repack_died = -exc.returncode
            say(f"llama-cpp-python's default load died by signal {repack_died} on this CPU "
                "(its repacked weights); the reference runs with repacking off, as edgees loads")
            ref.append(_spawn("reference", model, n, max_tokens, threads, extras=False, repack=False))
    e_best = min(eng, key=lambda x: x["wall_s"])
    r_best = min(ref, key=lambda x: x["wall_s"])
    first = eng[0]
    e_tps = (e_best["prompt_tokens"] + e_best["generated_tokens"]) / e_best["wall_s"]
    ceiling = first["decode_ceiling_tokens_per_s"]
    same = sum(a.strip() == b.strip() for a, b in zip(first["texts"], ref[0]["texts"])) / n
    return {
        "model": model, "task": TASK, "n_prompts": n, "max_tokens": max_tokens, "threads": threads,
        "repeat": repeat, "load_average_1min": [load_before, os.getloadavg()[0]],
        "llama_cpp_python_repack": repack_died is None,
        "llama_cpp_python_repack_died_by_signal": repack_died,
        "speedup_vs_llama_cpp_python": r_best["wall_s"] / e_best["wall_s"],
        "speedup_paired_median": float(statistics.median(r["wall_s"] / e["wall_s"] for e, r in zip(eng, ref))),
        "engine_wall_s": e_best["wall_s"],
        "llama_cpp_python_wall_s": r_best["wall_s"],
        "engine_wall_s_all": [x["wall_s"] for x in eng],
        "llama_cpp_python_wall_s_all": [x["wall_s"] for x in ref],
        "decode_ceiling_tokens_per_s": ceiling,
        "engine_tokens_per_s": e_tps,
        "engine_over_ceiling": e_tps / ceiling,
        "engine_generated_tokens_per_s": e_best["generated_tokens"] / e_best["wall_s"],
        "llama_cpp_python_generated_tokens_per_s": r_best["generated_tokens"] / r_best["wall_s"],
        "engine_prompt_tokens": e_best["prompt_tokens"],
        "engine_shared_tokens": e_best["shared_tokens"],
        "engine_generated_tokens": e_best["generated_tokens"],
        "llama_cpp_python_prompt_tokens": r_best["prompt_tokens"],
        "llama_cpp_python_generated_tokens": r_best["generated_tokens"],
        "batched_equals_sequential": first["batched_equals_sequential"],
        "same_text_as_llama_cpp_python": same,
        "engine_peak_rss_mb": max(x["peak_rss_mb"] for x in eng),
        "llama_cpp_python_peak_rss_mb": max(x["peak_rss_mb"] for x in ref),
    }


def format_report(r: dict) -> str:
    return "\n".join([
        f"model {r['model']}: {r['n_prompts']} {r['task']} chat prompts, max {r['max_tokens']} "
        f"tokens, greedy, {r['threads']} threads, best of {r['repeat']}",
        *([f"  (llama-cpp-python's default load died by signal {r['llama_cpp_python_repack_died_by_signal']} "
            "on this CPU: its figures are with repacking off, as edgees loads)"]
          if not r.get("llama_cpp_python_repack", True) else []),
        f"  llama-cpp-python create_chat_completion x{r['n_prompts']}  "
        f"{r['llama_cpp_python_wall_s']:6.2f} s  ({r['llama_cpp_python_prompt_tokens']} prompt + "
        f"{r['llama_cpp_python_generated_tokens']} generated tokens)",
        f"  engine.generate (one call)                 {r['engine_wall_s']:6.2f} s  "
        f"({r['engine_prompt_tokens']} prompt, {r['engine_shared_tokens']} not decoded again (shared), "
        f"{r['engine_generated_tokens']} generated)",
        f"  speedup                                    {r['speedup_vs_llama_cpp_python']:6.2f}x "
        f"(target >= 1.5; median of the {r['repeat']} pairs {r['speedup_paired_median']:.2f}x)",
        f"  decode ceiling (512-token llama_decode)    {r['decode_ceiling_tokens_per_s']:6.1f} tok/s",
        f"  engine throughput                          {r['engine_tokens_per_s']:6.1f} tok/s = "
        f"{r['engine_over_ceiling']:.2f}x ceiling",
        f"  batched == sequential greedy               {r['batched_equals_sequential']:6.1%}",
        f"  peak RSS: engine {r['engine_peak_rss_mb']:.0f} MB, llama-cpp-python "
        f"{r['llama_cpp_python_peak_rss_mb']:.0f} MB",
    ])


def _child_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m edgees.bench.engine")
    p.add_argument("--child", choices=["engine", "reference"], required=True)
    p.add_argument("model")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--extras", action="store_true")
    p.add_argument("--no-repack", action="store_true")
    a = p.parse_args(argv)
    if a.child == "engine":
        out = child_engine(a.model, a.n, a.max_tokens, a.threads, a.extras)
    else:
        out = child_reference(a.model, a.n, a.max_tokens, a.threads, repack=not a.no_repack)
    sys.stdout.write(json.dumps(out) + "\n")  # a child's only output: one JSON line for the parent
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
