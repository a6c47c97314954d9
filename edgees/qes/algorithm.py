"""Quantized Evolution Strategies, the algorithm alone: seeds, coefficients, the step plan.

Pure functions, no I/O, no llama.cpp: the loop that evaluates members lives in run/trainer.py and
the packed-code arithmetic in kernels.py. In the paper's terms, one step is:
  seeds s_1..s_P            -> members +s_j and -s_j (antithetic pairs)
  rewards r(+s_j), r(-s_j)  -> d_j = r(+s_j) - r(-s_j) -> a_j = clip(zscore(d), -3, 3) (or centred ranks)
  update(codes; seeds, a, sigma, alpha) with error feedback (kernels.update).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from edgees.errors import EdgeesError
from edgees.qes import noise

EF_MODES = ("replay", "residual", "off")
# What a pair hit (a_j = 1) moves a 4-bit code by when --alpha is not given: alpha = HIT_STEP * sigma * pairs.
# Measured on SmolLM2 (docs/results/arithmetic-alpha-threshold.md): 0.125 moves almost nothing (a
# step rounds to a move only from 0.5 up), 0.5 too much; 0.25 learned.
HIT_STEP = 0.25


def default_alpha(sigma: float, pairs: int) -> float:
    """The step size that keeps a pair hit's move at HIT_STEP code steps for this sigma and pairs."""
    return HIT_STEP * sigma * pairs


# From step ALPHA_DECAY on, step t takes alpha x sqrt(ALPHA_DECAY / t). Measured on SmolLM2 arithmetic,
# three seeds, an hour (docs/results/arithmetic-alpha-decay.md): at a constant alpha held-out peaked
# at steps 40-50 and fell back; decayed from step 20, the last step stayed near the best. That is a
# reward scored on generated answers; one scored on reference answers (likelihood, margin, labels)
# kept climbing at a constant alpha where the decay froze it (docs/results/alpha-decay-scored.md),
# so those runs default to ALPHA_DECAY_SCORED: a constant step size.
ALPHA_DECAY = 20
ALPHA_DECAY_SCORED = 0


def default_alpha_decay(scored: bool) -> int:
    """alpha_decay's default for a run whose reward is scored on reference answers (scored) or on
    generated ones."""
    return ALPHA_DECAY_SCORED if scored else ALPHA_DECAY


# The replay window K: error feedback replays the code moves of the last K steps. 50 until
# 2026-12-07; at 25 the update costs about half (8.3-8.5% of a step against 11-15%), and three seeds
# of an hour learned as much (docs/results/arithmetic-window-25.md).
WINDOW = 25

COEF_MODES = ("zscore", "rank")


