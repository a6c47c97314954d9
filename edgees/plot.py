"""The learning curve of a run: mean member reward and held-out metrics by step, as a PNG."""

from __future__ import annotations

from pathlib import Path

from edgees.runlog import RunDir, atomic_write


def write_curve(run_path: Path, out: Path | None = None) -> Path | None:
    """Write curve.png (atomically) from metrics.jsonl; None if there is nothing to plot."""
    rows = RunDir(run_path).read_metrics()
    steps = [r["step"] for r in rows if "reward_mean" in r]
    if not rows:
        return None
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if steps:
        ax.plot(steps, [r["reward_mean"] for r in rows if "reward_mean" in r], color="#888",
                lw=1, label="mean member reward (train)")
    evals = [(r["step"], r["heldout"]) for r in rows if "heldout" in r]
    keys = [k for k in (evals[0][1] if evals else {}) if k not in ("seconds", "n")]
    for k in keys[:4]:
        ax.plot([s for s, _ in evals], [m.get(k, float("nan")) for _, m in evals], marker="o", label=f"held-out {k}")
    ax.set_xlabel("step")
    ax.set_ylabel("reward / accuracy")
    ax.set_title(f"edgees run {Path(run_path).name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", framealpha=0.8)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    out = out or Path(run_path) / "curve.png"
    atomic_write(out, buf.getvalue())
    return out
