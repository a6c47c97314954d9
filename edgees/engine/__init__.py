"""Evaluation: llama.cpp reading the live weights of a working copy; the only importer of llama_cpp.

May import: edgees.gguf (to validate a file before llama.cpp sees it), edgees.errors, numpy,
jinja2, llama_cpp. Never imports qes, run, tasks or commands.
  llama.py          ctypes field checks, the log sink, Batch and Context
  decode.py         batched generation, teacher-forced scoring, logits (over a Context)
  engine.py         Engine: model load, vocabulary, chat template; load_live, check_live_weights
  chat_template.py  the model's Jinja chat template in a sandbox
  baseline.py       llama-cpp-python's high-level API, the engine benchmark's baseline
"""
