"""Benchmarks behind `edgees bench`: each prints ratios against a baseline run side by side.

May import any layer below commands. Never imported by the library itself.
  engine.py   the engine against llama-cpp-python's high-level API, in child processes
  kernels.py  perturb + restore against memcpy, the C kernels against the numpy reference
"""
