"""The learning curve of a run: mean member reward and held-out metrics by step, as a PNG.

Drawn with matplotlib, the `edgees[plot]` extra: without it a run works the same and has no
curve.png; curve_unavailable() says how to get one.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edgees.fileio import atomic_write
from edgees.run.log import RunDir


def curve_unavailable() -> str | None:
    """Why write_curve draws nothing even with metrics (one line with the fix), or None if it can."""
    if importlib.util.find_spec("matplotlib") is None:
        return "no curve.png: drawing it needs matplotlib; pip install 'edgees[plot]'"
    return None


def write_curve(run_path: Path, out: Path | None = None) -> Path | None:
    """Write curve.png (atomically) from metrics.jsonl; None if there is nothing to plot or
    matplotlib is not installed (see curve_unavailable)."""
    rows = RunDir(run_path).read_metrics()
    steps = [r["step"] for r in rows if "reward_mean" in r]
    if not rows or curve_unavailable():
        return None
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    evals = [(r["step"], r["heldout"]) for r in rows if "heldout" in r]
    rewards = [r["reward_mean"] for r in rows if "reward_mean" in r]
    # log-likelihoods (reward=likelihood: the train reward and held-out loglik) are negative nats,
    # not fractions: they get their own axis on the right
    nats = [k for k in ("loglik",) if evals and k in evals[0][1]]
    rax = ax.twinx() if nats or any(r < 0 or r > 1.5 for r in rewards) else None
    if steps:
        (rax or ax).plot(steps, rewards, color="#888", lw=1, label="mean member reward (train)")
    keys = [k for k in (evals[0][1] if evals else {}) if k not in ("seconds", "n", *nats)]
    for k in keys[:4]:
        ax.plot([s for s, _ in evals], [m.get(k, float("nan")) for _, m in evals], marker="o", label=f"held-out {k}")
    for k in nats:
        rax.plot([s for s, _ in evals], [m.get(k, float("nan")) for _, m in evals], marker="s", color="#c0392b",
                 label=f"held-out {k}")
    ax.set_xlabel("step")
    ax.set_ylabel("reward / accuracy")
    ax.set_title(f"edgees run {Path(run_path).name}")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if rax is not None:
        rax.set_ylabel("log-likelihood (nats)")
        more = rax.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    ax.legend(handles, labels, fontsize=8, loc="upper left", framealpha=0.8)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    out = out or Path(run_path) / "curve.png"
    atomic_write(out, buf.getvalue())
    return out
