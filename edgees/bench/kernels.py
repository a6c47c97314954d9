"""Kernel benchmark: perturb + restore against memcpy, C against the numpy reference, one update.

Every figure is a ratio or a time measured side by side in this one run on this machine. The
model is used through a WorkingCopy; the user's file is only read.
"""

from __future__ import annotations

import time

import numpy as np

from edgees.errors import UnsupportedModel
from edgees.qes import kernels
from edgees.qes.trainable import slots_for
from edgees.qes import reference as kernels_ref
from edgees.gguf.working_copy import WorkingCopy


def _best(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def run(model_path, sigma: float = 0.01, threads: int | None = None, reps: int = 5, pairs: int = 25,
        window: int = 50, ref_elements: int = 3_000_000, progress=None) -> dict:
    say = progress or (lambda msg: None)
    threads = threads or kernels.default_threads()
    with WorkingCopy(model_path) as wc:
        slots = slots_for(wc)
        if not slots:
            raise UnsupportedModel(f"{model_path}: no trainable tensors, nothing to time (`edgees info` lists its "
                                   "types); use a model quantized to Q4_0..Q8_0, a K-quant or IQ4 (e.g. Q4_K_M)")
        n_weights = sum(s.n_elements for s in slots)
        n_bytes = sum(s.view.nbytes for s in slots)
        before = wc.sha256([s.name for s in slots])

        say(f"memcpy of {n_bytes / 1e6:.1f} MB of trainable tensors")
        dst = np.empty(n_bytes, dtype=np.uint8)

        def memcpy():
            off = 0
            for s in slots:
                dst[off: off + s.view.nbytes] = s.view
                off += s.view.nbytes
        memcpy()
        t_memcpy = _best(memcpy, reps)

        say(f"perturb + restore of {n_weights / 1e6:.1f} M weights at sigma {sigma}, {threads} threads")
        seeds = iter(range(1, 10_000))

        def perturb_restore():
            seed = next(seeds)
            rec = kernels.perturb(slots, seed, sigma, threads=threads)
            kernels.restore(slots, rec, threads=threads)
        t_pr = _best(perturb_restore, reps)
        # the same ratio per rep, each memcpy timed right before its perturb + restore: this VM's
        # memory bandwidth drifts between the two best-of phases above, a pair's ratio less so
        paired = []
        for _ in range(reps):
            t0 = time.perf_counter()
            memcpy()
            t1 = time.perf_counter()
            perturb_restore()
            paired.append((time.perf_counter() - t1) / (t1 - t0))

        say("fused restore-this-member + perturb-the-next (what the training loop runs per member)")
        live = {"seed": 1, "rec": kernels.perturb(slots, 1, sigma, threads=threads)}

        def swap():
            live["seed"] += 1
            live["rec"] = kernels.swap(slots, live["rec"], live["seed"], sigma, threads=threads)
        t_swap = _best(swap, reps)
        kernels.restore(slots, live["rec"], threads=threads)
        rec = kernels.perturb(slots, 1, sigma, threads=threads)
        record_bytes = rec.nbytes
        kernels.restore(slots, rec, threads=threads)
        restored = wc.sha256([s.name for s in slots]) == before

        # numpy reference vs C on the same leading tensors (the reference is slow)
        sub, total = [], 0
        for s in slots:
            if total >= ref_elements:
                break
            sub.append(s)
            total += s.n_elements
        say(f"numpy reference vs C on {total / 1e6:.1f} M weights")

        def ref_pr():
            kernels_ref.restore(sub, kernels_ref.perturb(sub, 7, sigma))

        def c_pr():
            kernels.restore(sub, kernels.perturb(sub, 7, sigma, threads=1), threads=1)
        t_ref = _best(ref_pr, 1)
        t_c = _best(c_pr, reps)

        say(f"one replay update: window {window}, {pairs} pairs")
        rng = np.random.default_rng(0)

        def spec():
            return kernels.StepSpec(tuple(int(x) for x in rng.integers(1, 2**62, pairs)),
                                    tuple(float(x) for x in np.clip(rng.standard_normal(pairs), -3, 3)),
                                    1e-3, sigma)
        n_jobs = sum(s.n_chunks for s in slots)
        empty = kernels.ChunkRecord(np.zeros(n_jobs, np.uint32), np.zeros(0, np.uint16), np.zeros(0, np.int8))
        history = [(spec(), empty) for _ in range(window)]
        t0 = time.perf_counter()
        _, stats = kernels.update(slots, history, spec(), threads=threads)
        t_update = time.perf_counter() - t0

    return {
        "model": str(model_path),
        "sigma": sigma,
        "threads": threads,
        "trainable_weights": n_weights,
        "trainable_bytes": n_bytes,
        "memcpy_seconds": t_memcpy,
        "perturb_restore_seconds": t_pr,
        "perturb_restore_over_memcpy": t_pr / t_memcpy,
        "perturb_restore_over_memcpy_paired_median": float(np.median(paired)),
        "restore_exact": restored,
        "fused_swap_seconds": t_swap,
        "fused_swap_over_memcpy": t_swap / t_memcpy,
        "member_record_bytes": record_bytes,
        "reference_elements": total,
        "reference_seconds": t_ref,
        "native_seconds_1_thread": t_c,
        "native_over_reference_speedup": t_ref / t_c,
        "update_seconds": t_update,
        "update_window": window,
        "update_pairs": pairs,
        "update_codes_changed": stats["changed"],
    }


def format_report(r: dict) -> str:
    return "\n".join([
        f"model {r['model']}: {r['trainable_weights'] / 1e6:.1f} M trainable weights, "
        f"{r['trainable_bytes'] / 1e6:.1f} MB, sigma {r['sigma']}, {r['threads']} threads",
        f"  memcpy of those bytes          {r['memcpy_seconds'] * 1e3:8.1f} ms",
        f"  perturb + restore              {r['perturb_restore_seconds'] * 1e3:8.1f} ms   "
        f"= {r['perturb_restore_over_memcpy']:.2f}x memcpy (target <= 2.0); exact: {r['restore_exact']}",
        f"  the same, median of paired reps          = {r['perturb_restore_over_memcpy_paired_median']:.2f}x memcpy",
        f"  fused restore + next perturb   {r['fused_swap_seconds'] * 1e3:8.1f} ms   "
        f"= {r['fused_swap_over_memcpy']:.2f}x memcpy (per member in the training loop)",
        f"  restore record of one member   {r['member_record_bytes'] / 1e3:8.1f} kB",
        f"  numpy reference ({r['reference_elements'] / 1e6:.1f} M)        {r['reference_seconds'] * 1e3:8.1f} ms   "
        f"C 1 thread {r['native_seconds_1_thread'] * 1e3:.1f} ms = {r['native_over_reference_speedup']:.0f}x (target >= 50)",
        f"  one update (replay K={r['update_window']}, {r['update_pairs']} pairs) "
        f"{r['update_seconds']:8.2f} s",
    ])