@dataclass(frozen=True)
class QESConfig:
    """Hyperparameters of a run; each default is tuned for SmolLM2-135M on a 2-core CPU.

    The one place a run setting is defined: the CLI's flags, a --config file's keys and run.json's
    "config" are all these fields. metadata["help"] is the flag's help; metadata["resume"] marks
    the fields a resumed run may change (the others fix the noise and the update, and so the log).
    """

    steps: int = field(default=40, metadata={"resume": True, "help": "QES steps (updates)"})
    pairs: int = field(default=8, metadata={"help": "antithetic pairs per step (population = 2 x pairs)"})
    prompts: int = field(default=12, metadata={"help": "training prompts per member per step"})
    sigma: float = field(default=0.01, metadata={"help": "noise scale in 4-bit code steps (the same relative step on every type)"})
    alpha: float | None = field(default=None, metadata={"resume": True, "kind": float, "help": "step size: a pair hit moves a 4-bit code by alpha/(sigma*pairs)*a_j steps (a 5-, 6-, 8-bit code by 2, 4, 16 times that); default 0.25 x sigma x pairs (0.02 at the default sigma and pairs): a hit moves a code a quarter step whatever --pairs and --sigma are"})
    alpha_decay: int = field(default=ALPHA_DECAY, metadata={"resume": True, "metavar": "T", "absent": 0, "help": "step-size decay: from step T on, step t uses alpha x sqrt(T/t) (half alpha at 4T), so what the first steps won is kept (down to --alpha-floor); 0: a constant step size. Default 20 for a reward scored on generated answers, 0 for one scored on reference answers (reward=likelihood, margin, labels), which keeps climbing at a constant step. Each step's alpha is logged, so export and resume replay it exactly", "default_in_help": True})
    alpha_floor: float = field(default=0.0, metadata={"resume": True, "absent": 0.0, "metavar": "F", "help": "with --alpha-decay: the step size decays no lower than this share of alpha (e.g. 0.7: a pair hit still moves a code ~0.18 of a step), so a long run keeps moving codes (on three seeds it learned no more in 100 steps: docs/results/alpha-floor.md); 0: no floor"})
    gamma: float = field(default=0.9, metadata={"help": "error-feedback decay"})
    ef: str = field(default="replay", metadata={"help": "error feedback: replay | residual | off"})
    window: int = field(default=WINDOW, metadata={"absent": 50, "help": "replay window K (steps): error feedback replays the last K steps' code moves; the update's time grows with K"})
    coef: str = field(default="zscore", metadata={"help": "pair coefficients: zscore (clipped +-3) | rank"})
    seed: int = field(default=1, metadata={"help": "run seed: all member seeds derive from it"})
    eval_every: int = field(default=10, metadata={"resume": True, "help": "held-out evaluation every E steps (0: only at the ends)"})
    eval_n: int = field(default=50, metadata={"resume": True, "help": "held-out prompts per evaluation"})
    checkpoint_every: int = field(default=20, metadata={"resume": True, "help": "write a checkpoint every C steps and at every stop (0: never; the log alone still determines the weights)"})
    checkpoint_keep: int = field(default=2, metadata={"resume": True, "help": "checkpoints kept (older ones are deleted)"})
    include_embeddings: bool = field(default=False, metadata={"help": "also train token_embd / output"})
    tensors: str = field(default="", metadata={"metavar": "GLOBS", "help": "train only the tensors whose names match one of these comma-separated globs, e.g. 'blk.*.ffn_*' or 'blk.2?.*' (`edgees info --tensors MODEL` lists the names); default: every trainable tensor"})

    def __post_init__(self) -> None:
        if self.alpha is None:  # the default follows sigma and pairs: a pair hit moves a code HIT_STEP
            object.__setattr__(self, "alpha", default_alpha(self.sigma, self.pairs))

    @classmethod
    def kind(cls, name: str) -> type:
        """The type of a field's values (alpha's default is "derived", so not its default's type)."""
        f = next(f for f in fields(cls) if f.name == name)
        return f.metadata.get("kind", type(f.default))

    @classmethod
    def from_header(cls, header: dict) -> "QESConfig":
        """The config run.json records. A field an older run did not record takes the value that run
        ran with: metadata["absent"] where the default changed since (alpha_decay: 0, window: 50), else the default."""
        known = {f.name for f in fields(cls)}
        return cls(**{**cls.predated(header), **{k: v for k, v in header.get("config", {}).items() if k in known}})

    @classmethod
    def predated(cls, header: dict) -> dict:
        """{field: the value the run ran with} for the fields whose default changed since and that
        this run.json does not record (metadata["absent"]: alpha_decay 0, window 50)."""
        recorded = header.get("config", {})
        return {f.name: f.metadata["absent"] for f in fields(cls) if "absent" in f.metadata and f.name not in recorded}

    @classmethod
    def fixed_fields(cls) -> list[str]:
        """The fields a resumed run must keep."""
        return [f.name for f in fields(cls) if not f.metadata.get("resume")]

    def problems(self) -> list[tuple[str, str]]:
        """(field, what is wrong with it) for every out-of-range field; empty when the config is usable."""
        out = []
        if self.ef not in EF_MODES:
            out.append(("ef", f"must be one of {', '.join(EF_MODES)}"))
        if self.coef not in COEF_MODES:
            out.append(("coef", f"must be one of {', '.join(COEF_MODES)}"))
        for name in ("pairs", "prompts", "window", "checkpoint_keep"):
            if getattr(self, name) < 1:
                out.append((name, "must be >= 1"))
        for name in ("steps", "eval_every", "checkpoint_every", "alpha_decay"):
            if getattr(self, name) < 0:
                out.append((name, "must be >= 0"))
        if self.eval_n < 1:
            out.append(("eval_n", "must be >= 1"))
        if not (0.0 < self.sigma <= 4.0):
            out.append(("sigma", "must be in (0, 4] code steps (0.01 is a good start)"))
        if not (self.alpha > 0.0):  # noqa: SIM201 (NaN is refused too)
            out.append(("alpha", "must be > 0"))
        if not (0.0 <= self.alpha_floor <= 1.0):
            out.append(("alpha_floor", "must be in [0, 1] (a share of alpha)"))
        if not (0.0 <= self.gamma < 1.0):
            out.append(("gamma", "must be in [0, 1)"))
        return out

    def check(self) -> None:
        """Raise EdgeesError naming each out-of-range field by its flag."""
        problems = self.problems()
        if problems:
            raise EdgeesError("; ".join(f"--{name.replace('_', '-')} {what}" for name, what in problems))


def step_alpha(alpha: float, decay: int, step: int, floor: float = 0.0) -> float:
    """The step size of step `step` (0-based): alpha, or alpha x sqrt(T / (step + 1)) from step T on,
    never below floor x alpha."""
    if decay <= 0 or step + 1 <= decay:
        return alpha
    return alpha * max((decay / (step + 1)) ** 0.5, floor)


def pair_seeds(run_seed: int, step: int, pairs: int) -> tuple[int, ...]:
    """The P positive pair seeds of a step: a pure function of (run seed, step, j)."""
    base = noise.mix64((run_seed * 0x2545F4914F6CDD1D + step) & noise.M64)
    return tuple((noise.mix64((base + j * noise.GOLDEN) & noise.M64) >> 2) | 1 for j in range(pairs))


def coefficients(r_plus_p: np.ndarray, r_minus_p: np.ndarray, mode: str = "zscore") -> np.ndarray:
    """a_j from the pair reward differences: z-scored and clipped to +-3, or centred ranks in [-1, 1]."""
    d_p = np.asarray(r_plus_p, dtype=np.float64) - np.asarray(r_minus_p, dtype=np.float64)
    if mode == "rank":
        if len(d_p) == 1:
            return np.sign(d_p)
        ranks = np.argsort(np.argsort(d_p, kind="stable"), kind="stable").astype(np.float64)
        centred = ranks / (len(d_p) - 1) * 2.0 - 1.0
        return np.where(d_p == 0.0, 0.0, centred)
    if len(d_p) == 1:  # one pair: z-scoring would zero it; its sign is all the information
        return np.sign(d_p)
    std = d_p.std()
    if not np.isfinite(std) or std < 1e-12:
        return np.zeros_like(d_p)
    return np.clip((d_p - d_p.mean()) / std, -3.0, 3.0)

