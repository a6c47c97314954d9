"""Quantized Evolution Strategies: the algorithm, the noise, the kernels, the weight state.

May import: edgees.gguf, edgees.errors, edgees._native, numpy. Never imports engine, run, tasks
or commands: nothing here evaluates a model or writes a run.
  algorithm.py  QESConfig, pair seeds, coefficients: pure functions
  trainable.py  what trains (and why the rest is frozen), kernel slots, each type's noise law
  noise.py      the counter-based integer noise (golden values shared with native/noise.c)
  records.py    Slot, ChunkRecord, PackedRecord, StepSpec: what the kernels take and return
  reference.py  numpy perturb / restore / update: the slow, clear oracle
  kernels.py    the same API over the C kernels, byte-identical to reference.py
  state.py      WeightState: the trainable weights plus error-feedback state
  window.py     the replay window, in RAM or in cache files
"""
